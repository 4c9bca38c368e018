"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, controller-manager, scheduler, kwok.

``ControlPlane.start()`` brings up, in order:

- etcd (one member, ``--unsafe-no-fsync``: a throwaway data dir),
- kube-apiserver with client-certificate authentication and ``Node,RBAC`` authorization,
- kube-controller-manager (its own identity, per-controller service-account credentials),
- kube-scheduler (its own identity ``system:kube-scheduler``),
- kwok, which plays the kubelets of fake nodes: it marks them Ready and runs their pods,

then creates the fake nodes (GPU nodes advertise ``nvidia.com/gpu`` and carry the
``nvidia.com/gpu=present:NoSchedule`` taint, CPU nodes do not) and waits until every node is Ready
and the ``default`` service account exists. The admin kubeconfig is ``<dir>/kubeconfig``.

The whole state (pids, ports, paths) is written to ``<dir>/state.json`` so a different process
(``kubetensor sandbox down``) can stop what this one started.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubetensor.sandbox import pki as pki_mod
from kubetensor.sandbox.errors import ProcessStartError, SandboxStateError
from kubetensor.sandbox.processes import (
    ManagedProcess,
    free_port,
    group_members,
    http_json,
    http_ok,
    insecure_context,
    log_tail,
    stop_pid,
    tcp_open,
)
from kubetensor.sandbox.tools import Tools

STAGES_DIR = Path(__file__).with_name("kwok_stages")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
SERVICE_CIDR = "10.0.0.0/24"
# Fake pod IPs handed out by kwok. Nothing ever dials them: there is no kube-proxy here.
POD_CIDR = "10.244.0.0/16"


@dataclass(frozen=True)
class NodePool:
    """A group of identical fake nodes."""

    prefix: str
    count: int
    cpu: str = "32"
    memory: str = "256Gi"
    gpus: int = 0
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"


DEFAULT_POOLS = (
    NodePool(prefix="kt-gpu", count=2, gpus=8),
    NodePool(prefix="kt-cpu", count=2, cpu="16", memory="64Gi"),
)


@dataclass
class ControlPlaneState:
    """What a running control plane needs to be found and stopped again."""

    directory: str
    kubeconfig: str
    apiserver_url: str
    etcd_url: str
    pids: dict[str, int] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    kubernetes_version: str = ""

    def save(self) -> None:
        path = Path(self.directory) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, directory: Path) -> ControlPlaneState:
        path = directory / "state.json"
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError as exc:
            raise SandboxStateError(f"no control plane state in {directory} (state.json missing)") from exc
        except (json.JSONDecodeError, TypeError) as exc:
            raise SandboxStateError(f"{path} is not a control plane state file: {exc}") from exc


def _kubeconfig(*, server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubetensor-sandbox",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}
        ],
        "contexts": [
            {"name": "kubetensor-sandbox", "context": {"cluster": "kubetensor-sandbox", "user": user}}
        ],
        "current-context": "kubetensor-sandbox",
    }


def node_manifest(pool: NodePool, index: int) -> dict[str, Any]:
    """The Node object for one fake node of ``pool`` (created with POST so its status is kept)."""
    name = f"{pool.prefix}-{index}"
    capacity: dict[str, str] = {"cpu": pool.cpu, "memory": pool.memory, "pods": "110"}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "kubetensor.io/pool": pool.prefix,
    }
    spec: dict[str, Any] = {}
    if pool.gpus:
        capacity[GPU_RESOURCE] = str(pool.gpus)
        labels["nvidia.com/gpu.present"] = "true"
        labels["nvidia.com/gpu.product"] = pool.gpu_product
        labels["nvidia.com/gpu.count"] = str(pool.gpus)
        spec["taints"] = [GPU_TAINT]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


