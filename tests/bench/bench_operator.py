"""Benchmark of the operator on a real control plane with kwok GPU nodes.

Run by hand or by ``make bench`` as ``python tests/bench/bench_operator.py --out results.json``;
``tests/bench/test_bench_operator_smoke.py`` runs it tiny and checks the JSON shape.

In one run, against one control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok with
``ceil(N / 8) + 1`` fake GPU nodes of 8 GPUs):

1. ``plain``: N Deployments equal to the ones the operator writes for N Miners (same pod template, one
   GPU each), applied with one ``kubectl apply``; the time until every one is Available.
2. ``operator``: one Subnet and N Miners applied with one ``kubectl apply``, the operator running as a
   process (its own least-privilege service account, registering with a consensus process on
   loopback); the time until every Miner is Ready (pods ready and hotkey registered), and the
   operator's CPU seconds meanwhile. ``ratio`` is operator / plain, each timed from the start of
   ``kubectl apply`` to the last object Available (plain) or Ready (operator).
3. ``memory``: M more Miners (``--memory-replicas`` pods each, default 0: the operator's objects and
   registrations without pods); the operator's peak resident memory (``VmHWM``) once all are Ready
   (Registered when they have no pods) and every one's resync timer ran at least once.

Nothing is asserted; the figures go to the JSON file. Defaults (N=20, M=100) take about two minutes
on two cores; ``--miners 100 --memory-miners 1000`` is the issue's figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubetensor.sandbox.controlplane import ControlPlane, NodePool  # noqa: E402
from kubetensor_operator import desired, model, runner  # noqa: E402

from tests.operator_support import ConsensusProcess, kubectl  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def miner_doc(name: str, *, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "kubetensor.io/v1alpha1",
        "kind": "Miner",
        "metadata": {"name": name},
        "spec": {"subnet": "bench", "replicas": replicas, "model": {"name": "org/bench-model"}},
    }


def plain_deployment(name: str, namespace: str) -> dict[str, Any]:
    """The Deployment the operator would write for ``miner_doc(name)``, without an owner."""
    spec = model.MinerSpec.parse(miner_doc(name)["spec"])
    owner = desired.Owner(kind="Miner", name=name, namespace=namespace, uid="none")
    images = desired.Images(kubetensor="registry.bench/kubetensor:1", vllm="registry.bench/vllm:1")
    deployment = next(
        o
        for o in desired.miner_objects(
            spec, owner=owner, subnet=model.SubnetSpec.parse({"netuid": 1}), images=images
        )
        if o["kind"] == "Deployment"
    )
    del deployment["metadata"]["ownerReferences"]
    deployment["metadata"]["labels"].pop(desired.LABEL_MANAGED_BY)
    deployment["spec"]["template"]["metadata"]["labels"].pop(desired.LABEL_MANAGED_BY)
    return deployment


def _apply(plane: ControlPlane, namespace: str, docs: list[dict[str, Any]]) -> None:
    result = kubectl(plane, "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump_all(docs))
    if result.returncode != 0:
        raise RuntimeError(f"kubectl apply failed: {result.stderr[-2000:]}")


def _items(plane: ControlPlane, namespace: str, kind: str) -> list[dict[str, Any]]:
    result = kubectl(plane, "get", kind, "-n", namespace, "-o", "json")
    if result.returncode != 0:
        raise RuntimeError(f"kubectl get {kind} failed: {result.stderr[-2000:]}")
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return items


def _wait(what: str, done: Any, *, count: int, seconds: float) -> float:
    """Seconds until ``done()`` reaches ``count``; RuntimeError after ``seconds``."""
    started = time.monotonic()
    while True:
        reached = done()
        if reached >= count:
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise RuntimeError(f"{what}: {reached} of {count} after {seconds:.0f}s")
        time.sleep(0.2)


def _available(plane: ControlPlane, namespace: str) -> int:
    return sum(
        1
        for d in _items(plane, namespace, "deployments")
        if (d.get("status") or {}).get("availableReplicas", 0) >= d["spec"]["replicas"]
    )


def _ready(plane: ControlPlane, namespace: str, condition: str = "Ready") -> int:
    """Miners whose ``condition`` is True (Registered for Miners scaled to 0, which are never Ready)."""
    return sum(
        1
        for m in _items(plane, namespace, "miners")
        if any(
            c["type"] == condition and c["status"] == "True"
            for c in (m.get("status") or {}).get("conditions", [])
        )
    )


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _condition_time(obj: dict[str, Any], kind: str) -> float | None:
    for c in (obj.get("status") or {}).get("conditions", []):
        if c["type"] == kind and c["status"] == "True":
            return _time(c["lastTransitionTime"])
    return None


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": ordered[len(ordered) // 2], "max": ordered[-1]} if ordered else {}


def _timeline(plane: ControlPlane, namespace: str, *, operated: bool) -> dict[str, Any]:
    """Where the time went, from the objects' own timestamps (whole seconds, so coarse)."""
    deployments = {d["metadata"]["name"]: d for d in _items(plane, namespace, "deployments")}
    available = [
        t - _time(d["metadata"]["creationTimestamp"])
        for d in deployments.values()
        if (t := _condition_time(d, "Available")) is not None
    ]
    out: dict[str, Any] = {"deployment_created_to_available_s": _spread(available)}
    if operated:
        created, ready = [], []
        for m in _items(plane, namespace, "miners"):
            d = deployments.get(m["metadata"]["name"])
            t_ready, t_available = _condition_time(m, "Ready"), d and _condition_time(d, "Available")
            if d is None or t_ready is None or t_available is None:
                continue
            created.append(
                _time(d["metadata"]["creationTimestamp"]) - _time(m["metadata"]["creationTimestamp"])
            )
            ready.append(t_ready - t_available)
        out["miner_created_to_deployment_created_s"] = _spread(created)
        out["deployment_available_to_miner_ready_s"] = _spread(ready)
    return out


