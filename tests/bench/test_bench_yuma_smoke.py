"""Smoke test of tests/bench/bench_yuma.py: it runs at a tiny size and writes JSON of the documented shape.

No timing is asserted; the benchmark's numbers are read from its JSON output.
"""

from __future__ import annotations

import json
import math
import pathlib

from tests.bench.scripts import load_bench


def test_bench_writes_json_with_both_implementations_per_case(tmp_path: pathlib.Path) -> None:
    bench = load_bench("yuma")
    out = tmp_path / "results.json"
    assert bench.main(["--out", str(out), "--sizes", "4:12,8:24", "--repeats", "2"]) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["benchmark"] == "yuma_epoch"
    assert set(results["machine"]) >= {"python", "numpy", "cpu_count"}
    cases = results["cases"]
    assert [(c["n"], c["variant"]) for c in cases] == [
        (n, v) for n in (16, 32) for v in ("yuma2", "yuma3", "yuma3_liquid")
    ]
    for case in cases:
        for impl in ("kubetensor", "float64_reference"):
            assert set(case[impl]) == {"median_s", "min_s"}
            assert 0 < case[impl]["min_s"] <= case[impl]["median_s"]
        assert case["ratio_median"] > 0
        assert case["ratio_min"] > 0
        assert case["repeats"] == 2
        assert case["density"] == 0.5
        assert math.isfinite(case["max_abs_dividend_diff"])
