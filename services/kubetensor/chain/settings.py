"""``ChainSettings``: every setting of the chain sidecar, from ``KT_CHAIN_*`` environment variables.

Loaded once by ``kubetensor.chain.__main__`` and passed down explicitly (``create_server`` reads
``listen``; ``params()`` gives the economic parameters a new ledger's genesis block fixes). Maps are
JSON, for example ``KT_CHAIN_GENESIS_BALANCES='{"<coldkey hex>": 1000000000000}'`` and
``KT_CHAIN_SETTLEMENT_SIGNERS='["<public key hex>"]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetensor.chain.economics import DEFAULT_OWNER_CUT, DEFAULT_TAKE
from kubetensor.chain.state import ChainParams
from kubetensor.core.keys import parse_hotkey

_U16_MAX = 65_535
_I64_MAX = (1 << 63) - 1

U16 = Annotated[int, Field(ge=0, le=_U16_MAX)]
Rao = Annotated[int, Field(ge=0, le=_I64_MAX)]


def _public_key(what: str, value: str) -> str:
    try:
        return parse_hotkey(value).hex()
    except ValueError as error:
        raise ValueError(f"{what} {value[:80]!r}: {error}") from None


class ChainSettings(BaseSettings):
    """Settings of one chain sidecar process."""

    model_config = SettingsConfigDict(
        env_prefix="KT_CHAIN_", frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    # -- process --------------------------------------------------------------------------------------
    listen: str = "127.0.0.1:50071"
    """gRPC listen address, host:port (port 0 picks a free port). Loopback by default: a sidecar serves
    the containers of its own pod; without settlement_signers, whoever reaches it can record settlements."""
    ready_file: Path | None = None
    """If set, a JSON file {"address", "port", "pid", "authority"} written once the server is serving."""
    ledger_path: Path = Path("chain-ledger.sqlite3")
    """The ledger's SQLite file (created with its genesis block on first start)."""
    authority_key_path: Path = Path("chain-authority.key")
    """The authority's ed25519 seed (hex), mode 0600; generated on first start when absent, never logged."""
    grace_seconds: float = Field(default=10.0, ge=0)
    """Seconds in-flight RPCs get to finish after SIGTERM."""
    max_batch: int = Field(default=256, ge=1, le=10_000)
    """Most requests one block holds (requests that queue during a commit share the next block)."""
    log_level: str = "INFO"
    """Python logging level name."""

    # -- who may record settlements ------------------------------------------------------------------
    settlement_signers: list[str] = Field(default_factory=list)
    """Hex ed25519 public keys allowed to sign SubmitSettlement; empty: unsigned settlements accepted."""

    # -- genesis (read only when the ledger is created) ----------------------------------------------
    genesis_balances: dict[str, Rao] = Field(default_factory=dict)
    """Free balance in rao per account (hex public key) in the genesis block."""
    owner_cut: U16 = DEFAULT_OWNER_CUT
    """Subnet owner cut, u16 of each uid's emission (11796 = 18%); fixed at genesis."""
    default_take: U16 = DEFAULT_TAKE
    """Delegate take of a hotkey that never set one, u16 (11796 = 18%); fixed at genesis."""
    max_take: U16 = DEFAULT_TAKE
    """Highest take SetDelegateTake accepts, u16 (11796 = 18%); fixed at genesis."""

    @field_validator("genesis_balances")
    @classmethod
    def _accounts_are_public_keys(cls, value: dict[str, int]) -> dict[str, int]:
        normalized: dict[str, int] = {}
        for account, rao in value.items():
            key = _public_key("genesis_balances key", account)
            normalized[key] = normalized.get(key, 0) + rao
        if sum(normalized.values()) > _I64_MAX:
            raise ValueError(f"genesis_balances add up to more than {_I64_MAX} rao")
        return normalized

    @field_validator("settlement_signers")
    @classmethod
    def _signers_are_public_keys(cls, value: list[str]) -> list[str]:
        return [_public_key("settlement_signers entry", key) for key in value]

    @model_validator(mode="after")
    def _take_bounds(self) -> ChainSettings:
        if self.default_take > self.max_take:
            raise ValueError(f"default_take ({self.default_take}) must not exceed max_take ({self.max_take})")
        return self

    def params(self) -> ChainParams:
        """The economic parameters a new ledger's genesis block fixes."""
        return ChainParams(owner_cut=self.owner_cut, default_take=self.default_take, max_take=self.max_take)