def _namespace(plane: ControlPlane, name: str) -> None:
    result = kubectl(plane, "create", "namespace", name)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)


def _delete_namespace(plane: ControlPlane, name: str, *, seconds: float) -> None:
    kubectl(plane, "delete", "namespace", name, f"--timeout={int(seconds)}s")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    gpus_needed = args.miners + args.memory_miners * args.memory_replicas + 1
    plane = ControlPlane(
        work / "kube",
        pools=(
            NodePool(prefix="kt-gpu", count=math.ceil(gpus_needed / 8) + 1, gpus=8),
            NodePool(prefix="kt-cpu", count=1),
        ),
    )
    _say(f"starting a control plane with {math.ceil(gpus_needed / 8) + 1} GPU nodes")
    state = plane.start(timeout=300)
    consensus = ConsensusProcess(
        work / "consensus", tempo=65535, max_uids=args.miners + args.memory_miners + 16
    )
    try:
        address = consensus.wait_ready()
        pid = runner.start_background(
            kubeconfig=plane.kubeconfig,
            directory=work / "operator",
            consensus_address=address,
            env={"KT_OPERATOR_RESYNC_SECONDS": str(args.resync_seconds)},
            timeout=120,
        )
        try:
            results = _measure(args, plane, pid)
        finally:
            runner.stop(work / "operator")
    finally:
        consensus.stop()
        plane.stop()
    results["kubernetes_version"] = state.kubernetes_version
    return results


