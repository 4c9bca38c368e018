"""The devnet's processes: each one a child in its own session, probed through its ready file.

Called by ``network`` and the integration and e2e tests. ``consensus``, ``miner`` and ``validator``
build a ``Component`` running ``python -m kubetensor.<service>`` with that service's ``KT_*`` settings
(listening on port 0; the ready file says where it ended up); nats-server and vLLM come from
``kubetensor.sandbox``. A component's stdout and stderr go to ``<workdir>/logs/<name>.log``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetensor.core.keys import Keypair
from kubetensor.sandbox.processes import ManagedProcess, log_tail

_OWN_PREFIXES = ("KT_CONSENSUS_", "KT_MINER_", "KT_VALIDATOR_", "KT_CHAIN_")


@dataclass
class Component:
    """One child process of the devnet."""

    name: str
    process: ManagedProcess
    ready_file: Path
    info: dict[str, Any] = field(default_factory=dict)
    """The ready file's content once started ({"address", "port", "pid", ...})."""

    @property
    def address(self) -> str:
        return str(self.info["address"])

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def start(self, *, timeout: float = 120.0) -> Component:
        """Start the process and wait for its ready file (ProcessStartError with its log tail if not)."""
        self.ready_file.unlink(missing_ok=True)
        self.process.start(probe=self.ready_file.exists, timeout=timeout)
        self.info = json.loads(self.ready_file.read_text())
        return self

    def alive(self) -> bool:
        return self.process.alive()

    def exit_code(self) -> int | None:
        return None if self.process.popen is None else self.process.popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; safe to call twice."""
        self.process.stop(grace=grace)


def _python_module(
    name: str, module: str, *, workdir: Path, env: Mapping[str, str], prefix: str
) -> Component:
    """A component running ``python -m module`` with settings ``env`` (and its ready file)."""
    ready = workdir / "run" / f"{name}.ready.json"
    ready.parent.mkdir(parents=True, exist_ok=True)
    # The child gets this environment minus any KT_* service settings of ours, plus its own.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    process = ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", module],
        log_path=workdir / "logs" / f"{name}.log",
        env={**inherited, **env, f"{prefix}READY_FILE": str(ready)},
        cwd=workdir,
    )
    return Component(name=name, process=process, ready_file=ready)


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, readable by the owner only (so is its folder, when it makes it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return path


def write_key(workdir: Path, name: str, keypair: Keypair) -> Path:
    """Write ``keypair``'s seed (hex) to ``<workdir>/keys/<name>.seed``, readable by the owner only."""
    return write_private(workdir / "keys" / f"{name}.seed", keypair.seed.hex())


