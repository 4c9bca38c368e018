"""Private key files: the sidecar's authority key and the wallet's keys, readable by their owner only.

Called by ``__main__`` (``load_or_create_authority``) and ``wallet``. A key file holds the 32-byte
ed25519 seed as 64 hex characters and a newline. It is created with mode 0600 atomically (``O_EXCL``:
two processes never both create one), and a file that group or others can read is refused rather than
used. Seeds are never logged; ``Keypair``'s repr shows the public key only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kubetensor.chain.errors import KeyFileError
from kubetensor.core.keys import Keypair


def write_new(path: Path, keypair: Keypair) -> None:
    """Write ``keypair``'s seed to a new file ``path`` (mode 0600); FileExistsError if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (keypair.seed.hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_text(path: Path) -> str:
    """The stripped text of the key file ``path``; KeyFileError if it is unreadable or too open.

    Also used by the evm backend for its anchor key (a secp256k1 private key in hex).
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key file ({exc.strerror})") from None
    if mode & 0o077:
        raise KeyFileError(
            f"{path}: key file mode is {mode:04o}; it must be readable by its owner only (chmod 600)"
        )
    try:
        return path.read_text(encoding="ascii").strip()
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a key file (expected 64 hex characters)") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key file ({exc.strerror})") from None


def read(path: Path) -> Keypair:
    """The key pair stored at ``path``; KeyFileError if it is unreadable, malformed or too open."""
    text = read_text(path)
    try:
        return Keypair.from_seed_hex(text)
    except ValueError:
        raise KeyFileError(f"{path}: not a key file (expected 64 hex characters)") from None


def load_or_create(path: Path) -> tuple[Keypair, bool]:
    """The key pair at ``path``, generating and storing a new one if the file is absent.

    Returns the key pair and whether it was created.
    """
    if not path.exists():
        keypair = Keypair.generate()
        try:
            write_new(path, keypair)
        except FileExistsError:  # another process created it first: use theirs
            return read(path), False
        return keypair, True
    return read(path), False
