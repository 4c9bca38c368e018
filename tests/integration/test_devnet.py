"""The devnet's orchestration with real processes (nats-server, chain sidecar, consensus, miners,
validators) and FakeEngines instead of vLLM, run as a child process (``tests/devnet_fake.py``) so the
test can signal it: --epochs ends it with a summary and a verified chain; SIGINT, SIGTERM or a
component that dies stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 120.0


def descendants(pid: int) -> set[int]:
    """Live descendants of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Devnet:
    def __init__(self, workdir: Path, *, epochs: int | None = None) -> None:
        self.workdir = workdir
        self.log = workdir.parent / f"{workdir.name}.out"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.devnet_fake", str(workdir), *([str(epochs)] if epochs else [])],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.seen: set[int] = set()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self) -> None:
        """Wait until both validators wrote their ready files (everything else started before them)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        ready = [self.workdir / "run" / f"validator-{x}.ready.json" for x in ("a", "b")]
        while not all(path.exists() for path in ready):
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)
        self.seen = descendants(self.process.pid)

    def pid_of(self, component: str) -> int:
        pid: int = json.loads((self.workdir / "run" / f"{component}.ready.json").read_text())["pid"]
        return pid

    def wait(self, seconds: float = 120.0) -> int:
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            # tests/devnet_fake.py prints its asyncio tasks' stacks on SIGUSR1, its threads' on SIGUSR2.
            for sig in (signal.SIGUSR1, signal.SIGUSR2):
                os.kill(self.process.pid, sig)
                time.sleep(1.0)
            pytest.fail(f"the devnet did not exit within {seconds:.0f}s; its output:\n{self.output()}")


@pytest.fixture
def devnets() -> Iterator[list[Devnet]]:
    started: list[Devnet] = []
    yield started
    for devnet in started:
        if devnet.process.poll() is None:
            devnet.process.kill()
            devnet.process.wait()
        for pid in descendants(devnet.process.pid) | devnet.seen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_epochs_option_ends_with_summary_and_verified_chain(tmp_path: Path, devnets: list[Devnet]) -> None:
    devnet = Devnet(tmp_path / "net", epochs=3)
    devnets.append(devnet)
    assert devnet.wait(240) == 0, devnet.output()
    document = json.loads((tmp_path / "net" / "summary.json").read_text())
    assert document["chain_verified"] is True
    assert [e["epoch"] for e in document["epochs"]] == [1, 2, 3]
    last = {m["name"]: m for m in document["epochs"][-1]["miners"]}
    # FakeEngines: the "good" miner answers right, the others answer garbage.
    assert last["miner-good"]["incentive"] > 0.9
    assert last["miner-brief"]["incentive"] == last["miner-untrained"]["incentive"] == 0.0
    assert "chain verification" in devnet.output()
    assert not [pid for pid in devnet.seen if alive(pid)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_process(tmp_path: Path, devnets: list[Devnet], sig: signal.Signals) -> None:
    devnet = Devnet(tmp_path / "net")
    devnets.append(devnet)
    devnet.wait_up()
    assert len(devnet.seen) >= 8  # nats, chain, consensus, 3 miners, 2 validators (+ their children)
    devnet.process.send_signal(sig)
    devnet.wait()
    assert not [pid for pid in devnet.seen if alive(pid)], devnet.output()
    assert f"{sig.name} received" in devnet.output()
    # Whatever ran was summarized, and the summary says whether the chain verified.
    assert "chain_verified" in json.loads((tmp_path / "net" / "summary.json").read_text())


def test_a_component_that_dies_stops_everything(tmp_path: Path, devnets: list[Devnet]) -> None:
    devnet = Devnet(tmp_path / "net")
    devnets.append(devnet)
    devnet.wait_up()
    os.kill(devnet.pid_of("miner-brief"), signal.SIGKILL)
    assert devnet.wait() == 1
    output = devnet.output()
    assert "miner-brief exited" in output
    assert not [pid for pid in devnet.seen if alive(pid)], output


def test_a_signal_during_the_model_build_stops_the_build(tmp_path: Path) -> None:
    """With an empty model cache, `kubetensor devnet up` builds the models in a child process that it
    shows line by line; SIGINT then stops the build too instead of waiting for the training to end."""
    log = tmp_path / "devnet.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubetensor.cli", "devnet", "up", "--dir", str(tmp_path / "net")],
            cwd=ROOT,
            env={**os.environ, "KT_CACHE": str(tmp_path / "cache")},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while "training step" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            seen |= descendants(process.pid)
            time.sleep(0.2)
        seen |= descendants(process.pid)
        assert any(b"models\0build" in cmdline(pid) for pid in seen), "no child process builds the models"
        process.send_signal(signal.SIGINT)
        # The training has most of its 2000 steps to go: a devnet that waited for it would take minutes.
        code = process.wait(timeout=60)
        output = log.read_text(errors="replace")
        assert code == 1, output  # stopped before the chain ever ran: nothing verified
        assert "SIGINT received" in output
        assert "models: stopping the build" in output
        assert not [pid for pid in seen if alive(pid)], output
        assert not list((tmp_path / "cache" / "models").glob("good-*")), "a half-trained model was kept"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in seen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
