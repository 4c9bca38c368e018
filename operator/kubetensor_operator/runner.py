"""Run the operator in the background against a cluster: ``kubetensor sandbox up --with-operator``, tests.

``start_background(kubeconfig=..., directory=...)`` installs the CRDs and the operator's RBAC from
``manifests/`` (server-side apply, idempotent), mints a token for the operator's service account and
writes ``<directory>/operator.kubeconfig`` with it, so the operator runs with exactly the permissions
``manifests/rbac/`` grants, not the admin's (or, with ``install_manifests=False`` and another
``account``, those a Helm release of charts/kubetensor grants its own service account). It then starts
``python -m kubetensor_operator`` in its own process session (log ``<directory>/operator.log``), waits
until kopf's liveness endpoint answers, and records ``<directory>/operator.json`` so ``stop(directory)``
in another process can stop it.
``start_consensus(directory)`` runs a consensus process on loopback for the operator to register with
(the sandbox's pods are fake, so nothing in the cluster serves the consensus Service).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from kubetensor_operator import kube
from kubetensor_operator.errors import OperatorError

OPERATOR_NAMESPACE = "kubetensor-system"
SERVICE_ACCOUNT = "kubetensor-operator"
TOKEN_SECONDS = 7 * 24 * 3600
STATE_FILE = "operator.json"
CONSENSUS_STATE_FILE = "consensus.json"


class OperatorStartError(OperatorError):
    """The operator process exited or never answered its liveness probe (carries the log tail)."""

    def __init__(self, problem: str, *, log_tail: str) -> None:
        self.problem = problem
        self.log_tail = log_tail
        super().__init__(f"{problem}\n--- operator log (tail) ---\n{log_tail}")


@dataclass(frozen=True)
class OperatorProcess:
    """A background operator: what ``stop`` needs."""

    pid: int
    log: str
    liveness: str
    kubeconfig: str


def manifests_dir() -> Path:
    """``$KT_OPERATOR_MANIFESTS_DIR``, else ``manifests/`` of the checkout this package runs from."""
    configured = os.environ.get("KT_OPERATOR_MANIFESTS_DIR")
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "manifests"
    if not (path / "crds").is_dir():
        raise FileNotFoundError(
            f"no CRDs under {path}/crds; run from a kubetensor checkout or set KT_OPERATOR_MANIFESTS_DIR"
        )
    return path


def _documents(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


async def _install(kubeconfig: Path, manifests: Path, *, wait_seconds: float) -> None:
    async with kube.KubeClient(kube.load_credentials(kubeconfig)) as client:
        crds = _documents(manifests / "crds")
        await client.apply_all(crds)
        await client.apply_all(_documents(manifests / "rbac"))
        deadline = time.monotonic() + wait_seconds
        for crd in crds:
            name = crd["metadata"]["name"]
            while not await client.crd_established(name):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not Established after {wait_seconds:.0f}s")
                await asyncio.sleep(0.1)


def install(kubeconfig: Path, *, manifests: Path | None = None, timeout: float = 60.0) -> None:
    """Apply the CRDs and the operator's RBAC, and wait until the CRDs are served."""
    asyncio.run(_install(kubeconfig, manifests or manifests_dir(), wait_seconds=timeout))


async def _token(kubeconfig: Path, account: tuple[str, str], *, seconds: int) -> str:
    namespace, name = account
    async with kube.KubeClient(kube.load_credentials(kubeconfig)) as client:
        return await client.create_token(namespace, name, seconds=seconds)


