"""Loading a process's hotkey from its settings: a hex seed (a Secret in an env var) or a seed file.

``HotkeySettings`` is the base of the miner's and the validator's settings (``hotkey_seed``,
``hotkey_file`` and ``keypair()``, called by their ``__main__``); ``load_hotkey`` does the loading.
Exactly one of the two sources must be set; the error names both settings so an operator knows what
to provide. The seed is never logged.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetensor.core.keys import Keypair


def load_hotkey(*, seed: SecretStr | None, path: Path | None, prefix: str) -> Keypair:
    """The key pair named by ``seed`` (64 hex characters) or the file at ``path`` holding them.

    ``prefix`` is the settings' environment prefix (``KT_MINER_``), used in error messages.
    """
    if (seed is None) == (path is None):
        raise ValueError(
            f"set exactly one of {prefix}HOTKEY_SEED (64 hex characters) or {prefix}HOTKEY_FILE "
            "(a file holding them)"
        )
    if seed is not None:
        text, source = seed.get_secret_value(), f"{prefix}HOTKEY_SEED"
    else:
        assert path is not None
        try:
            text, source = path.read_text(), str(path)
        except OSError as error:
            raise ValueError(f"{prefix}HOTKEY_FILE: cannot read {path}: {error.strerror}") from None
    try:
        return Keypair.from_seed_hex(text.strip())
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


class HotkeySettings(BaseSettings):
    """Settings of a process that acts as one hotkey; subclasses set ``env_prefix`` (``KT_MINER_``)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    hotkey_seed: SecretStr | None = None
    """The hotkey's ed25519 seed, 64 hex characters (or use hotkey_file)."""
    hotkey_file: Path | None = None
    """A file holding the hotkey's seed as 64 hex characters (or use hotkey_seed)."""

    def keypair(self) -> Keypair:
        """The hotkey (ValueError naming the setting when it is missing or malformed)."""
        return load_hotkey(
            seed=self.hotkey_seed, path=self.hotkey_file, prefix=self.model_config.get("env_prefix", "")
        )
