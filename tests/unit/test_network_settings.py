"""MinerSettings and ValidatorSettings: env prefixes, the hotkey sources, refusals that name fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubetensor.core.keys import Keypair
from kubetensor.miner.settings import MinerSettings
from kubetensor.validator.settings import ValidatorSettings
from pydantic import ValidationError

SEED = "07" * 32


def test_miner_settings_read_their_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_MINER_HOTKEY_SEED", SEED)
    monkeypatch.setenv("KT_MINER_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("KT_MINER_ENGINE_URL", "http://vllm:8000")
    settings = MinerSettings()
    assert settings.max_concurrency == 3
    assert settings.engine_url == "http://vllm:8000"
    assert settings.keypair() == Keypair.from_seed_hex(SEED)
    assert SEED not in repr(settings)


def test_validator_settings_read_a_hotkey_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "hotkey").write_text(SEED + "\n")
    monkeypatch.setenv("KT_VALIDATOR_HOTKEY_FILE", str(tmp_path / "hotkey"))
    monkeypatch.setenv("KT_VALIDATOR_TASK_TYPE", "addition")
    settings = ValidatorSettings()
    assert settings.keypair().hotkey == Keypair.from_seed_hex(SEED).hotkey


def test_a_missing_hotkey_names_both_settings() -> None:
    with pytest.raises(ValueError, match=r"KT_MINER_HOTKEY_SEED.*KT_MINER_HOTKEY_FILE"):
        MinerSettings().keypair()


def test_two_hotkey_sources_are_refused(tmp_path: Path) -> None:
    (tmp_path / "hotkey").write_text(SEED)
    settings = ValidatorSettings(hotkey_seed=SEED, hotkey_file=tmp_path / "hotkey")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one"):
        settings.keypair()


def test_a_malformed_seed_names_its_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KT_MINER_HOTKEY_SEED"):
        MinerSettings(hotkey_seed="xyz").keypair()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot read"):
        MinerSettings(hotkey_file=tmp_path / "absent").keypair()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_concurrency", 0),
        ("max_pending_tasks", 0),
        ("netuid", 0),
        ("max_ahead_seconds", 0),
        ("unknown_field", 1),
    ],
)
def test_miner_settings_refuse_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        MinerSettings(**{field: value})


def test_validator_settings_refuse_a_retry_longer_than_the_interval() -> None:
    with pytest.raises(ValidationError, match="weights_retry_seconds"):
        ValidatorSettings(weights_interval_seconds=5, weights_retry_seconds=10)
