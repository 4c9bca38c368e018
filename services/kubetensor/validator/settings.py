"""``ValidatorSettings``: every setting of the validator process, from ``KT_VALIDATOR_*`` variables.

Loaded once by ``kubetensor.validator.__main__`` and passed down explicitly. The hotkey comes from
exactly one of ``KT_VALIDATOR_HOTKEY_SEED`` (64 hex characters) or ``KT_VALIDATOR_HOTKEY_FILE``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from kubetensor.core.hotkey import HotkeySettings

ENV_PREFIX = "KT_VALIDATOR_"


class ValidatorSettings(HotkeySettings):
    """Settings of one validator process (one hotkey on one subnet)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    # -- identity and network ---------------------------------------------------------------------------
    # hotkey_seed and hotkey_file (and keypair()) come from HotkeySettings, shared with the other neuron.
    netuid: int = Field(default=1, ge=1, le=65_535)
    """The subnet this validator scores."""
    nats_url: str = "nats://127.0.0.1:4222"
    """NATS server URL tasks go out through: ``nats://[user:password@ | token@]host:port``,
    several comma-separated. Tasks go through the lean client (``kubetensor.core.natslite``); for a
    ``tls://`` URL or a server that requires TLS, through nats.py (``bus.connect_tasks``)."""
    nats_auth_dir: Path | None = None
    """A folder holding the NATS credentials, a file ``token`` or files ``user`` and ``password`` (the
    operator mounts the Secret a Subnet names in ``spec.natsAuth`` here; ``kubetensor.core.natsauth``).
    The NATS client gets them as they are when connecting: they appear in no setting's value, URL or log
    line."""
    consensus_address: str = "127.0.0.1:50061"
    """host:port of the subnet's consensus service (metagraph in, weights out)."""

    # -- the task -------------------------------------------------------------------------------------
    task_type: str = "addition"
    """The subnet's task type (Subnet spec.task): which plug-in makes and judges challenges."""
    task_timeout_seconds: float = Field(default=5.0, gt=0)
    """Seconds a miner has to answer one task (its deadline); the round waits no longer."""
    sample_size: int = Field(default=16, ge=1, le=4096)
    """Miners queried per round (all of them when fewer are registered)."""
    round_seconds: float = Field(default=2.0, gt=0)
    """Seconds from the start of one round to the start of the next (at least the round's length)."""
    latency_weight: float = Field(default=0.05, ge=0, le=1)
    """Largest share of a score latency can take away (at the timeout); 0 ignores latency."""
    vpermit_stake_limit_rao: int = Field(default=0, ge=0)
    """Uids with a validator permit and more stake than this (rao) are validators, not queried."""
    seed: int | None = None
    """Seed of the random sampling and challenges (None: fresh randomness; tests fix it)."""

    # -- scores and weights ---------------------------------------------------------------------------
    moving_average_alpha: float = Field(default=0.1, gt=0, le=1)
    """Weight of a new score in each uid's exponential moving average."""
    weights_interval_seconds: float = Field(default=1_200.0, gt=0)
    """Seconds between two weight sets; keep it above the subnet's weights rate limit (chain default:
    100 blocks of 12 s, i.e. 1200 s)."""
    weights_retry_seconds: float = Field(default=60.0, gt=0)
    """Seconds before retrying a weight set the consensus service refused or did not answer."""
    state_path: Path = Path("validator-state.json")
    """Where the moving averages are kept across restarts: two slot files, ``<path>.0`` and
    ``<path>.1``, written in turn each round, so a crash mid-save leaves the other whole
    (``kubetensor.validator.state``)."""

    # -- process --------------------------------------------------------------------------------------
    listen: str = "127.0.0.1:50091"
    """gRPC listen address of the health service, host:port (port 0 picks one; in a pod "[::]:50091")."""
    ready_file: Path | None = None
    """If set, a JSON file {"address", "port", "pid", "hotkey"} written once the validator runs."""
    grace_seconds: float = Field(default=10.0, ge=0)
    """Seconds the round in progress gets to finish after SIGTERM."""
    log_level: str = "INFO"
    """Python logging level name."""
    metrics_listen: str = ""
    """Prometheus ``/metrics`` listen address, host:port (port 0 picks a free one; the ready file says
    which as "metrics_port"); empty: no metrics endpoint. Tracing is set by the standard ``OTEL_*``
    variables (``kubetensor.core.telemetry``), not here."""

    @model_validator(mode="after")
    def _round_fits_timeout(self) -> ValidatorSettings:
        if self.weights_retry_seconds > self.weights_interval_seconds:
            raise ValueError(
                f"weights_retry_seconds ({self.weights_retry_seconds}) must not exceed "
                f"weights_interval_seconds ({self.weights_interval_seconds})"
            )
        return self