class ControlPlane:
    """Starts and stops the control plane's processes in ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        tools: Tools | None = None,
        pools: tuple[NodePool, ...] = DEFAULT_POOLS,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = directory.resolve()
        self.tools = tools or Tools.discover()
        self.pools = pools
        self.progress = progress or (lambda _msg: None)
        self.processes: dict[str, ManagedProcess] = {}
        self.state: ControlPlaneState | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None) -> str:
        """Run the pinned kubectl against this control plane as the admin; return stdout."""
        result = subprocess.run(
            [str(self.tools.path("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input_text,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result.stdout

    def start(self, *, timeout: float = 120.0) -> ControlPlaneState:
        """Start every component; on any failure stop what was started and re-raise."""
        try:
            return self._start(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, *, timeout: float) -> ControlPlaneState:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        pki = pki_mod.create(
            d / "pki",
            clients={
                "admin": "system:masters",
                "system:kube-controller-manager": None,
                "system:kube-scheduler": None,
                "kwok": "system:masters",
            },
        )
        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        kcm_port, sched_port, kwok_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        api_url = f"https://127.0.0.1:{api_port}"

        def write_kubeconfig(path: Path, user: str) -> Path:
            client = pki.clients[user]
            config = _kubeconfig(server=api_url, ca=pki.ca_cert, cert=client.cert, key=client.key, user=user)
            path.write_text(yaml.safe_dump(config))
            path.chmod(0o600)
            return path

        admin_kc = write_kubeconfig(self.kubeconfig, "admin")
        kcm_kc = write_kubeconfig(d / "controller-manager.kubeconfig", "system:kube-controller-manager")
        sched_kc = write_kubeconfig(d / "scheduler.kubeconfig", "system:kube-scheduler")
        kwok_kc = write_kubeconfig(d / "kwok.kubeconfig", "kwok")

        self.state = ControlPlaneState(
            directory=str(d), kubeconfig=str(admin_kc), apiserver_url=api_url, etcd_url=etcd_url
        )
        t = self.tools.path
        peer = f"http://127.0.0.1:{etcd_peer}"
        self._run(
            "etcd",
            [
                str(t("etcd")),
                "--name=n0",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=n0={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            probe=lambda: http_ok(f"{etcd_url}/health"),
            timeout=timeout,
        )
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        self._run(
            "kube-apiserver",
            [
                str(t("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki.apiserver_cert}",
                f"--tls-private-key-file={pki.apiserver_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--cert-dir={d / 'apiserver-certs'}",
            ],
            probe=lambda: http_ok(f"{api_url}/readyz", context=ctx),
            timeout=timeout,
        )
        self._run(
            "kube-controller-manager",
            [
                str(t("kube-controller-manager")),
                f"--kubeconfig={kcm_kc}",
                f"--authentication-kubeconfig={kcm_kc}",
                f"--authorization-kubeconfig={kcm_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--use-service-account-credentials=true",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            ],
            probe=lambda: http_ok(f"https://127.0.0.1:{kcm_port}/healthz", context=insecure_context()),
            timeout=timeout,
        )
        self._run(
            "kube-scheduler",
            [
                str(t("kube-scheduler")),
                f"--kubeconfig={sched_kc}",
                f"--authentication-kubeconfig={sched_kc}",
                f"--authorization-kubeconfig={sched_kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                "--leader-elect=false",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            ],
            probe=lambda: http_ok(f"https://127.0.0.1:{sched_port}/healthz", context=insecure_context()),
            timeout=timeout,
        )
        stages = [f"--config={p}" for p in sorted(STAGES_DIR.glob("*.yaml"))]
        self._run(
            "kwok",
            [
                str(t("kwok")),
                f"--kubeconfig={kwok_kc}",
                *stages,
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=0",
                f"--server-address=127.0.0.1:{kwok_port}",
                f"--node-port={kwok_port}",
            ],
            probe=lambda: tcp_open(kwok_port),
            timeout=timeout,
        )
        self.state.kubernetes_version = http_json(f"{api_url}/version", context=ctx).get("gitVersion", "")
        self.state.save()
        self._create_nodes(timeout=timeout)
        self._wait_ready(timeout=timeout)
        self.state.save()
        return self.state

    def _run(self, name: str, argv: list[str], *, probe: Any, timeout: float) -> None:
        proc = ManagedProcess(name=name, argv=argv, log_path=self.directory / "logs" / f"{name}.log")
        self.processes[name] = proc
        started = time.monotonic()
        proc.start(probe=probe, timeout=timeout)
        self.progress(f"{name} healthy (pid {proc.pid}, {time.monotonic() - started:.1f}s)")
        assert self.state is not None
        self.state.pids[name] = proc.pid
        self.state.save()

    def _create_nodes(self, *, timeout: float) -> None:
        assert self.state is not None
        manifests = [node_manifest(pool, i) for pool in self.pools for i in range(pool.count)]
        doc = yaml.safe_dump_all(manifests)
        self.kubectl("create", "-f", "-", input_text=doc)
        self.state.nodes = [m["metadata"]["name"] for m in manifests]
        self.progress(f"created {len(manifests)} fake nodes: {', '.join(self.state.nodes)}")

    def _wait_ready(self, *, timeout: float) -> None:
        assert self.state is not None
        deadline = time.monotonic() + timeout
        pending = "nodes"
        while time.monotonic() < deadline:
            self._check_alive()
            nodes = json.loads(self.kubectl("get", "nodes", "-o", "json"))["items"]
            ready = [
                n
                for n in nodes
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            ]
            # The node lifecycle controller lifts the not-ready taint once kwok reports the node Ready.
            tainted = [
                n["metadata"]["name"]
                for n in nodes
                if any(
                    t["key"] == "node.kubernetes.io/not-ready" for t in n.get("spec", {}).get("taints", [])
                )
            ]
            if len(ready) < len(self.state.nodes):
                pending = f"nodes Ready: {len(ready)}/{len(self.state.nodes)}"
            elif tainted:
                pending = f"the not-ready taint to leave {', '.join(tainted)}"
            elif not self.kubectl(
                "get", "serviceaccount", "default", "-n", "default", "--ignore-not-found", "-o", "name"
            ):
                pending = "the default service account (created by kube-controller-manager)"
            else:
                self.progress("all nodes Ready; default service account present")
                return
            time.sleep(0.25)
        raise ProcessStartError(
            "control plane", f"still waiting for {pending} after {timeout:.0f}s", log_tail=""
        )

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if not proc.alive():
                raise ProcessStartError(
                    name, "exited while the control plane was starting", log_tail=log_tail(proc.log_path)
                )

    def stop(self) -> None:
        """Stop every component, newest first."""
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        self.processes.clear()


def stop_from_state(directory: Path) -> list[str]:
    """Stop the processes a (possibly other) process recorded in ``directory/state.json``.

    Returns the names of the components that were still running. Only pids whose command line still
    mentions ``directory`` are signalled, so a recycled pid is never hit.
    """
    state = ControlPlaneState.load(directory)
    stopped = []
    for name, pid in reversed(list(state.pids.items())):
        if group_members(pid) and _cmdline_mentions(pid, str(directory)):
            stop_pid(pid)
            stopped.append(name)
    return stopped


def running_components(directory: Path) -> dict[str, bool]:
    """Component name -> whether its process is alive, from ``state.json``."""
    state = ControlPlaneState.load(directory)
    return {
        name: bool(group_members(pid)) and _cmdline_mentions(pid, str(directory))
        for name, pid in state.pids.items()
    }


def _cmdline_mentions(pid: int, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False
