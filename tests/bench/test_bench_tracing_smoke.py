"""Smoke test of tests/bench/bench_tracing.py: it runs tiny and writes JSON of the documented shape.

No timing is asserted; the benchmark's numbers are read from its JSON output.
"""

from __future__ import annotations

import json
import pathlib

from tests.bench.scripts import load_bench


def test_bench_writes_json_with_every_mode_and_the_ratios_to_off(tmp_path: pathlib.Path) -> None:
    bench = load_bench("tracing")
    out = tmp_path / "results.json"
    assert bench.main(["--out", str(out), "--requests", "5", "--warmup", "1"]) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["benchmark"] == "miner_tracing_overhead"
    assert set(results["machine"]) >= {"python", "cpu_count", "load_average"}
    assert results["modes"] == ["off", "on_drop", "on_otlp"]
    assert results["on_otlp"] == "measured"
    result = results["result"]
    assert result["non_ok_replies"] == []
    for mode in results["modes"]:
        assert set(result[mode]) == {"p50_ms", "p99_ms", "mean_ms", "requests"}
        assert result[mode]["requests"] == 5
        assert 0 < result[mode]["p50_ms"] <= result[mode]["p99_ms"]
        assert result["miner_cpu_us_per_task"][mode] > 0
    for mode in ("on_drop", "on_otlp"):
        assert result[f"{mode}_vs_off_p50"] > 0
        assert result[f"{mode}_vs_off_p99"] > 0
        assert f"{mode}_minus_off_p50_us" in result
        assert f"{mode}_cpu_minus_off_us" in result
    # The traced miner's spans reached the real collector: one trace per request, warm-up included.
    assert result["on_otlp_traces_in_collector"] == 6
