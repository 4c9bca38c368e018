"""Unit tests for kubetensor.chain.settings: environment parsing and validation."""

from __future__ import annotations

import pytest
from kubetensor.chain.settings import ChainSettings
from kubetensor.chain.state import ChainParams
from pydantic import ValidationError

KEY = "ab" * 32


def test_settings_read_json_maps_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_CHAIN_GENESIS_BALANCES", f'{{"{KEY.upper()}": 5}}')
    monkeypatch.setenv("KT_CHAIN_SETTLEMENT_SIGNERS", f'["{KEY}"]')
    monkeypatch.setenv("KT_CHAIN_OWNER_CUT", "0")
    settings = ChainSettings()
    assert settings.genesis_balances == {KEY: 5}
    assert settings.settlement_signers == [KEY]
    assert settings.params() == ChainParams(owner_cut=0)
    assert settings.listen.startswith("127.0.0.1:")


@pytest.mark.parametrize(
    "overrides",
    [
        {"genesis_balances": {"nothex": 1}},
        {"genesis_balances": {KEY: -1}},
        {"genesis_balances": {KEY: 1 << 63}},
        {"settlement_signers": ["ab" * 31]},
        {"default_take": 12_000, "max_take": 11_796},
        {"owner_cut": 65_536},
        {"unknown_setting": 1},
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChainSettings(**overrides)  # type: ignore[arg-type]
