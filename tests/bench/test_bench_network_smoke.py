"""Smoke test of tests/bench/bench_network.py: it runs at a tiny size and writes JSON of the documented shape.

No timing is asserted; the benchmark's numbers are read from its JSON output.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.bench.scripts import load_bench


def test_bench_writes_json_with_every_method_per_size(tmp_path: pathlib.Path) -> None:
    bench = load_bench("network")
    out = tmp_path / "results.json"
    assert bench.main(["--out", str(out), "--sizes", "2,3", "--rounds", "3", "--warmup", "1"]) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["benchmark"] == "validator_fanout_round"
    assert set(results["machine"]) >= {"python", "cpu_count", "load_average"}
    assert [case["miners"] for case in results["cases"]] == [2, 3]
    assert [case["responder_processes"] for case in results["cases"]] == [1, 1]
    assert results["ed25519"]["sign_us"] > 0
    assert results["ed25519"]["verify_us"] > 0
    assert results["ed25519"]["verify_many_64_us_per_signature"] > 0
    # The services on their own NATS client, the baseline on nats.py.
    assert results["transports"]["kubetensor"]["client"] == "kubetensor.core.natslite"
    assert results["transports"]["kubetensor"]["miner_write_batch_bytes"] > 0
    assert results["transports"]["raw_nats"]["client"] == "nats-py"
    for case in results["cases"]:
        for method in ("kubetensor_round", "kubetensor_fanout", "raw_nats"):
            assert set(case[method]) == {"p50_ms", "p99_ms", "mean_ms", "rounds", "cpu_ms_per_round"}
            assert case[method]["rounds"] == 3
            assert 0 < case[method]["p50_ms"] <= case[method]["p99_ms"]
            assert set(case[method]["cpu_ms_per_round"]) == {"requester", "responders", "nats_server"}
            assert all(value >= 0 for value in case[method]["cpu_ms_per_round"].values())
        # The signature work per round: the validator signs one envelope and verifies every response as a
        # group; the responders verify the envelope once and sign every response.
        sign_ms, verify_ms = results["ed25519"]["sign_us"] / 1000, results["ed25519"]["verify_us"] / 1000
        group_ms = results["ed25519"]["verify_many_64_us_per_signature"] / 1000
        assert case["crypto_floor_ms"]["validator"] == pytest.approx(sign_ms + case["miners"] * group_ms)
        assert case["crypto_floor_ms"]["responders"] == pytest.approx(verify_ms + case["miners"] * sign_ms)
        assert case["crypto_floor_vs_raw_p50"] > 0
        assert case["kubetensor_round_vs_raw_p50"] > 0
        assert case["kubetensor_fanout_vs_raw_p99"] > 0
        # Every miner answered every task: the numbers measure real answers, not failures.
        assert case["non_ok_replies"] == 0
    assert results["dendrite"]["status"] == "not_run"


def test_bench_spreads_the_responders_over_processes_and_every_one_answers(tmp_path: pathlib.Path) -> None:
    bench = load_bench("network")
    out = tmp_path / "results.json"
    argv = ["--out", str(out), "--sizes", "5", "--rounds", "2", "--warmup", "1", "--responder-processes", "2"]
    assert bench.main(argv) == 0
    (case,) = json.loads(out.read_text(encoding="utf-8"))["cases"]
    assert case["responder_processes"] == 2
    # Five miners over two processes (three and two): a miner left out would time out its task.
    assert case["non_ok_replies"] == 0
    # CPU times tick in 10 ms steps: two tiny rounds may read as zero, never as less.
    assert case["kubetensor_round"]["cpu_ms_per_round"]["responders"] >= 0


def test_bench_merges_a_dendrite_run(tmp_path: pathlib.Path) -> None:
    bench = load_bench("network")
    dendrite = tmp_path / "dendrite.json"
    dendrite.write_text(
        json.dumps(
            {
                "bittensor": "10.5.0",
                "machine": {},
                "cases": [
                    {"miners": 2, "dendrite": {"p50_ms": 40.0, "p99_ms": 80.0, "mean_ms": 45.0, "rounds": 5}}
                ],
            }
        )
    )
    cases = [
        {
            "miners": 2,
            "kubetensor_round": {"p50_ms": 2.0, "p99_ms": 4.0},
            "kubetensor_fanout": {"p50_ms": 1.0, "p99_ms": 2.0},
        }
    ]
    section = bench.merge_dendrite(cases, dendrite)
    assert section["status"] == "measured"
    assert cases[0]["dendrite_vs_kubetensor_round_p50"] == 20.0
    assert cases[0]["dendrite_vs_kubetensor_fanout_p99"] == 40.0


def test_the_peer_baseline_environment_is_bittensor_10_5_0_fully_pinned() -> None:
    root = pathlib.Path(__file__).resolve().parents[2]
    lock = (root / "requirements" / "bittensor-baseline.txt").read_text(encoding="utf-8").split()
    assert "bittensor==10.5.0" in lock
    unpinned = [line for line in lock if "==" not in line]
    assert unpinned == [], f"every package of the baseline environment is pinned: {unpinned}"
    script = (root / "tools" / "bittensor-venv.sh").read_text(encoding="utf-8")
    assert "lock=requirements/bittensor-baseline.txt" in script
    assert '--no-deps -r "$lock"' in script
