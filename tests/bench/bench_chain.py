"""Benchmark of the chain sidecar's ``ledger`` backend against a raw SQLite insert loop, both with fsync on.

Run by hand or by ``make bench`` as ``python tests/bench/bench_chain.py --out results.json``; imported by
``tests/bench/test_bench_chain_smoke.py``, which runs it at a tiny size and checks the JSON shape.

Every case writes to a fresh SQLite file in WAL mode with ``synchronous=FULL`` (each commit fsyncs the
WAL) in ``--dir`` (default: the system temp dir; point it at the disk you care about). In one run:

* ``ledger_transactions_sequential``: one client sends AddStake after AddStake to ``ChainService`` (in
  process, no gRPC): each is verified (ed25519), applied, sealed in its own signed block and committed.
* ``ledger_transactions_concurrent``: ``--concurrency`` clients (one coldkey each) send at once; the
  writer group-commits what queued during the previous commit into one block.
* ``ledger_settlements_sequential``: settlements of ``--entries`` uids (every hotkey registered and
  staked by several coldkeys, so each settlement makes owner-cut, incentive, take and dividend
  credits), one after another.
* ``grpc_transactions_concurrent``: the concurrent case through a real gRPC server on 127.0.0.1.
* ``raw_sqlite_commit_each`` and ``raw_sqlite_batched``: a loop inserting rows of the ledger's average
  block size into one table, committing after each row, or after as many rows as the concurrent ledger
  case put in a block on average. This is the durability floor the ledger is compared with.

The JSON holds operations, seconds, operations per second and commits for each case, and the ratio of
each ledger case to its raw SQLite counterpart. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import signal
import sqlite3
import sys
import tempfile
import time
from typing import Any

try:
    import kubetensor  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "services"))

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubetensor.chain import client as requests  # noqa: E402
from kubetensor.chain import wire  # noqa: E402
from kubetensor.chain.client import ChainClient  # noqa: E402
from kubetensor.chain.ledger import Ledger  # noqa: E402
from kubetensor.chain.service import ChainService, SettlementSubmission  # noqa: E402
from kubetensor.chain.servicer import create_server  # noqa: E402
from kubetensor.chain.settings import ChainSettings  # noqa: E402
from kubetensor.chain.verify import verify_ledger  # noqa: E402

from tests.chain_support import AUTHORITY, ONE, TAO, keypair, make_settlement  # noqa: E402

HOTKEY = keypair(5_000)
OWNER = keypair(5_001)


def _open(path: pathlib.Path, *, balances: dict[str, int]) -> ChainService:
    return ChainService.open(ledger_path=path, authority=AUTHORITY, genesis_balances=balances)


def _blocks_and_bytes(path: pathlib.Path) -> tuple[int, int]:
    """Blocks after genesis, and the average body size of those blocks."""
    ledger = Ledger.open_read_only(path)
    try:
        sizes = [len(sealed.body) for height, _, sealed in ledger.stored_blocks() if height > 0]
    finally:
        ledger.close()
    return len(sizes), (sum(sizes) // len(sizes) if sizes else 0)


def _case(name: str, *, operations: int, seconds: float, commits: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "operations": operations,
        "seconds": seconds,
        "per_second": operations / seconds if seconds > 0 else 0.0,
        "commits": commits,
        **extra,
    }


async def ledger_transactions(directory: pathlib.Path, *, count: int, concurrency: int) -> dict[str, Any]:
    """AddStake transactions from ``concurrency`` coldkeys, each sending its share one after another."""
    keys = [keypair(10_000 + i) for i in range(concurrency)]
    path = directory / f"ledger-tx-{concurrency}.sqlite3"
    service = _open(path, balances={key.hotkey: 10**6 * TAO for key in keys})
    await service.start()
    per_key = max(1, count // concurrency)
    try:
        await service.submit_transaction(
            wire.transaction_from_request(requests.register_hotkey_request(OWNER, HOTKEY, nonce=1))
        )

        async def send(key_index: int) -> None:
            key = keys[key_index]
            for nonce in range(1, per_key + 1):
                request = requests.add_stake_request(key, hotkey=HOTKEY.hotkey, amount_rao=TAO, nonce=nonce)
                await service.submit_transaction(wire.transaction_from_request(request))

        start = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(concurrency)))
        seconds = time.perf_counter() - start
    finally:
        await service.stop()
    blocks, body_bytes = _blocks_and_bytes(path)
    name = "ledger_transactions_sequential" if concurrency == 1 else "ledger_transactions_concurrent"
    return _case(
        name,
        operations=per_key * concurrency,
        seconds=seconds,
        commits=blocks - 1,
        concurrency=concurrency,
        average_block_bytes=body_bytes,
        verified=verify_ledger(path).ok,
        path=path,
    )


async def ledger_settlements(
    directory: pathlib.Path, *, count: int, entries: int, stakers: int
) -> dict[str, Any]:
    """Settlements of ``entries`` uids, each hotkey registered and staked by ``stakers`` coldkeys."""
    owners = [keypair(20_000 + i) for i in range(entries)]
    hotkeys = [keypair(30_000 + i) for i in range(entries)]
    staker_keys = [keypair(40_000 + i) for i in range(stakers)]
    path = directory / "ledger-settlements.sqlite3"
    service = _open(path, balances={key.hotkey: 10**6 * TAO for key in staker_keys})
    await service.start()
    try:
        for owner, hotkey in zip(owners, hotkeys, strict=True):
            request = requests.register_hotkey_request(owner, hotkey, nonce=1)
            await service.submit_transaction(wire.transaction_from_request(request))
        await service.submit_transaction(
            wire.transaction_from_request(requests.register_subnet_request(OWNER, netuid=1, nonce=1))
        )
        for index, staker in enumerate(staker_keys):
            for nonce, hotkey in enumerate(hotkeys, start=1):
                request = requests.add_stake_request(
                    staker, hotkey=hotkey.hotkey, amount_rao=(index + 1) * TAO, nonce=nonce
                )
                await service.submit_transaction(wire.transaction_from_request(request))
        before_blocks = service.info().height
        settlements = []
        previous = ""
        for epoch in range(1, count + 1):
            settlement = make_settlement(
                epoch=epoch,
                previous_hash=previous,
                entries=[
                    (hotkey.hotkey, (uid * 7919) % ONE, (uid * 104729) % ONE, 1_000_003 * (uid + 1))
                    for uid, hotkey in enumerate(hotkeys)
                ],
            )
            settlements.append(settlement)
            previous = settlement.hash
        start = time.perf_counter()
        for settlement in settlements:
            await service.submit_settlement(SettlementSubmission(settlement))
        seconds = time.perf_counter() - start
        commits = service.info().height - before_blocks
    finally:
        await service.stop()
    return _case(
        "ledger_settlements_sequential",
        operations=count,
        seconds=seconds,
        commits=commits,
        entries=entries,
        stakers_per_hotkey=stakers,
        verified=verify_ledger(path).ok,
    )


async def grpc_transactions(directory: pathlib.Path, *, count: int, concurrency: int) -> dict[str, Any]:
    """The concurrent transaction case through a real gRPC server on 127.0.0.1."""
    keys = [keypair(50_000 + i) for i in range(concurrency)]
    path = directory / "ledger-grpc.sqlite3"
    service = _open(path, balances={key.hotkey: 10**6 * TAO for key in keys})
    server, port = create_server(ChainSettings(listen="127.0.0.1:0", ledger_path=path), service)
    await service.start()
    await server.start()
    per_key = max(1, count // concurrency)
    try:
        async with ChainClient.connect(f"127.0.0.1:{port}", timeout=60) as client:
            await client.register_hotkey(OWNER, HOTKEY, nonce=1)

            async def send(key_index: int) -> None:
                for nonce in range(1, per_key + 1):
                    await client.add_stake(keys[key_index], hotkey=HOTKEY.hotkey, amount_rao=TAO, nonce=nonce)

            start = time.perf_counter()
            await asyncio.gather(*(send(i) for i in range(concurrency)))
            seconds = time.perf_counter() - start
    finally:
        await server.stop(0)
        await service.stop()
    blocks, _ = _blocks_and_bytes(path)
    return _case(
        "grpc_transactions_concurrent",
        operations=per_key * concurrency,
        seconds=seconds,
        commits=blocks - 1,
        concurrency=concurrency,
    )


def raw_sqlite(
    directory: pathlib.Path, *, name: str, rows: int, row_bytes: int, rows_per_commit: int
) -> dict[str, Any]:
    """Insert ``rows`` blobs of ``row_bytes`` into a WAL/synchronous=FULL table, committing in groups."""
    path = directory / f"{name}.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, hash TEXT NOT NULL, body BLOB NOT NULL)")
        payload = os.urandom(max(1, row_bytes))
        commits = 0
        start = time.perf_counter()
        row = 0
        while row < rows:
            db.execute("BEGIN IMMEDIATE")
            for _ in range(min(rows_per_commit, rows - row)):
                db.execute("INSERT INTO rows (hash, body) VALUES (?, ?)", (f"{row:064x}", payload))
                row += 1
            db.execute("COMMIT")
            commits += 1
        seconds = time.perf_counter() - start
    finally:
        db.close()
    return _case(
        name,
        operations=rows,
        seconds=seconds,
        commits=commits,
        row_bytes=row_bytes,
        rows_per_commit=rows_per_commit,
    )


async def run(args: argparse.Namespace, directory: pathlib.Path) -> dict[str, Any]:
    sequential = await ledger_transactions(directory, count=args.transactions, concurrency=1)
    concurrent = await ledger_transactions(directory, count=args.transactions, concurrency=args.concurrency)
    settlements = await ledger_settlements(
        directory, count=args.settlements, entries=args.entries, stakers=args.stakers
    )
    over_grpc = await grpc_transactions(directory, count=args.transactions, concurrency=args.concurrency)
    raw_each = raw_sqlite(
        directory,
        name="raw_sqlite_commit_each",
        rows=sequential["operations"],
        row_bytes=sequential["average_block_bytes"],
        rows_per_commit=1,
    )
    per_block = max(1, round(concurrent["operations"] / max(1, concurrent["commits"])))
    raw_batched = raw_sqlite(
        directory,
        name="raw_sqlite_batched",
        rows=concurrent["operations"],
        row_bytes=concurrent["average_block_bytes"] // per_block,
        rows_per_commit=per_block,
    )
    cases = [sequential, concurrent, settlements, over_grpc, raw_each, raw_batched]
    for case in cases:
        case.pop("path", None)

    def ratio(ledger: dict[str, Any], raw: dict[str, Any]) -> float:
        return ledger["per_second"] / raw["per_second"] if raw["per_second"] else 0.0

    return {
        "benchmark": "chain_ledger",
        "machine": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "durability": {"journal_mode": "wal", "synchronous": "FULL", "directory": str(directory)},
        "cases": cases,
        "ratios": {
            "ledger_sequential_vs_raw_commit_each": ratio(sequential, raw_each),
            "ledger_concurrent_vs_raw_batched": ratio(concurrent, raw_batched),
            "ledger_concurrent_vs_raw_commit_each": ratio(concurrent, raw_each),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="JSON results file")
    parser.add_argument("--dir", type=pathlib.Path, default=None, help="where the SQLite files go")
    parser.add_argument("--transactions", type=int, default=2_000, help="transactions per transaction case")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent clients")
    parser.add_argument("--settlements", type=int, default=200, help="settlements in the settlement case")
    parser.add_argument("--entries", type=int, default=64, help="uids per settlement")
    parser.add_argument("--stakers", type=int, default=4, help="staking coldkeys per hotkey")
    args = parser.parse_args(argv)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-chain-", dir=args.dir) as scratch:
        results = asyncio.run(run(args, pathlib.Path(scratch)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for case in results["cases"]:
        print(
            f"{case['name']:34s} {case['per_second']:10.1f}/s  "
            f"({case['operations']} in {case['seconds']:.2f}s, {case['commits']} commits)"
        )
    for name, value in results["ratios"].items():
        print(f"{name:44s} {value:.3f}")
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, `kill`) is handled as Ctrl-C is: asyncio.run cancels the main task and the
    # servers the bench started are stopped. A background job starts with SIGINT ignored; undo that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    raise SystemExit(main())