def consensus(
    workdir: Path,
    *,
    netuid: int,
    block_seconds: float,
    tempo_blocks: int,
    chain_address: str | None = None,
    genesis_stake: Mapping[str, int] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Component:
    """The consensus service of subnet ``netuid`` with a state file in ``workdir``: stake from the chain
    sidecar at ``chain_address`` and settlements submitted to it, or (without one) ``genesis_stake`` and
    its local settlement log."""
    name = "consensus"
    env = {
        "KT_CONSENSUS_LISTEN": "127.0.0.1:0",
        "KT_CONSENSUS_STATE_PATH": str(workdir / "state" / "consensus.sqlite3"),
        "KT_CONSENSUS_NETUID": str(netuid),
        "KT_CONSENSUS_BLOCK_SECONDS": repr(block_seconds),
        "KT_CONSENSUS_TEMPO": str(tempo_blocks),
        "KT_CONSENSUS_WEIGHTS_RATE_LIMIT": "1",
        "KT_CONSENSUS_RETRY_SECONDS": "0.2",
        "KT_CONSENSUS_RETRY_MAX_SECONDS": "5",
        "KT_CONSENSUS_GRACE_SECONDS": "2",
        "KT_CONSENSUS_GENESIS_STAKE": json.dumps(dict(genesis_stake or {})),
        **({"KT_CONSENSUS_CHAIN_ADDRESS": chain_address} if chain_address else {}),
        **(extra_env or {}),
    }
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    return _python_module(name, "kubetensor.consensus", workdir=workdir, env=env, prefix="KT_CONSENSUS_")


def miner(
    workdir: Path,
    *,
    name: str,
    keypair: Keypair,
    netuid: int,
    nats_url: str,
    consensus_address: str,
    engine_url: str,
    engine_model: str = "",
    permit_refresh_seconds: float = 10.0,
    replay_journal: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> Component:
    """A miner answering tasks for ``keypair`` with the engine at ``engine_url``; its replay journal is
    in ``<workdir>/state/<name>`` (with ``replay_journal=False``, its replay guard is in memory only)."""
    folder = workdir / "state" / name if replay_journal else None
    return _python_module(
        name,
        "kubetensor.miner",
        workdir=workdir,
        prefix="KT_MINER_",
        env={
            "KT_MINER_HOTKEY_FILE": str(write_key(workdir, name, keypair)),
            "KT_MINER_NETUID": str(netuid),
            "KT_MINER_NATS_URL": nats_url,
            "KT_MINER_CONSENSUS_ADDRESS": consensus_address,
            "KT_MINER_ENGINE_URL": engine_url,
            "KT_MINER_ENGINE_MODEL": engine_model,
            "KT_MINER_LISTEN": "127.0.0.1:0",
            "KT_MINER_PERMIT_REFRESH_SECONDS": repr(permit_refresh_seconds),
            "KT_MINER_GRACE_SECONDS": "2",
            **({"KT_MINER_STATE_DIR": str(folder)} if folder is not None else {}),
            **(extra_env or {}),
        },
    )


def validator(
    workdir: Path,
    *,
    name: str,
    keypair: Keypair,
    netuid: int,
    nats_url: str,
    consensus_address: str,
    round_seconds: float,
    task_timeout_seconds: float,
    weights_interval_seconds: float,
    weights_retry_seconds: float,
    moving_average_alpha: float,
    extra_env: Mapping[str, str] | None = None,
) -> Component:
    """A validator for ``keypair``; its state (``<workdir>/state/<name>.json``) survives restarts."""
    return _python_module(
        name,
        "kubetensor.validator",
        workdir=workdir,
        prefix="KT_VALIDATOR_",
        env={
            "KT_VALIDATOR_HOTKEY_FILE": str(write_key(workdir, name, keypair)),
            "KT_VALIDATOR_NETUID": str(netuid),
            "KT_VALIDATOR_NATS_URL": nats_url,
            "KT_VALIDATOR_CONSENSUS_ADDRESS": consensus_address,
            "KT_VALIDATOR_STATE_PATH": str(workdir / "state" / f"{name}.json"),
            "KT_VALIDATOR_LISTEN": "127.0.0.1:0",
            "KT_VALIDATOR_ROUND_SECONDS": repr(round_seconds),
            "KT_VALIDATOR_TASK_TIMEOUT_SECONDS": repr(task_timeout_seconds),
            "KT_VALIDATOR_WEIGHTS_INTERVAL_SECONDS": repr(weights_interval_seconds),
            "KT_VALIDATOR_WEIGHTS_RETRY_SECONDS": repr(weights_retry_seconds),
            "KT_VALIDATOR_MOVING_AVERAGE_ALPHA": repr(moving_average_alpha),
            "KT_VALIDATOR_GRACE_SECONDS": "2",
            **(extra_env or {}),
        },
    )


def chain(
    workdir: Path,
    *,
    genesis_balances: Mapping[str, int],
    settlement_signers: list[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Component:
    """The chain sidecar (ledger backend) with its ledger and authority key in ``<workdir>/state``.

    Without ``settlement_signers`` it records unsigned settlements, as the sidecar of a Subnet's pod
    does (it listens on loopback, for the consensus service beside it)."""
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    env = {
        "KT_CHAIN_LISTEN": "127.0.0.1:0",
        "KT_CHAIN_LEDGER_PATH": str(workdir / "state" / "chain-ledger.sqlite3"),
        "KT_CHAIN_AUTHORITY_KEY_PATH": str(workdir / "state" / "chain-authority.key"),
        "KT_CHAIN_GENESIS_BALANCES": json.dumps(dict(genesis_balances)),
        "KT_CHAIN_SETTLEMENT_SIGNERS": json.dumps(settlement_signers or []),
        "KT_CHAIN_GRACE_SECONDS": "2",
        **(extra_env or {}),
    }
    return _python_module("chain", "kubetensor.chain", workdir=workdir, env=env, prefix="KT_CHAIN_")
