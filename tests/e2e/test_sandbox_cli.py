"""`kubetensor sandbox up/status/down` as a user runs it: a real control plane in the background."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kubetensor.sandbox.processes import group_members
from kubetensor.sandbox.tools import Tools


def kt(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetensor.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_sandbox_up_lists_gpu_nodes_then_down_leaves_nothing(tools: Tools, tmp_path: Path) -> None:
    env = {**os.environ, "KT_SANDBOX_DIR": str(tmp_path / "sandbox")}
    up = kt("sandbox", "up", "--gpu-nodes", "2", "--gpus-per-node", "4", "--cpu-nodes", "1", env=env)
    assert up.returncode == 0, up.stderr
    kubeconfig = tmp_path / "sandbox" / "kubeconfig"
    assert f"export KUBECONFIG={kubeconfig}" in up.stdout
    assert "kube-scheduler healthy" in up.stderr  # progress is shown while it starts

    try:
        status = kt("sandbox", "status", "--json", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        info = json.loads(status.stdout)
        assert info["running"] is True
        pids = json.loads((tmp_path / "sandbox" / "state.json").read_text())["pids"]
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

        nodes = subprocess.run(
            [
                str(tools.path("kubectl")),
                f"--kubeconfig={kubeconfig}",
                "get",
                "nodes",
                "-o",
                r"custom-columns=NAME:.metadata.name,GPU:.status.capacity.nvidia\.com/gpu",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split("\n")
        rows = {line.split()[0]: line.split()[1] for line in nodes[1:] if line.strip()}
        assert rows == {"kt-gpu-0": "4", "kt-gpu-1": "4", "kt-cpu-0": "<none>"}

        again = kt("sandbox", "up", env=env)
        assert again.returncode == 0
        assert "already running" in again.stdout
    finally:
        down = kt("sandbox", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "kube-apiserver" in down.stdout
    for name, pid in pids.items():
        assert group_members(pid) == [], f"{name} (pid {pid}) still running after sandbox down"
    assert not (tmp_path / "sandbox").exists()
    gone = kt("sandbox", "status", env=env)
    assert gone.returncode == 3


def test_sandbox_with_operator_schedules_example_miners_on_gpu_nodes(tools: Tools, tmp_path: Path) -> None:
    env = {**os.environ, "KT_SANDBOX_DIR": str(tmp_path / "sandbox")}
    up = kt("sandbox", "up", "--with-operator", env=env)
    assert up.returncode == 0, up.stderr
    assert "operator running" in up.stderr
    kubeconfig = tmp_path / "sandbox" / "kubeconfig"
    kubectl = [str(tools.path("kubectl")), f"--kubeconfig={kubeconfig}"]
    examples = Path(__file__).resolve().parents[2] / "manifests" / "examples"
    try:
        subprocess.run([*kubectl, "apply", "-f", str(examples)], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 120
        miners: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            out = subprocess.run(
                [*kubectl, "get", "miners", "-A", "-o", "json"], capture_output=True, text=True, timeout=60
            )
            miners = json.loads(out.stdout)["items"] if out.returncode == 0 else []
            if miners and all(_ready(m) for m in miners):
                break
            time.sleep(1)
        assert miners
        assert all(_ready(m) for m in miners), [m.get("status") for m in miners]
        pods = json.loads(
            subprocess.run(
                [*kubectl, "get", "pods", "-A", "-l", "app.kubernetes.io/component=miner", "-o", "json"],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
        )["items"]
        assert pods
        assert all(p["spec"]["nodeName"].startswith("kt-gpu-") for p in pods)
    finally:
        down = kt("sandbox", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "sandbox").exists()


def _ready(resource: dict[str, object]) -> bool:
    status = resource.get("status")
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
