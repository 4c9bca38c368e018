"""``check_vllm_gpu.py``: its pure parts, and the whole check on the vLLM CPU build (so it cannot rot
where there is no GPU; ``docs/gpu.md`` has what it measured on an H100)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from kubetensor.models import build

HERE = Path(__file__).resolve().parent


def load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_vllm_gpu", HERE / "check_vllm_gpu.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_vllm_gpu", module)
    spec.loader.exec_module(module)
    return sys.modules["check_vllm_gpu"]


check = load_check()


def test_serve_args_are_the_operators_for_the_example_miner_with_the_model_swapped(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 64}))
    name, spec = check.miner_spec(check.REPO / "manifests" / "examples" / "10-miners.yaml")
    args = check.serve_args(spec, model_dir=tmp_path, name="good", port=1234, device="gpu")
    assert name == "qwen-small"
    # The operator's own rendering, in its order; only the model and its context limit differ.
    assert args[0] == str(tmp_path)
    assert "--dtype=bfloat16" in args
    assert "--gpu-memory-utilization=0.85" in args
    assert "--max-model-len=64" in args
    assert "--max-model-len=4096" not in args
    # The overrides come last, so vLLM's argparse keeps them.
    assert args[-3:] == ["--served-model-name=good", "--host=127.0.0.1", "--port=1234"]
    cpu = check.serve_args(spec, model_dir=tmp_path, name="good", port=1234, device="cpu")
    assert cpu[-2:] == ["--dtype=float32", "--enforce-eager"]


def test_order_failures_name_the_models_out_of_order() -> None:
    assert (
        check.order_failures(
            {"good": {"accuracy": 0.9}, "brief": {"accuracy": 0.5}, "untrained": {"accuracy": 0.0}}
        )
        == []
    )
    failures = check.order_failures(
        {"good": {"accuracy": 0.4}, "brief": {"accuracy": 0.5}, "untrained": {"accuracy": 0.4}}
    )
    assert failures == [
        "good (0.400) is not above untrained (0.400)",
        "good (0.400) is below brief (0.500)",
    ]


def test_agreement_counts_answers_that_normalize_alike() -> None:
    mine = {"good": {"answers": [{"prompt": "1+2=", "answer": "3</s>"}, {"prompt": "2+2=", "answer": "5"}]}}
    reference = {
        "device": "cpu",
        "models": {
            "good": {
                "accuracy": 1.0,
                "answers": [
                    {"prompt": "1+2=", "answer": " 3"},
                    {"prompt": "2+2=", "answer": "4"},
                    {"prompt": "9+9=", "answer": "81"},
                ],
            }
        },
    }
    assert check.agreement(mine, reference) == {
        "good": {"compared": 2, "same_answer": 1, "reference_device": "cpu", "reference_accuracy": 1.0}
    }


@pytest.mark.slow
def test_the_check_passes_on_the_cpu_build(tmp_path: Path) -> None:
    build.build(["good", "untrained"])
    out = tmp_path / "result.json"
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "check_vllm_gpu.py"),
            "--device",
            "cpu",
            "--models",
            "good,untrained",
            "--problems",
            "20",
            "--log-dir",
            str(tmp_path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "good: ready after" in done.stdout
    report = json.loads(out.read_text())
    assert report["ok"] is True
    assert report["failures"] == []
    good, untrained = report["models"]["good"], report["models"]["untrained"]
    assert good["problems"] == untrained["problems"] == 20
    assert good["accuracy"] > untrained["accuracy"]
    assert good["args"][0] == str(build.model_dir("good"))
    assert all(answer["ttft_ms"] is not None for answer in good["answers"])
    assert good["tokens"] > 0
    assert good["ready_seconds"] > 0
