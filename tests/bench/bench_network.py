"""Benchmark of the validator's fan-out round over NATS, against raw nats.py request/reply, same run.

Run by hand or by ``make bench`` as ``python tests/bench/bench_network.py --out results.json``; imported
by ``tests/bench/test_bench_network_smoke.py``, which runs it at a tiny size and checks the JSON shape.

One real nats-server. For each size N (default 16 and 64) a child process (this file with ``--serve``)
runs the N responders, so requester and responders do not share an event loop (``--responder-processes
K`` spreads them over K processes instead, for both methods alike: on a real network each miner is its
own process, and one process serving all N makes its one core the round's critical path):

* ``kubetensor``: N real miners (``MinerService`` + ``TaskSubscriber``, permits from a ``PermitCache``,
  replay guard, signed answers; connected with ``bus.connect_tasks``, the lean NATS client
  ``kubetensor.core.natslite``, as ``kubetensor.miner.__main__`` does) on a trivial in-process echo
  engine that answers the addition prompt at once (no vLLM: the engine is not what is measured); being
  one process, they share one ``VerifiedSignatures``, so a round's envelope is verified once, as a
  multi-hotkey miner process does;
* ``raw``: N nats.py subscriptions that answer every request with its own payload (the reference: raw
  nats.py on both ends).

In the parent, three timings per size, each a list of rounds, taken in turn ``--block`` rounds at a
time (both sets of responders run throughout; the idle one waits in its event loop), so a machine that
speeds up or slows down during the run (other tenants of a shared host) moves all three alike and the
ratios between them hold:

* ``kubetensor_round``: ``ValidatorService.run_round()`` with ``sample_size=N``: metagraph read (an
  in-memory double, no gRPC), one challenge, N signed tasks sent concurrently, N replies verified and
  scored, moving averages updated (the validator's ``MinerTaskClient`` on a ``bus.connect_tasks``
  client, as ``kubetensor.validator.__main__`` connects); the round's tail (state file saved with fsync
  on the validator's writer thread, then the signed round report published) runs in the background
  while the next round's replies are awaited (a round waits only for the tails of rounds before the
  previous one), so back-to-back rounds still pay for the CPU it takes (the last tails of a block are
  waited for after it, untimed, and their CPU counted);
* ``kubetensor_fanout``: one ``MinerTaskClient.seal`` of N tasks (one signature) and one
  ``send_round`` of them (N requests in waves of 32, every reply verified), as the round does it;
* ``raw_nats``: N concurrent ``nc.request`` calls with a payload of the task's size.

The JSON names the NATS client each side used (``transports``) and holds p50/p99/mean in milliseconds
for each, the CPU time per round of the requester and of
the responder processes and of the nats-server (``cpu_ms_per_round``: where the time goes, whether it
overlaps, and, divided by the cores, the least wall time that much work can take), and
the ratios to raw nats.py. It also measures, in the same run, what one ed25519 signature and one
verification cost on the real envelope bytes (``ed25519``) and so the signature work per round that no
transport can remove (``crypto_floor_ms``: the validator signs one envelope and verifies N responses
as a group, ``verify_many``; the responder process verifies the envelope once and signs N responses,
on one core). Bittensor's
dendrite/axon baseline needs ``bittensor==10.5.0`` in a separate environment: run
``tests/bench/dendrite_baseline.py`` there first and pass its JSON with ``--dendrite FILE``; its numbers
and the ratios dendrite / kubetensor are then merged in (``dendrite``), otherwise the JSON says it was
not run. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import itertools
import json
import pathlib
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

try:
    from tests.bench import support
except ModuleNotFoundError:  # run as a script: this folder is on sys.path (support finds kubetensor)
    import support

import nats
import psutil
from kubetensor.core import bus, keys, subjects
from kubetensor.core.keys import Keypair
from kubetensor.core.metagraphview import MetagraphView
from kubetensor.core.tracecontext import TraceContext
from kubetensor.miner.jobs import Chunk
from kubetensor.miner.permits import PermitCache
from kubetensor.miner.service import MinerService
from kubetensor.miner.subscriber import REPLY_WRITE_BATCH_BYTES, TaskSubscriber
from kubetensor.models import task
from kubetensor.validator.rounds import OutgoingTask
from kubetensor.validator.service import ValidatorService
from kubetensor.validator.state import StateFile
from kubetensor.validator.taskclient import MinerTaskClient, seal_round
from kubetensor.validator.tasks import default_registry

DEFAULT_SIZES = (16, 64)
NETUID = support.NETUID
RAW_NETUID = NETUID + 1
"""The raw responders' subjects are the miners' on another subnet (the same shape and length): both sets
of responders run at once, and a raw echo must never answer a kubetensor task, nor the other way round."""
VALIDATOR = Keypair(b"\x01" * 32)


def miner_keys(count: int) -> list[Keypair]:
    return [Keypair((i + 1000).to_bytes(4, "big") * 8) for i in range(count)]


def metagraph(count: int) -> MetagraphView:
    return support.metagraph(validator=VALIDATOR.hotkey, miners=(key.hotkey for key in miner_keys(count)))


class EchoEngine:
    """The trivial in-process backend: the right answer to an addition prompt, at once."""

    async def stream(
        self, *, prompt: str, max_tokens: int, temperature: float, trace: TraceContext | None = None
    ) -> AsyncIterator[Chunk]:
        left, _, right = prompt.removesuffix("=").partition("+")
        yield Chunk(text=task.Problem(int(left), int(right)).answer)
        yield Chunk(text="", finish_reason="stop", completion_tokens=4)


# -- the responder process ----------------------------------------------------------------------------


async def serve(mode: str, *, count: int, nats_url: str, part: int = 0, parts: int = 1) -> None:
    """Run this process's share of ``count`` responders (every ``parts``-th from ``part``) until stdin
    closes; print "ready" once subscribed."""
    subscribers: list[TaskSubscriber] = []
    if mode == "kt":
        # The miners connect as ``kubetensor.miner.__main__`` does.
        lite = await bus.connect_tasks(
            nats_url, name=f"bench-{mode}", write_batch_bytes=REPLY_WRITE_BATCH_BYTES
        )
        view = metagraph(count)
        signatures = keys.VerifiedSignatures()

        async def fetch() -> MetagraphView:
            return view

        for key in miner_keys(count)[part::parts]:
            permits = PermitCache(fetch, netuid=NETUID, refresh_seconds=3600)
            await permits.refresh()
            service = MinerService(
                keypair=key,
                netuid=NETUID,
                engine=EchoEngine(),
                permits=permits,
                max_concurrency=64,
                signatures=signatures,
            )
            subscriber = TaskSubscriber(lite, service)
            await subscriber.start()
            subscribers.append(subscriber)
        await lite.flush()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await lite.close()
        return
    nc = await bus.connect(nats_url, name=f"bench-{mode}")
    if mode == "raw":

        async def echo(msg: nats.aio.msg.Msg) -> None:
            await nc.publish(msg.reply, msg.data)

        for key in miner_keys(count)[part::parts]:
            await nc.subscribe(subjects.miner_tasks(RAW_NETUID, key.hotkey), cb=echo)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await nc.close()


class Responders:
    """The responder child processes of one mode and size: ``processes`` of them share the ``count``
    responders (1 by default: every miner in one process, as the headline figures are measured)."""

    def __init__(self, mode: str, *, count: int, nats_url: str, processes: int = 1) -> None:
        self.children: list[support.Child] = []
        try:
            for part in range(processes):
                args = ["--serve", mode, "--count", str(count), "--nats", nats_url]
                args += ["--part", str(part), "--parts", str(processes)]
                self.children.append(support.Child(__file__, args, what=f"{mode} responders"))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for child in self.children:
            child.close()


# -- the requester ------------------------------------------------------------------------------------


class StaticConsensus:
    def __init__(self, view: MetagraphView) -> None:
        self.view = view

    async def metagraph(self) -> MetagraphView:
        return self.view

    async def set_weights(self, weights: Any, *, nonce: int) -> int:
        return 1


class CpuMeter:
    """CPU seconds (user + system) used by this process, by the responder processes together and by
    the nats-server."""

    def __init__(self, responders: Responders, *, server_pid: int) -> None:
        self._children = [psutil.Process(child.process.pid) for child in responders.children]
        self._server = psutil.Process(server_pid)

    def read(self) -> tuple[float, float, float]:
        times = [child.cpu_times() for child in self._children]
        server = self._server.cpu_times()
        return (
            time.process_time(),
            sum(each.user + each.system for each in times),
            server.user + server.system,
        )


class Method:
    """One of the timed methods: what one round of it is, whose CPU it uses, and what runs after each
    of its blocks (untimed, but its CPU counted: the validator's round tails)."""

    def __init__(
        self,
        name: str,
        one: Callable[[], Awaitable[object]],
        *,
        meter: CpuMeter,
        after_block: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.name = name
        self.one = one
        self.meter = meter
        self.after_block = after_block
        self.times: list[float] = []
        self.cpu = [0.0, 0.0, 0.0]

    async def block(self, rounds: int, *, timed: bool) -> None:
        before = self.meter.read()
        for _ in range(rounds):
            started = time.perf_counter()
            await self.one()
            if timed:
                self.times.append((time.perf_counter() - started) * 1000)
        if self.after_block is not None:
            await self.after_block()
        if timed:
            after = self.meter.read()
            for i, (start, end) in enumerate(zip(before, after, strict=True)):
                self.cpu[i] += end - start

    def cpu_ms_per_round(self) -> dict[str, float]:
        return {
            name: seconds * 1000 / max(len(self.times), 1)
            for name, seconds in zip(("requester", "responders", "nats_server"), self.cpu, strict=True)
        }


async def interleaved(methods: list[Method], *, rounds: int, warmup: int, block: int) -> None:
    """``warmup`` untimed rounds of each method, then ``rounds`` timed ones of each, taken in turn,
    ``block`` rounds at a time: a machine whose speed drifts during the run (other tenants, frequency)
    slows every method alike, so their ratios hold even where their absolute times do not."""
    for method in methods:
        await method.block(warmup, timed=False)
    done = 0
    while done < rounds:
        now = min(block, rounds - done)
        for method in methods:
            await method.block(now, timed=True)
        done += now


_NONCES = itertools.count(time.time_ns())
"""The bench's own task nonces: increasing, never one of the validator's (those are taken from the clock
at each round, long after these start)."""


def sample_tasks(miners: Sequence[Keypair]) -> list[OutgoingTask]:
    """One round's tasks for ``miners``, as the validator builds them: one deadline, a fresh nonce each
    and a task id of the validator's length (32 hex characters)."""
    deadline = time.time_ns() // 1_000_000 + 5_000
    return [
        OutgoingTask(
            task_id=f"{nonce:032x}",
            netuid=NETUID,
            task_type="addition",
            prompt="47+85=",
            max_tokens=6,
            miner_hotkey=key.hotkey,
            nonce=nonce,
            deadline_unix_ms=deadline,
        )
        for key, nonce in zip(miners, _NONCES, strict=False)  # the nonces never end
    ]


def ed25519_costs(operations: int = 2000) -> dict[str, Any]:
    """Median microseconds of one signature and one verification on a real round envelope's bytes, and
    per signature of the group check the validator makes of a round's 64 responses (``verify_many``)."""
    payload = seal_round(sample_tasks(miner_keys(64)), keypair=VALIDATOR)[0].envelope
    signature = VALIDATOR.sign(subjects.ROUND_ENVELOPE_DOMAIN, payload)
    responses = [
        (
            key.public_key,
            subjects.TASK_RESPONSE_DOMAIN,
            payload,
            key.sign(subjects.TASK_RESPONSE_DOMAIN, payload),
        )
        for key in miner_keys(64)
    ]

    def per_call(call: Callable[[], object], *, repeat: int = 100, items: int = 1) -> float:
        samples = []
        for _ in range(max(1, operations // (repeat * items))):
            started = time.perf_counter()
            for _ in range(repeat):
                call()
            samples.append((time.perf_counter() - started) * 1e6 / (repeat * items))
        return statistics.median(samples)

    if not all(keys.verify_many(responses)):
        raise AssertionError("the bench's own responses must verify")
    return {
        "sign_us": per_call(lambda: VALIDATOR.sign(subjects.ROUND_ENVELOPE_DOMAIN, payload)),
        "verify_us": per_call(
            lambda: keys.verify(VALIDATOR.public_key, subjects.ROUND_ENVELOPE_DOMAIN, payload, signature)
        ),
        "verify_many_64_us_per_signature": per_call(
            lambda: keys.verify_many(responses), repeat=5, items=len(responses)
        ),
        "library": "kubetensor_native (ed25519-dalek)" if keys.BACKEND == "native" else "PyNaCl (libsodium)",
    }


async def measure(
    count: int,
    *,
    nats_url: str,
    rounds: int,
    warmup: int,
    block: int,
    workdir: pathlib.Path,
    signature_costs: dict[str, Any],
    server_pid: int,
    processes: int = 1,
) -> dict[str, Any]:
    keys = miner_keys(count)
    nc = await bus.connect(nats_url, name="bench-raw")
    # The validator connects as ``kubetensor.validator.__main__`` does.
    lite = await bus.connect_tasks(nats_url, name="bench-validator")
    kt: Responders | None = None
    raw: Responders | None = None
    try:
        sender = MinerTaskClient(lite, keypair=VALIDATOR)
        kt = Responders("kt", count=count, nats_url=nats_url, processes=processes)
        raw = Responders("raw", count=count, nats_url=nats_url, processes=processes)
        state_file = StateFile(workdir / f"state-{count}.json", netuid=NETUID, hotkey=VALIDATOR.hotkey)
        validator = ValidatorService(
            hotkey=VALIDATOR.hotkey,
            netuid=NETUID,
            task_kind=default_registry().get("addition"),
            sender=sender,
            consensus=StaticConsensus(metagraph(count)),
            state_file=state_file,
            state=state_file.load(alpha=0.1),
            task_timeout_s=5.0,
            sample_size=count,
            weights_interval_s=1e9,
            rng=random.Random(1),
        )
        failures: list[str] = []

        async def one_round() -> None:
            summary = await validator.run_round()
            assert summary is not None
            failures.extend(s.outcome.value for s in summary.scores if s.outcome.value != "ok")

        async def one_fanout() -> None:
            sealed = sender.seal(sample_tasks(keys))
            # As the round sends them when the validator does not trace: no trace, no headers.
            replies = await sender.send_round(sealed, timeout_s=5.0, trace=None)
            failures.extend(r.outcome.value for r in replies if r.outcome.value != "ok")

        sample_task = seal_round(sample_tasks(keys), keypair=VALIDATOR)[0].SerializeToString()
        subjects_ = [subjects.miner_tasks(RAW_NETUID, key.hotkey) for key in keys]

        async def one_raw() -> None:
            await asyncio.gather(*(nc.request(subject, sample_task, timeout=5.0) for subject in subjects_))

        kt_meter = CpuMeter(kt, server_pid=server_pid)
        methods = [
            # A block of rounds ends with their tails on disk and published: counted, not timed.
            Method("kubetensor_round", one_round, meter=kt_meter, after_block=validator.drain),
            Method("kubetensor_fanout", one_fanout, meter=kt_meter),
            Method("raw_nats", one_raw, meter=CpuMeter(raw, server_pid=server_pid)),
        ]
        await interleaved(methods, rounds=rounds, warmup=warmup, block=block)
    finally:
        for responders in (kt, raw):
            if responders is not None:
                responders.close()
        await lite.close()
        await nc.close()
    result: dict[str, Any] = {"miners": count, "responder_processes": processes, "interleaved_block": block}
    for method in methods:
        result[method.name] = support.latency_stats(method.times, count="rounds") | {
            "cpu_ms_per_round": method.cpu_ms_per_round()
        }
    result |= {"task_bytes": len(sample_task), "non_ok_replies": len(failures)}
    for name in ("kubetensor_round", "kubetensor_fanout"):
        result[f"{name}_vs_raw_p50"] = result[name]["p50_ms"] / result["raw_nats"]["p50_ms"]
        result[f"{name}_vs_raw_p99"] = result[name]["p99_ms"] / result["raw_nats"]["p99_ms"]
    # The validator signs one envelope and verifies every response (as a group: ``verify_many``); the
    # responder process verifies the envelope once and signs every response.
    floor = (signature_costs["sign_us"] + count * signature_costs["verify_many_64_us_per_signature"]) / 1000
    responders_floor = (signature_costs["verify_us"] + count * signature_costs["sign_us"]) / 1000
    result["crypto_floor_ms"] = {"validator": floor, "responders": responders_floor}
    result["crypto_floor_vs_raw_p50"] = floor / result["raw_nats"]["p50_ms"]
    return result


def merge_dendrite(cases: list[dict[str, Any]], path: pathlib.Path | None) -> dict[str, Any]:
    """The ``dendrite`` section: dendrite_baseline.py's results per size, and dendrite / kubetensor."""
    if path is None:
        return {
            "status": "not_run",
            "reason": "needs bittensor==10.5.0 in a separate virtualenv: run "
            "tests/bench/dendrite_baseline.py there and pass --dendrite FILE",
        }
    measured = json.loads(path.read_text(encoding="utf-8"))
    by_size = {case["miners"]: case["dendrite"] for case in measured["cases"]}
    for case in cases:
        dendrite = by_size.get(case["miners"])
        if dendrite is not None:
            case["dendrite"] = dendrite
            for name in ("kubetensor_round", "kubetensor_fanout"):
                case[f"dendrite_vs_{name}_p50"] = dendrite["p50_ms"] / case[name]["p50_ms"]
                case[f"dendrite_vs_{name}_p99"] = dendrite["p99_ms"] / case[name]["p99_ms"]
    return {"status": "measured", "bittensor": measured.get("bittensor"), "machine": measured.get("machine")}


async def run(
    sizes: list[int], *, rounds: int, warmup: int, block: int = 10, processes: int = 1
) -> dict[str, Any]:
    from kubetensor.sandbox.natsserver import NatsServer

    with tempfile.TemporaryDirectory(prefix="kt-bench-network-") as scratch:
        workdir = pathlib.Path(scratch)
        # Measured before the server starts: nothing between its start and the try may fail and leave it
        # running.
        signature_costs = ed25519_costs()
        server = NatsServer(workdir / "nats").start()
        try:
            cases = [
                await measure(
                    size,
                    nats_url=server.url,
                    server_pid=server.process.pid,
                    rounds=rounds,
                    warmup=warmup,
                    block=block,
                    workdir=workdir,
                    signature_costs=signature_costs,
                    processes=processes,
                )
                for size in sizes
            ]
        finally:
            server.stop()
    return {
        "benchmark": "validator_fanout_round",
        "machine": support.machine(),
        "ed25519": signature_costs,
        "transports": {
            "kubetensor": {
                "client": "kubetensor.core.natslite",
                "miner_write_batch_bytes": REPLY_WRITE_BATCH_BYTES,
            },
            "raw_nats": {"client": "nats-py", "version": importlib.metadata.version("nats-py")},
        },
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, help="where to write the JSON results")
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="miner counts, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=200, help="timed rounds per size and method")
    parser.add_argument("--warmup", type=int, default=20, help="untimed rounds first")
    parser.add_argument(
        "--block", type=int, default=10, help="rounds of one method before the next method's turn"
    )
    parser.add_argument("--dendrite", type=pathlib.Path, help="dendrite_baseline.py's JSON, to merge in")
    parser.add_argument("--serve", choices=("kt", "raw"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--responder-processes",
        type=int,
        default=1,
        help="processes the responders of each size are spread over, for both methods (default 1)",
    )
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--nats", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve, count=args.count, nats_url=args.nats, part=args.part, parts=args.parts))
        return 0
    if args.out is None:
        parser.error("--out is required")
    if args.dendrite is not None and not args.dendrite.is_file():
        parser.error(f"--dendrite {args.dendrite}: no such file (run dendrite_baseline.py first)")
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.responder_processes < 1:
        parser.error(f"--responder-processes: expected at least 1, got {args.responder_processes}")
    if args.block < 1:
        parser.error(f"--block: expected at least 1, got {args.block}")
    results = asyncio.run(
        run(
            sizes,
            rounds=args.rounds,
            warmup=args.warmup,
            block=args.block,
            processes=args.responder_processes,
        )
    )
    results["dendrite"] = merge_dendrite(results["cases"], args.dendrite)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for case in results["cases"]:
        parts = [
            f"{name} p50 {case[key]['p50_ms']:.2f} p99 {case[key]['p99_ms']:.2f}"
            for name, key in (
                ("round", "kubetensor_round"),
                ("fan-out", "kubetensor_fanout"),
                ("raw", "raw_nats"),
            )
        ]
        print(f"{case['miners']:>3} miners (ms): " + " | ".join(parts))
        cpu = case["kubetensor_fanout"]["cpu_ms_per_round"]
        print(
            f"    fan-out CPU per round (ms): requester {cpu['requester']:.2f} responders "
            f"{cpu['responders']:.2f} nats-server {cpu['nats_server']:.2f} | ed25519 floor validator "
            f"{case['crypto_floor_ms']['validator']:.2f} "
            f"({case['crypto_floor_vs_raw_p50']:.1f}x raw p50)"
        )
        if "dendrite" in case:
            print(
                f"    dendrite (ms): p50 {case['dendrite']['p50_ms']:.1f} "
                f"p99 {case['dendrite']['p99_ms']:.1f} "
                f"| round {case['dendrite_vs_kubetensor_round_p50']:.1f}x faster at p50, "
                f"{case['dendrite_vs_kubetensor_round_p99']:.1f}x at p99"
            )
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, `kill`) is handled as Ctrl-C is: asyncio.run cancels the main task and the
    # servers the bench started are stopped. A background job starts with SIGINT ignored; undo that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    sys.exit(main())
