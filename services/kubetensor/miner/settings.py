"""``MinerSettings``: every setting of the miner process, from ``KT_MINER_*`` variables.

Loaded once by ``kubetensor.miner.__main__`` and passed down explicitly. The hotkey comes from exactly
one of ``KT_MINER_HOTKEY_SEED`` (64 hex characters, e.g. from a Secret) or ``KT_MINER_HOTKEY_FILE``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from kubetensor.core.hotkey import HotkeySettings

ENV_PREFIX = "KT_MINER_"


DEFAULT_MAX_PENDING_TASKS = 256
"""``max_pending_tasks`` by default: far above one hotkey's share of a round (a task per validator) and
above the default generation slots."""


class MinerSettings(HotkeySettings):
    """Settings of one miner process (one hotkey on one subnet)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    # -- identity and network ---------------------------------------------------------------------------
    # hotkey_seed and hotkey_file (and keypair()) come from HotkeySettings, shared with the other neuron.
    netuid: int = Field(default=1, ge=1, le=65_535)
    """The subnet this miner answers tasks on."""
    nats_url: str = "nats://127.0.0.1:4222"
    """NATS server URL the tasks arrive through: ``nats://[user:password@ | token@]host:port``,
    several comma-separated. Tasks go through the lean client (``kubetensor.core.natslite``); for a
    ``tls://`` URL or a server that requires TLS, through nats.py (``bus.connect_tasks``)."""
    nats_auth_dir: Path | None = None
    """A folder holding the NATS credentials, a file ``token`` or files ``user`` and ``password`` (the
    operator mounts the Secret a Subnet names in ``spec.natsAuth`` here; ``kubetensor.core.natsauth``).
    The NATS client gets them as they are when connecting: they appear in no setting's value, URL or log
    line."""
    consensus_address: str = "127.0.0.1:50061"
    """host:port of the subnet's consensus service (the metagraph says who holds a permit)."""

    # -- engine -----------------------------------------------------------------------------------------
    engine_url: str = "http://127.0.0.1:8000"
    """Base URL of the OpenAI-compatible server (vLLM), without /v1."""
    engine_model: str = ""
    """Served model name to request ("" : the first model the server lists)."""
    engine_api_key: SecretStr | None = None
    """Bearer token for the engine, if it wants one."""
    engine_request_seconds: float = Field(default=60.0, gt=0)
    """Seconds one engine request may take before it fails."""
    engine_wait_seconds: float = Field(default=600.0, ge=0)
    """Seconds to wait at start for the engine to list its models (vLLM loads for a while)."""

    # -- behaviour --------------------------------------------------------------------------------------
    max_concurrency: int = Field(default=8, ge=1, le=4096)
    """Generations at once (tasks and gRPC calls together); beyond it the answer is "busy"."""
    max_pending_tasks: int = Field(default=DEFAULT_MAX_PENDING_TASKS, ge=1, le=1_000_000)
    """Tasks held at once (being checked, generated or answered); beyond it a task is answered "busy" at
    once, unchecked, so a flood of tasks costs a signature each and never memory."""
    max_ahead_seconds: float = Field(default=60.0, gt=0)
    """A task deadline further ahead than this is refused (bounds the replay guard's memory)."""
    state_dir: Path | None = None
    """Folder for state that must outlive the process: the replay journal (the operator mounts an
    emptyDir, which survives a container restart). Unset: the replay guard lives in memory only, and a
    miner restarted within ``max_ahead_seconds`` could answer a replayed task once more."""
    max_tokens_limit: int = Field(default=512, ge=1)
    """Most tokens one generation may ask for (larger requests are cut to this)."""
    permit_refresh_seconds: float = Field(default=12.0, gt=0)
    """Seconds between two metagraph reads for validator permits."""
    permit_miss_refresh_seconds: float = Field(default=1.0, ge=0)
    """A task from an unpermitted validator re-reads the metagraph at most this often, in seconds."""

    # -- process ----------------------------------------------------------------------------------------
    listen: str = "127.0.0.1:50081"
    """gRPC listen address for Generate and health, host:port (port 0 picks one; in a pod "[::]:50081")."""
    ready_file: Path | None = None
    """If set, a JSON file {"address", "port", "pid", "hotkey"} written once the miner is serving."""
    grace_seconds: float = Field(default=10.0, ge=0)
    """Seconds in-flight tasks and RPCs get to finish after SIGTERM."""
    log_level: str = "INFO"
    """Python logging level name."""
    metrics_listen: str = ""
    """Prometheus ``/metrics`` listen address, host:port (port 0 picks a free one; the ready file says
    which as "metrics_port"); empty: no metrics endpoint. Tracing is set by the standard ``OTEL_*``
    variables (``kubetensor.core.telemetry``), not here."""

    @field_validator("state_dir", mode="before")
    @classmethod
    def _empty_state_dir_is_unset(cls, value: object) -> object:
        # KT_MINER_STATE_DIR="" means no folder, not the working directory (Path("") is ".").
        return None if value == "" else value