def _measure(args: argparse.Namespace, plane: ControlPlane, pid: int) -> dict[str, Any]:
    n, limit = args.miners, args.timeout
    _namespace(plane, "plain")
    started = time.monotonic()
    _apply(plane, "plain", [plain_deployment(f"m{i}", "plain") for i in range(n)])
    plain_seconds = _wait(
        "plain Deployments Available", lambda: _available(plane, "plain"), count=n, seconds=limit
    )
    plain_total = time.monotonic() - started
    _say(f"{n} plain Deployments Available in {plain_seconds:.1f}s")
    plain_timeline = _timeline(plane, "plain", operated=False)
    # Free the GPUs before the operator's turn.
    _delete_namespace(plane, "plain", seconds=limit)

    _namespace(plane, "operated")
    subnet = {
        "apiVersion": "kubetensor.io/v1alpha1",
        "kind": "Subnet",
        "metadata": {"name": "bench"},
        "spec": {"netuid": 1, "ledger": {"ephemeral": True}},
    }
    _apply(plane, "operated", [subnet])
    cpu_before = _cpu_seconds(pid)
    started = time.monotonic()
    _apply(plane, "operated", [miner_doc(f"m{i}") for i in range(n)])
    operator_seconds = _wait("Miners Ready", lambda: _ready(plane, "operated"), count=n, seconds=limit)
    operator_total = time.monotonic() - started
    operator_cpu = _cpu_seconds(pid) - cpu_before
    _say(f"{n} Miners Ready in {operator_seconds:.1f}s (operator CPU {operator_cpu:.1f}s)")
    rss_after_operated = _proc_status(pid, "VmRSS")
    operator_timeline = _timeline(plane, "operated", operated=True)

    memory: dict[str, Any] = {"miners": args.memory_miners, "replicas_per_miner": args.memory_replicas}
    if args.memory_miners:
        _namespace(plane, "memory")
        _apply(plane, "memory", [subnet])
        docs = [miner_doc(f"x{i}", replicas=args.memory_replicas) for i in range(args.memory_miners)]
        started = time.monotonic()
        for start in range(0, len(docs), 200):
            _apply(plane, "memory", docs[start : start + 200])
        condition = "Ready" if args.memory_replicas else "Registered"
        memory["condition"] = condition
        memory["seconds_to_ready"] = _wait(
            f"memory Miners {condition}",
            lambda: _ready(plane, "memory", condition),
            count=args.memory_miners,
            seconds=limit * 4,
        )
        _say(f"{args.memory_miners} Miners {condition} in {memory['seconds_to_ready']:.1f}s")
        # Every resource's resync timer fires at least once (its first round is jittered over 0.5-1.5x).
        time.sleep(1.5 * args.resync_seconds)
        memory["seconds_total"] = time.monotonic() - started
    memory["peak_rss_bytes"] = _proc_status(pid, "VmHWM")
    memory["rss_bytes"] = _proc_status(pid, "VmRSS")
    return {
        "plain": {
            "deployments": n,
            "seconds_to_available": plain_seconds,
            "seconds_including_apply": plain_total,
            "timeline": plain_timeline,
        },
        "operator": {
            "miners": n,
            "seconds_to_ready": operator_seconds,
            "seconds_including_apply": operator_total,
            "operator_cpu_seconds": operator_cpu,
            "rss_bytes_after": rss_after_operated,
            "timeline": operator_timeline,
        },
        # From the start of `kubectl apply` to the last one Available/Ready: what a user waits for.
        "ratio": operator_total / plain_total,
        "memory": memory,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    parser.add_argument("--miners", type=int, default=20, help="N: Miners vs plain Deployments (issue: 100)")
    parser.add_argument(
        "--memory-miners", type=int, default=100, help="M: Miners for peak memory (issue: 1000)"
    )
    parser.add_argument("--memory-replicas", type=int, default=0, help="pods per memory Miner")
    parser.add_argument("--resync-seconds", type=float, default=30.0, help="the operator's resync interval")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds each phase may take")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kt-bench-operator-") as work:
        results = run(args, Path(work))
    results = {
        "benchmark": "operator",
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        **results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, `kill`) unwinds as Ctrl-C does, so the control plane, the consensus service and
    # the operator the bench started are stopped. A background job starts with SIGINT ignored; undo that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise SystemExit(main())
