"""Unit tests for kubetensor.consensus.settings: environment parsing, validation, chain defaults."""

from __future__ import annotations

import os

import pytest
from kubetensor.consensus.metagraph import SubnetRules
from kubetensor.consensus.settings import ConsensusSettings
from kubetensor.consensus.yuma import EpochParams
from pydantic import ValidationError

HOTKEY = "AB" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KT_CONSENSUS_"):
            monkeypatch.delenv(name)


def test_settings_read_kt_consensus_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_CONSENSUS_NETUID", "7")
    monkeypatch.setenv("KT_CONSENSUS_BLOCK_SECONDS", "0.1")
    monkeypatch.setenv("KT_CONSENSUS_TEMPO", "10")
    monkeypatch.setenv("KT_CONSENSUS_YUMA3_ON", "true")
    monkeypatch.setenv("KT_CONSENSUS_GENESIS_STAKE", f'{{"{HOTKEY}": 1000000000000}}')
    settings = ConsensusSettings()
    assert (settings.netuid, settings.block_ns, settings.tempo) == (7, 100_000_000, 10)
    assert settings.genesis_stake == {HOTKEY.lower(): 10**12}
    assert settings.epoch_params().yuma3_on
    assert settings.epoch_params().tempo == 10


def test_settings_defaults_are_the_chain_defaults() -> None:
    settings = ConsensusSettings()
    assert settings.epoch_params() == EpochParams()
    assert settings.subnet_rules() == SubnetRules()
    assert settings.listen == "127.0.0.1:50061"


def test_settings_refuse_a_genesis_key_that_is_not_a_hotkey() -> None:
    with pytest.raises(ValidationError, match="genesis_stake"):
        ConsensusSettings(genesis_stake={"not-hex": 1})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kappa", 70_000),
        ("netuid", 0),
        ("tempo", 0),
        ("block_seconds", 0),
        ("bonds_moving_average", 1_000_001),
    ],
)
def test_settings_refuse_out_of_range_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        ConsensusSettings(**{field: value})  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    settings = ConsensusSettings()
    with pytest.raises(ValidationError):
        settings.tempo = 5  # type: ignore[misc]
