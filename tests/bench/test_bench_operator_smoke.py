"""Smoke test of tests/bench/bench_operator.py: a tiny run writes JSON of the documented shape.

No timing is asserted; the benchmark's numbers are read from its JSON output.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.bench.scripts import load_bench

# Starts its own control plane, a consensus process and the operator.
pytestmark = pytest.mark.slow


def test_bench_writes_json_with_plain_operator_and_memory_figures(tmp_path: pathlib.Path) -> None:
    bench = load_bench("operator")
    out = tmp_path / "results.json"
    assert (
        bench.main(["--out", str(out), "--miners", "2", "--memory-miners", "3", "--resync-seconds", "2"]) == 0
    )
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["benchmark"] == "operator"
    assert set(results["machine"]) >= {"python", "cpu_count"}
    assert results["settings"]["miners"] == 2
    assert results["plain"]["deployments"] == results["operator"]["miners"] == 2
    assert results["plain"]["seconds_to_available"] > 0
    assert results["operator"]["seconds_to_ready"] > 0
    assert results["operator"]["operator_cpu_seconds"] >= 0
    assert results["ratio"] > 0
    memory = results["memory"]
    assert (memory["miners"], memory["replicas_per_miner"], memory["condition"]) == (3, 0, "Registered")
    assert memory["seconds_to_ready"] > 0
    assert memory["peak_rss_bytes"] >= memory["rss_bytes"] > 0
    assert results["kubernetes_version"].startswith("v1.")
