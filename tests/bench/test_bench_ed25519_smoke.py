"""Smoke test of tests/bench/bench_ed25519.py: it runs tiny and writes JSON of the documented shape.

No timing is asserted; the benchmark's numbers are read from its JSON output.
"""

from __future__ import annotations

import json
import math
import pathlib

from tests.bench.scripts import load_bench


def test_bench_writes_json_with_both_backends_per_operation(tmp_path: pathlib.Path) -> None:
    bench = load_bench("ed25519")
    out = tmp_path / "results.json"
    assert (
        bench.main(["--out", str(out), "--repeats", "2", "--iterations", "64", "--message-bytes", "32"]) == 0
    )
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["benchmark"] == "ed25519"
    assert set(results["machine"]) >= {"python", "cpu_count", "load_average"}
    assert (results["repeats"], results["iterations"], results["message_bytes"]) == (2, 64, 32)
    operations = results["operations"]
    assert list(operations) == [
        "sign",
        "verify",
        "verify_batch_16",
        "verify_batch_64",
        "verify_batch_64_one_bad",
    ]
    sizes = {
        "sign": 1,
        "verify": 1,
        "verify_batch_16": 16,
        "verify_batch_64": 64,
        "verify_batch_64_one_bad": 64,
    }
    for name, row in operations.items():
        assert set(row) == {
            "signatures_per_call",
            "calls_per_round",
            "pynacl_us_per_signature",
            "native_us_per_signature",
            "speedup",
        }
        assert row["signatures_per_call"] == sizes[name]
        assert row["calls_per_round"] == max(1, 64 // sizes[name])
        assert row["pynacl_us_per_signature"] > 0
        assert row["native_us_per_signature"] > 0
        assert math.isclose(row["speedup"], row["pynacl_us_per_signature"] / row["native_us_per_signature"])
