"""A real local EVM node for the evm backend's tests: anvil, on loopback, with funded dev accounts.

Used by tests/integration/conftest.py (the ``anvil`` fixture) and tests/integration/test_chain_evm.py.
The binary is the one ``tools/npm-tools.sh`` (``make tools``) installs from the npm package
``@foundry-rs/anvil`` at the version ``tools/npm/anvil/package.json`` pins, into
``<cache>/npm/anvil-<version>/anvil``; a missing binary fails the fixture with the command to run (it
never skips). The node runs in its own process session with its log in the test's temporary folder,
is healthy once ``eth_chainId`` answers and its ``--config-out`` file (the dev accounts' keys) exists,
and ``stop()`` ends its whole process group.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kubetensor.core.paths import cache_root, repo_root
from kubetensor.sandbox.errors import ToolNotFoundError
from kubetensor.sandbox.processes import ManagedProcess, free_port

CHAIN_ID = 31337
"""anvil's default chain id, passed explicitly."""


def anvil_binary() -> Path:
    """The pinned anvil binary (ToolNotFoundError naming the install command if it is missing)."""
    root = repo_root()
    assert root is not None, "the evm tests run from a source checkout"
    pin = json.loads((root / "tools" / "npm" / "anvil" / "package.json").read_text())
    version = pin["dependencies"]["@foundry-rs/anvil"]
    binary = cache_root() / "npm" / f"anvil-{version}" / "anvil"
    if not os.access(binary, os.X_OK):
        raise ToolNotFoundError(f"anvil {version} (install: bash tools/npm-tools.sh anvil)", [str(binary)])
    return binary


def rpc(url: str, method: str, params: list[object] | None = None) -> object:
    """One JSON-RPC call over HTTP (a plain client, so the probe does not depend on web3)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=2) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


@dataclass
class AnvilNode:
    """anvil on 127.0.0.1:``port`` (0: a free one), chain id ``CHAIN_ID``, ``accounts`` funded accounts."""

    directory: Path
    port: int = 0
    accounts: int = 4
    process: ManagedProcess | None = None
    private_keys: list[str] = field(default_factory=list)
    """Hex private keys (0x...) of the dev accounts, read from anvil's --config-out file."""
    addresses: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60.0) -> AnvilNode:
        binary = anvil_binary()
        self.port = self.port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / f"anvil-{self.port}.json"
        config.unlink(missing_ok=True)
        self.process = ManagedProcess(
            name="anvil",
            argv=[
                str(binary),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(CHAIN_ID),
                "--accounts",
                str(self.accounts),
                "--config-out",
                str(config),
            ],
            log_path=self.directory / f"anvil-{self.port}.log",
        )

        def healthy() -> bool:
            return config.is_file() and rpc(self.url, "eth_chainId") == hex(CHAIN_ID)

        self.process.start(probe=healthy, timeout=timeout)
        written = json.loads(config.read_text())
        self.private_keys = list(written["private_keys"])
        self.addresses = list(written["available_accounts"])
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def write_key(self, path: Path, *, index: int) -> Path:
        """Write dev account ``index``'s private key to a new 0600 key file at ``path``."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.private_keys[index].removeprefix("0x") + "\n")
        return path
