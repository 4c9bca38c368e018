"""Smoke test of tests/bench/bench_chain.py: it runs at a tiny size and writes JSON of the documented shape.

No timing is asserted; the benchmark's numbers are read from its JSON output.
"""

from __future__ import annotations

import json
import pathlib

from tests.bench.scripts import load_bench

CASES = [
    "ledger_transactions_sequential",
    "ledger_transactions_concurrent",
    "ledger_settlements_sequential",
    "grpc_transactions_concurrent",
    "raw_sqlite_commit_each",
    "raw_sqlite_batched",
]


def test_bench_writes_json_with_ledger_and_raw_sqlite_cases(tmp_path: pathlib.Path) -> None:
    bench = load_bench("chain")
    out = tmp_path / "results.json"
    args = [
        "--out",
        str(out),
        "--dir",
        str(tmp_path / "scratch"),
        "--transactions",
        "8",
        "--concurrency",
        "4",
    ]
    assert bench.main([*args, "--settlements", "3", "--entries", "3", "--stakers", "2"]) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["benchmark"] == "chain_ledger"
    assert set(results["machine"]) >= {"python", "sqlite", "cpu_count"}
    assert results["durability"]["synchronous"] == "FULL"
    assert results["durability"]["journal_mode"] == "wal"
    assert [case["name"] for case in results["cases"]] == CASES
    for case in results["cases"]:
        assert set(case) >= {"operations", "seconds", "per_second", "commits"}
        assert case["operations"] > 0
        assert case["commits"] > 0
    by_name = {case["name"]: case for case in results["cases"]}
    assert by_name["ledger_settlements_sequential"]["operations"] == 3
    assert by_name["ledger_transactions_sequential"]["verified"] is True
    assert by_name["ledger_transactions_concurrent"]["verified"] is True
    assert by_name["ledger_settlements_sequential"]["verified"] is True
    assert set(results["ratios"]) == {
        "ledger_sequential_vs_raw_commit_each",
        "ledger_concurrent_vs_raw_batched",
        "ledger_concurrent_vs_raw_commit_each",
    }
