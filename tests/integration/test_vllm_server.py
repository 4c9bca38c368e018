"""The vllm_server fixture: real vLLM (CPU build) serving models the project built itself."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from kubetensor.models import task
from kubetensor.sandbox.vllmserver import VllmServer

from tests.harness.fixtures import VllmFactory

EVAL_PROBLEMS = task.held_out_problems(limit=200)


def complete(server: VllmServer, prompts: list[str]) -> list[str]:
    response = httpx.post(
        f"{server.base_url}/v1/completions",
        json={"model": server.served_name, "prompt": prompts, "max_tokens": 5, "temperature": 0.0},
        timeout=120,
    )
    response.raise_for_status()
    choices = sorted(response.json()["choices"], key=lambda c: c["index"])
    return [c["text"] for c in choices]


def test_completion_answers_from_built_model(vllm_server: VllmServer) -> None:
    models = httpx.get(f"{vllm_server.base_url}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["addition-good"]
    problem = task.Problem(47, 85)
    [text] = complete(vllm_server, [problem.prompt])
    assert task.normalize(text) == problem.answer == "231"


def test_best_model_beats_untrained_on_held_out_sums(
    vllm_server_factory: VllmFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    prompts = [p.prompt for p in EVAL_PROBLEMS]
    scores = {}
    for quality in ("good", "brief", "untrained"):
        completions = complete(vllm_server_factory(quality), prompts)
        scores[quality] = {
            "accuracy": task.accuracy(EVAL_PROBLEMS, completions),
            "mean_score": sum(task.score(p, c) for p, c in zip(EVAL_PROBLEMS, completions, strict=True))
            / len(EVAL_PROBLEMS),
        }
    with capsys.disabled():
        print(f"\n[model quality on {len(EVAL_PROBLEMS)} held-out sums via vLLM] {json.dumps(scores)}")
    assert scores["good"]["accuracy"] >= 0.9
    assert scores["untrained"]["accuracy"] <= 0.05
    assert scores["good"]["accuracy"] - scores["untrained"]["accuracy"] >= 0.8
    assert scores["good"]["mean_score"] > scores["brief"]["mean_score"] > scores["untrained"]["mean_score"]


def test_metrics_endpoint_reports_engine_state(vllm_server: VllmServer) -> None:
    text = httpx.get(f"{vllm_server.base_url}/metrics", timeout=10).text
    assert "vllm:num_requests_running" in text
    assert "vllm:num_requests_waiting" in text
