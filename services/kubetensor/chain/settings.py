"""``ChainSettings``: every setting of the chain sidecar, from ``KT_CHAIN_*`` environment variables.

Loaded once by ``kubetensor.chain.__main__`` and passed down explicitly (``create_server`` reads
``listen``; ``params()`` gives the economic parameters a new ledger's genesis block fixes). Maps are
JSON, for example ``KT_CHAIN_GENESIS_BALANCES='{"<coldkey hex>": 1000000000000}'`` and
``KT_CHAIN_SETTLEMENT_SIGNERS='["<public key hex>"]'``. ``backend`` picks what happens to settlements
besides the ledger: ``ledger`` (nothing) or ``evm`` (each is also anchored on an EVM chain; the
``evm_*`` settings say where and how, see services/kubetensor/chain/evm/README.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetensor.chain.economics import DEFAULT_OWNER_CUT, DEFAULT_TAKE
from kubetensor.chain.state import ChainParams
from kubetensor.core.keys import parse_hotkey

_U16_MAX = 65_535
_I64_MAX = (1 << 63) - 1

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

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
    metrics_listen: str = ""
    """Prometheus ``/metrics`` listen address, host:port (port 0 picks a free one; the ready file says
    which as "metrics_port"); empty: no metrics endpoint. Tracing is set by the standard ``OTEL_*``
    variables (``kubetensor.core.telemetry``), not here."""

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

    # -- backend ----------------------------------------------------------------------------------------
    backend: Literal["ledger", "evm"] = "ledger"
    """ledger: settlements are recorded on the ledger only. evm: also anchored on an EVM chain (the ledger
    stays the source of truth for balances and stake)."""
    evm_rpc_url: str = ""
    """JSON-RPC HTTP(S) endpoint of the EVM node (required with backend=evm). Logs show its scheme, host and
    port only, since paths and queries often carry API keys."""
    evm_chain_id: int = Field(default=0, ge=0)
    """Chain id the anchor transactions are signed for (required with backend=evm); checked against the
    node's eth_chainId before anything is sent."""
    evm_contract_address: str = ""
    """Address (0x + 40 hex) of a deployed Settlements contract; its code must be this build's. Empty: the
    sidecar deploys one the first time it connects and keeps its address in evm_state_path."""
    evm_anchor_key_path: Path | None = None
    """File holding the anchor account's secp256k1 private key (64 hex characters), mode 0600; required
    with backend=evm, never generated, never logged. The account pays gas, so it must hold funds, and it
    must be the contract's owner or an anchorer the owner allowed."""
    evm_state_path: Path = Path("chain-anchors.sqlite3")
    """SQLite file recording which settlements are anchored (rebuilt from ledger and contract if lost)."""
    evm_retry_initial_seconds: float = Field(default=1.0, gt=0)
    """First wait, in seconds, after a failed anchoring attempt; doubled after each further failure."""
    evm_retry_max_seconds: float = Field(default=60.0, gt=0)
    """Longest wait between anchoring attempts, in seconds (attempts go on forever)."""
    evm_rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    """Seconds one JSON-RPC request may take."""
    evm_receipt_timeout_seconds: float = Field(default=120.0, gt=0)
    """Seconds to wait for an anchor transaction to be mined before the attempt counts as failed."""

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

    @field_validator("evm_rpc_url")
    @classmethod
    def _rpc_url_is_http(cls, value: str) -> str:
        if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname):
            raise ValueError("evm_rpc_url: expected an http:// or https:// URL")
        return value

    @field_validator("evm_contract_address")
    @classmethod
    def _contract_is_an_address(cls, value: str) -> str:
        if value and not _ADDRESS.fullmatch(value):
            raise ValueError(f"evm_contract_address: expected 0x and 40 hex characters, got {value[:80]!r}")
        return value

    @model_validator(mode="after")
    def _take_bounds(self) -> ChainSettings:
        if self.default_take > self.max_take:
            raise ValueError(f"default_take ({self.default_take}) must not exceed max_take ({self.max_take})")
        return self

    @model_validator(mode="after")
    def _evm_settings(self) -> ChainSettings:
        if self.backend == "evm":
            missing = [
                name
                for name, value in (
                    ("evm_rpc_url", self.evm_rpc_url),
                    ("evm_chain_id", self.evm_chain_id),
                    ("evm_anchor_key_path", self.evm_anchor_key_path),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"backend=evm needs {', '.join(missing)} (KT_CHAIN_{missing[0].upper()})")
        if self.evm_retry_initial_seconds > self.evm_retry_max_seconds:
            raise ValueError("evm_retry_initial_seconds must not exceed evm_retry_max_seconds")
        return self

    def params(self) -> ChainParams:
        """The economic parameters a new ledger's genesis block fixes."""
        return ChainParams(owner_cut=self.owner_cut, default_take=self.default_take, max_take=self.max_take)
