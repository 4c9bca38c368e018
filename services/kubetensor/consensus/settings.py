"""``ConsensusSettings``: every setting of the consensus process, from ``KT_CONSENSUS_*`` variables.

Loaded once by ``kubetensor.consensus.__main__`` and passed down explicitly (``create_server`` reads
``listen``; ``config()`` builds the domain service's ``ConsensusConfig``). Hyperparameters default to
the chain's runtime defaults (``yuma-spec.md`` §7); ``genesis_stake`` is a JSON object, for example
``KT_CONSENSUS_GENESIS_STAKE='{"<hotkey hex>": 1000000000000}'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetensor.consensus.metagraph import SubnetRules
from kubetensor.consensus.service import ConsensusConfig
from kubetensor.consensus.yuma import EpochParams
from kubetensor.core.keys import parse_hotkey

_U16_MAX = 65_535
_I64_MAX = (1 << 63) - 1

U16 = Annotated[int, Field(ge=0, le=_U16_MAX)]
Rao = Annotated[int, Field(ge=0, le=_I64_MAX)]
Blocks = Annotated[int, Field(ge=0, le=_I64_MAX)]


class ConsensusSettings(BaseSettings):
    """Settings of one consensus process (one subnet)."""

    model_config = SettingsConfigDict(
        env_prefix="KT_CONSENSUS_", frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    # -- process --------------------------------------------------------------------------------------
    listen: str = "127.0.0.1:50061"
    """gRPC listen address, host:port (port 0 picks a free port; in a pod use "[::]:50061")."""
    ready_file: Path | None = None
    """If set, a JSON file {"address", "port", "pid"} written once the server is serving."""
    state_path: Path = Path("consensus-state.sqlite3")
    """SQLite state file (created on first start; its genesis time fixes block 0)."""
    grace_seconds: float = Field(default=10.0, ge=0)
    """Seconds in-flight RPCs get to finish after SIGTERM."""
    retry_seconds: float = Field(default=0.5, gt=0)
    """Seconds before the first retry of a failed settlement delivery or epoch; doubles per failure."""
    retry_max_seconds: float = Field(default=30.0, gt=0)
    """Longest wait in seconds between two retries."""
    log_level: str = "INFO"
    """Python logging level name."""
    metrics_listen: str = ""
    """Prometheus ``/metrics`` listen address, host:port (port 0 picks a free one; the ready file says
    which as "metrics_port"); empty: no metrics endpoint. Tracing is set by the standard ``OTEL_*``
    variables (``kubetensor.core.telemetry``), not here."""

    # -- subnet and blocks ----------------------------------------------------------------------------
    netuid: int = Field(default=1, ge=1, le=_U16_MAX)
    """The subnet this process runs (u16; 0 is the root network, which has no epoch)."""
    block_seconds: float = Field(default=12.0, gt=0)
    """Seconds per block: block = floor(seconds since genesis / block_seconds). Fixed per state file."""
    tempo: int = Field(default=360, ge=1, le=_U16_MAX)
    """Blocks between two epochs (``Tempo``)."""

    # -- epoch hyperparameters (raw chain units) ------------------------------------------------------
    yuma3_on: bool = False
    """``Yuma3On``: Yuma 3 relative bonds instead of the classic EMA bonds."""
    liquid_alpha_on: bool = False
    """``LiquidAlphaOn``: per-bond EMA alpha from a sigmoid (Yuma 3 only)."""
    kappa: U16 = 32_767
    """``Kappa`` (u16): consensus majority, kappa / 65535."""
    bonds_penalty: U16 = 65_535
    """``BondsPenalty`` (u16): beta / 65535; 65535 makes bonds follow clipped weights."""
    bonds_moving_average: int = Field(default=900_000, ge=0, le=1_000_000)
    """``BondsMovingAverage`` in parts per million: EMA alpha = 1 - this / 1e6."""
    alpha_low: U16 = 45_875
    """``AlphaValues.0`` (u16): lowest liquid alpha, this / 65535."""
    alpha_high: U16 = 58_982
    """``AlphaValues.1`` (u16): highest liquid alpha, this / 65535."""
    alpha_sigmoid_steepness: int = Field(default=1_000, ge=-32_768, le=32_767)
    """``AlphaSigmoidSteepness`` (i16): sigmoid steepness times 100."""
    max_allowed_validators: U16 = 128
    """``MaxAllowedValidators``: uids with the largest stake that get a validator permit."""
    activity_cutoff: Blocks = 5_000
    """Blocks without a weight set after which a validator counts as inactive."""
    stake_threshold: Rao = 0
    """``StakeThreshold`` in rao: less stake counts as none and may not set weights."""
    rao_emission_per_epoch: Rao = 295_200_000_000
    """Rao one epoch distributes (default: 82% of 1 TAO per block over 360 blocks)."""

    # -- registration and weight rules ----------------------------------------------------------------
    max_allowed_uids: U16 = 256
    """``MaxAllowedUids``: uid slots; a registration into a full subnet prunes one."""
    immunity_period: Blocks = 4_096
    """``ImmunityPeriod`` in blocks: how long a new uid cannot be pruned."""
    min_non_immune_uids: U16 = 10
    """``MinNonImmuneUids``: prune among immune uids while at most this many are non-immune."""
    min_allowed_weights: U16 = 1_024
    """``MinAllowedWeights``: a weight row needs min(n, this) entries (self-weights excepted)."""
    max_weights_limit: U16 = 65_535
    """``MaxWeightsLimit`` (u16): largest normalized weight, this / 65535 (65535 disables the check)."""
    weights_rate_limit: Blocks = 100
    """``WeightsSetRateLimit`` in blocks between two weight sets of one uid."""

    # -- stake ----------------------------------------------------------------------------------------
    genesis_stake: dict[str, Rao] = Field(default_factory=dict)
    """Stake in rao per hotkey (hex) when no chain sidecar is configured (``chain_address`` unset)."""

    chain_address: str | None = None
    """host:port of the chain sidecar. When set, stake is read from its ledger and every settlement is
    submitted to it; when unset, ``genesis_stake`` is the stake and settlements stay in the local log."""

    @field_validator("genesis_stake")
    @classmethod
    def _hotkeys_are_public_keys(cls, value: dict[str, int]) -> dict[str, int]:
        normalized: dict[str, int] = {}
        for hotkey, rao in value.items():
            try:
                normalized[parse_hotkey(hotkey).hex()] = rao
            except ValueError as error:
                raise ValueError(f"genesis_stake key {hotkey[:80]!r}: {error}") from None
        return normalized

    @model_validator(mode="after")
    def _retry_bounds(self) -> ConsensusSettings:
        if self.retry_seconds > self.retry_max_seconds:
            raise ValueError(
                f"retry_seconds ({self.retry_seconds}) must not exceed "
                f"retry_max_seconds ({self.retry_max_seconds})"
            )
        return self

    @property
    def block_ns(self) -> int:
        """``block_seconds`` in whole nanoseconds."""
        return max(1, round(self.block_seconds * 1e9))

    def epoch_params(self) -> EpochParams:
        """The epoch hyperparameters these settings name."""
        return EpochParams(
            kappa=self.kappa,
            bonds_penalty=self.bonds_penalty,
            bonds_moving_average=self.bonds_moving_average,
            yuma3_on=self.yuma3_on,
            liquid_alpha_on=self.liquid_alpha_on,
            alpha_low=self.alpha_low,
            alpha_high=self.alpha_high,
            alpha_sigmoid_steepness=self.alpha_sigmoid_steepness,
            max_allowed_validators=self.max_allowed_validators,
            activity_cutoff=self.activity_cutoff,
            tempo=self.tempo,
            stake_threshold=self.stake_threshold,
            rao_emission=self.rao_emission_per_epoch,
        )

    def subnet_rules(self) -> SubnetRules:
        """The registration and weight rules these settings name."""
        return SubnetRules(
            max_allowed_uids=self.max_allowed_uids,
            immunity_period=self.immunity_period,
            min_non_immune_uids=self.min_non_immune_uids,
            min_allowed_weights=self.min_allowed_weights,
            max_weights_limit=self.max_weights_limit,
            weights_rate_limit=self.weights_rate_limit,
            stake_threshold=self.stake_threshold,
        )

    def config(self) -> ConsensusConfig:
        """The domain service's configuration."""
        return ConsensusConfig(
            netuid=self.netuid,
            params=self.epoch_params(),
            rules=self.subnet_rules(),
            retry_seconds=self.retry_seconds,
            retry_max_seconds=self.retry_max_seconds,
        )
