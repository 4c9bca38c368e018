"""The wallet: named ed25519 keys (coldkeys and hotkeys) in a directory, each file readable by its owner only.

Called by ``kubetensor wallet`` and ``kubetensor stake`` (``commands``) and by tests. A wallet is a
directory (mode 0700; default ``$KT_WALLET_DIR`` or ``~/.kubetensor/wallet``) holding one
``<name>.key`` file per key: the 32-byte seed as hex, mode 0600 (``keyfile``). Keys are not encrypted:
the file permissions are the protection, as for an SSH key without a passphrase. A key whose file
others can read is refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from kubetensor.chain import keyfile
from kubetensor.chain.errors import KeyFileError
from kubetensor.core.keys import Keypair

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SUFFIX = ".key"


@dataclass(frozen=True)
class WalletKey:
    """A key in a wallet: its name, public key (hex) and file."""

    name: str
    public_key: str
    path: Path


def default_dir() -> Path:
    """``$KT_WALLET_DIR`` or ``~/.kubetensor/wallet``."""
    override = os.environ.get("KT_WALLET_DIR")
    return Path(override).expanduser() if override else Path.home() / ".kubetensor" / "wallet"


def _path(directory: Path, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise KeyFileError(
            f"key name {name[:80]!r}: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return directory / f"{name}{_SUFFIX}"


def create_key(directory: Path, name: str) -> WalletKey:
    """Generate a new key ``name`` in the wallet ``directory`` (created 0700); refuses an existing name."""
    path = _path(directory, name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keypair = Keypair.generate()
    try:
        keyfile.write_new(path, keypair)
    except FileExistsError:
        raise KeyFileError(f"{path}: a key named {name!r} exists already") from None
    return WalletKey(name=name, public_key=keypair.hotkey, path=path)


def load_key(directory: Path, name: str) -> Keypair:
    """The key pair named ``name`` (KeyFileError if absent, malformed or readable by others)."""
    path = _path(directory, name)
    if not path.is_file():
        raise KeyFileError(f"{path}: no key named {name!r} in the wallet {directory}")
    return keyfile.read(path)


def list_keys(directory: Path) -> list[WalletKey]:
    """Every key in the wallet, by name (KeyFileError for a file that cannot be used)."""
    if not directory.is_dir():
        return []
    keys = []
    for path in directory.glob(f"*{_SUFFIX}"):
        name = path.name.removesuffix(_SUFFIX)
        keys.append(WalletKey(name=name, public_key=keyfile.read(path).hotkey, path=path))
    return sorted(keys, key=lambda key: key.name)