def service_account_kubeconfig(
    admin_kubeconfig: Path,
    path: Path,
    *,
    seconds: int = TOKEN_SECONDS,
    account: tuple[str, str] = (OPERATOR_NAMESPACE, SERVICE_ACCOUNT),
) -> Path:
    """Write a kubeconfig for the service account ``account`` (namespace, name): a bound token valid
    ``seconds``; by default the operator's account of ``manifests/rbac/``."""
    credentials = kube.load_credentials(admin_kubeconfig)
    token = asyncio.run(_token(admin_kubeconfig, account, seconds=seconds))
    cluster: dict[str, Any] = {"server": credentials.server}
    if credentials.ca_data is not None:
        cluster["certificate-authority-data"] = base64.b64encode(credentials.ca_data).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": SERVICE_ACCOUNT}}],
        "current-context": "operator",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _live(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def start_background(
    *,
    kubeconfig: Path,
    directory: Path,
    consensus_address: str | None = None,
    env: Mapping[str, str] | None = None,
    install_manifests: bool = True,
    account: tuple[str, str] = (OPERATOR_NAMESPACE, SERVICE_ACCOUNT),
    timeout: float = 60.0,
) -> int:
    """Install CRDs and RBAC, start the operator as the service account, wait until it is live; its pid.

    Every failure raises ``OperatorStartError`` (with the operator's log tail when it got that far).

    ``consensus_address`` sets ``KT_OPERATOR_CONSENSUS_ADDRESS_OVERRIDE`` (pods do not run in the
    sandbox, so registration goes to a consensus process on loopback); ``env`` adds more settings.
    ``account`` is the service account (namespace, name) the operator authenticates as.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        if install_manifests:
            install(kubeconfig, timeout=timeout)
        operator_kubeconfig = service_account_kubeconfig(
            kubeconfig, directory / "operator.kubeconfig", account=account
        )
    except (OperatorError, OSError, TimeoutError) as error:
        # One error type for callers (the CLI prints it as one line).
        raise OperatorStartError(f"could not install the operator: {error}", log_tail="") from error
    liveness = f"http://127.0.0.1:{_free_port()}/healthz"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("KT_OPERATOR_")}
    child_env.update(
        {
            "KT_OPERATOR_KUBECONFIG": str(operator_kubeconfig),
            "KT_OPERATOR_LIVENESS_ENDPOINT": liveness,
        }
    )
    if consensus_address:
        child_env["KT_OPERATOR_CONSENSUS_ADDRESS_OVERRIDE"] = consensus_address
    child_env.update(env or {})
    log = directory / "operator.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubetensor_operator"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            start_new_session=True,
        )
    record = OperatorProcess(
        pid=process.pid, log=str(log), liveness=liveness, kubeconfig=str(operator_kubeconfig)
    )
    (directory / STATE_FILE).write_text(json.dumps(asdict(record)))
    deadline = time.monotonic() + timeout
    while not _live(liveness):
        code = process.poll()
        if code is not None:
            raise OperatorStartError(f"the operator exited with code {code}", log_tail=_tail(log))
        if time.monotonic() > deadline:
            stop(directory)
            raise OperatorStartError(f"the operator was not live after {timeout:.0f}s", log_tail=_tail(log))
        time.sleep(0.1)
    return process.pid


def start_consensus(directory: Path, *, netuid: int = 1, timeout: float = 60.0) -> str:
    """Start ``python -m kubetensor.consensus`` for ``netuid`` on loopback (state in ``directory``).

    For the sandbox, whose pods do not run: pass the address it returns to ``start_background`` as
    ``consensus_address`` and Miners and Validators of a Subnet with that netuid register for real.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ready = directory / "consensus-ready.json"
    ready.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_CONSENSUS_")}
    env.update(
        {
            "KT_CONSENSUS_LISTEN": "127.0.0.1:0",
            "KT_CONSENSUS_READY_FILE": str(ready),
            "KT_CONSENSUS_STATE_PATH": str(directory / "consensus-state.sqlite3"),
            "KT_CONSENSUS_NETUID": str(netuid),
        }
    )
    log = directory / "consensus.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubetensor.consensus"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    (directory / CONSENSUS_STATE_FILE).write_text(json.dumps({"pid": process.pid, "log": str(log)}))
    deadline = time.monotonic() + timeout
    while not ready.exists():
        code = process.poll()
        if code is not None:
            raise OperatorStartError(f"the consensus process exited with code {code}", log_tail=_tail(log))
        if time.monotonic() > deadline:
            _stop_recorded(directory / CONSENSUS_STATE_FILE, marker=b"kubetensor.consensus", grace=5.0)
            raise OperatorStartError(
                f"the consensus process was not ready after {timeout:.0f}s", log_tail=_tail(log)
            )
        time.sleep(0.05)
    address: str = json.loads(ready.read_text())["address"]
    return address


def _is_process(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _recorded_pid(state: Path) -> int | None:
    try:
        return int(json.loads(state.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running(directory: Path) -> bool:
    """True when the operator recorded in ``directory`` is alive."""
    pid = _recorded_pid(directory / STATE_FILE)
    return pid is not None and _is_process(pid, b"kubetensor_operator")


def _stop_recorded(state: Path, *, marker: bytes, grace: float) -> bool:
    """SIGTERM the process group recorded in ``state`` (SIGKILL after ``grace``) when its command line
    still names ``marker`` (a recycled pid is never hit); False when it was not running."""
    pid = _recorded_pid(state)
    if pid is None or not _is_process(pid, marker):
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # Reap it when it is our child; otherwise watch /proc.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _is_process(pid, marker):
                return True
            time.sleep(0.05)
    return True


def stop(directory: Path, *, grace: float = 15.0) -> bool:
    """Stop the operator (and a consensus process from ``start_consensus``) recorded in ``directory``.

    True when the operator was running.
    """
    stopped = _stop_recorded(directory / STATE_FILE, marker=b"kubetensor_operator", grace=grace)
    _stop_recorded(directory / CONSENSUS_STATE_FILE, marker=b"kubetensor.consensus", grace=grace)
    return stopped
