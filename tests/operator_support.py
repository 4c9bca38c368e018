"""Helpers of the operator's e2e tests and benchmark: a consensus process on loopback for the operator
to register with (pods are fake, so the operator is pointed at it), kubectl calls, bounded waits."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubetensor.core.keys import Keypair
from kubetensor.sandbox.controlplane import ControlPlane
from kubetensor_operator import runner
from prometheus_client.parser import text_string_to_metric_families

from tests.process_support import ServiceProcess

TAO = 10**9
NETUID = 1
"""The netuid every test Subnet uses: the one consensus process serves it."""
VALIDATOR_KEY = Keypair(bytes([41]) * 32)
"""A validator hotkey with genesis stake in the test consensus process."""
VALIDATOR_STAKE = 1000 * TAO

T = TypeVar("T")


class ConsensusProcess(ServiceProcess):
    """``python -m kubetensor.consensus`` on loopback with fast blocks (0.1 s) and short epochs."""

    def __init__(self, workdir: Path, *, tempo: int = 20, max_uids: int = 4096) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            "kubetensor.consensus",
            prefix="KT_CONSENSUS_",
            settings={
                "KT_CONSENSUS_STATE_PATH": str(workdir / "consensus.sqlite3"),
                "KT_CONSENSUS_NETUID": str(NETUID),
                "KT_CONSENSUS_BLOCK_SECONDS": "0.1",
                "KT_CONSENSUS_TEMPO": str(tempo),
                "KT_CONSENSUS_MIN_ALLOWED_WEIGHTS": "1",
                "KT_CONSENSUS_WEIGHTS_RATE_LIMIT": "0",
                "KT_CONSENSUS_MAX_ALLOWED_UIDS": str(max_uids),
                "KT_CONSENSUS_IMMUNITY_PERIOD": "1000000",
                "KT_CONSENSUS_GRACE_SECONDS": "1",
                "KT_CONSENSUS_GENESIS_STAKE": json.dumps({VALIDATOR_KEY.hotkey: VALIDATOR_STAKE}),
            },
            ready=workdir / "consensus-ready.json",
            log=workdir / "consensus.log",
        )

    def stop(self) -> None:
        self.terminate(seconds=15)


def kubectl(
    cluster: ControlPlane, *args: str, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the pinned kubectl as the admin; the completed process (never raises on failure)."""
    return subprocess.run(
        [str(cluster.tools.path("kubectl")), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        input=input_text,
        timeout=120,
        check=False,
    )


def apply(cluster: ControlPlane, namespace: str, *docs: dict[str, Any]) -> None:
    result = kubectl(cluster, "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump_all(docs))
    assert result.returncode == 0, result.stderr


def get(cluster: ControlPlane, namespace: str, *what: str) -> Any:
    """``kubectl get -o json``; None when it does not exist."""
    result = kubectl(cluster, "get", "-n", namespace, *what, "-o", "json")
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise AssertionError(f"kubectl get {' '.join(what)} failed: {result.stderr}")
    return json.loads(result.stdout)


def wait_for(check: Callable[[], T | None], *, what: str, seconds: float = 60.0, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + seconds
    last = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {seconds:.0f}s waiting for {what}; last observation: {last!r}"
            )
        time.sleep(interval)
        last = check()
    return last


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition of type ``kind`` in ``obj``'s status ({} when absent)."""
    for item in ((obj or {}).get("status") or {}).get("conditions", []):
        if item["type"] == kind:
            found: dict[str, Any] = item
            return found
    return {}


def subnet(name: str = "demo", *, ephemeral: bool = True, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetensor.io/v1alpha1",
        "kind": "Subnet",
        "metadata": {"name": name},
        "spec": {"netuid": NETUID, "ledger": {"ephemeral": ephemeral}, **spec},
    }


def miner(
    name: str, *, subnet_name: str = "demo", model: str | dict[str, Any] = "org/model-a", **spec: Any
) -> dict[str, Any]:
    """A Miner manifest; ``model`` is a model name or a whole ``spec.model``."""
    return {
        "apiVersion": "kubetensor.io/v1alpha1",
        "kind": "Miner",
        "metadata": {"name": name},
        "spec": {
            "subnet": subnet_name,
            "model": model if isinstance(model, dict) else {"name": model},
            **spec,
        },
    }


def validator(name: str, *, subnet_name: str = "demo", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetensor.io/v1alpha1",
        "kind": "Validator",
        "metadata": {"name": name},
        "spec": {"subnet": subnet_name, **spec},
    }


RESYNC_SECONDS = 3.0
CHILD_OTEL = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.test:4317",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.5",
}
"""What the operator under test passes to the containers it creates (``KT_OPERATOR_OTEL_ENV``: its own
tracing stays off, and the pods never run)."""
CHAIN_IMAGE = "registry.test/kubetensor-chain:e2e"


def prebound_volume(
    name: str, *, namespace: str, claim: str, storage: str = "1Gi", storage_class_name: str = ""
) -> dict[str, Any]:
    """A hostPath PersistentVolume pre-bound to ``claim`` in ``namespace`` (the control plane has no
    storage provisioner, so a claim only binds to a volume made for it)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class_name,
            "hostPath": {"path": f"/tmp/kt-e2e-{name}"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class OperatorHandle:
    """The operator under test: restartable, with its log and its ``/metrics``."""

    directory: Path
    kubeconfig: Path
    consensus_address: str
    otlp_endpoint: str = ""
    """Where the operator exports its spans (OTLP over HTTP); empty: tracing off."""
    metrics_port: int = field(default_factory=free_port)
    """Loopback port of the operator's ``/metrics`` (the same across restarts)."""
    namespaces: tuple[str, ...] = ()
    """The namespaces it watches (``KT_OPERATOR_NAMESPACES``); empty: the whole cluster."""
    account: tuple[str, str] = (runner.OPERATOR_NAMESPACE, runner.SERVICE_ACCOUNT)
    """The service account (namespace, name) it authenticates as; by default manifests/rbac/'s."""

    def start(self, *, install: bool = True) -> int:
        tracing = (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            }
            if self.otlp_endpoint
            else {}
        )
        watched = {"KT_OPERATOR_NAMESPACES": json.dumps(list(self.namespaces))} if self.namespaces else {}
        return runner.start_background(
            kubeconfig=self.kubeconfig,
            directory=self.directory,
            consensus_address=self.consensus_address,
            env={
                "KT_OPERATOR_RESYNC_SECONDS": str(RESYNC_SECONDS),
                "KT_OPERATOR_METAGRAPH_TTL_SECONDS": "0.5",
                "KT_OPERATOR_IMAGE": "registry.test/kubetensor:e2e",
                "KT_OPERATOR_CHAIN_IMAGE": CHAIN_IMAGE,
                "KT_OPERATOR_OTEL_ENV": json.dumps(CHILD_OTEL),
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "KT_OPERATOR_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
                **tracing,
                **watched,
            },
            install_manifests=install,
            account=self.account,
            timeout=90,
        )

    def stop(self) -> None:
        runner.stop(self.directory)

    def log(self) -> str:
        return (self.directory / "operator.log").read_text(errors="replace")

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """One scrape of the operator's ``/metrics``: (sample name, labels) -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def sample(self, name: str, **labels: str) -> float:
        """One figure of a fresh scrape (0 when absent)."""
        return self.metrics().get((name, frozenset(labels.items())), 0.0)
