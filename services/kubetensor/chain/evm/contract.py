"""``SettlementsContract``: the deployed ``Settlements.sol`` over JSON-RPC with web3.py (asyncio).

Called by ``anchorer`` (deploy or attach at start, then anchor each settlement) and by tests and tools
that read anchors back or check a credit proof against the on-chain root. Transactions are built here,
signed locally by the anchor account (a secp256k1 key read from a 0600 file, ``load_anchor_account``)
and sent raw, so any node works, with no unlocked accounts; the key is never logged or sent anywhere.

Every RPC or transaction failure becomes ``EvmUnavailableError`` (worth retrying); a different anchor
already recorded for (netuid, epoch) is ``AnchorConflictError``; a node on another chain or a contract
address holding other code is ``EvmSetupError``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception

from kubetensor.chain import keyfile
from kubetensor.chain.economics import Credit
from kubetensor.chain.errors import (
    AnchorConflictError,
    EvmSetupError,
    EvmUnavailableError,
    KeyFileError,
)
from kubetensor.chain.evm import artifact
from kubetensor.chain.evm.merkle import CreditProof, CreditTree
from kubetensor.core.settlement import Settlement

_log = logging.getLogger(__name__)

# What a failing call can raise below web3's own exceptions: the HTTP client and the socket.
_TRANSPORT_ERRORS = (Web3Exception, aiohttp.ClientError, OSError, TimeoutError)


def load_anchor_account(path: Path) -> LocalAccount:
    """The account whose private key (64 hex characters, ``0x`` allowed) is in the 0600 file ``path``."""
    text = keyfile.read_text(path).removeprefix("0x")
    try:
        key = bytes.fromhex(text)
        if len(key) != 32:
            raise ValueError("not 32 bytes")
        account: LocalAccount = Account.from_key(key)
    except ValueError:
        raise KeyFileError(f"{path}: not an anchor key file (expected a 64-hex-digit private key)") from None
    return account


def connect(rpc_url: str, *, timeout: float = 10.0) -> AsyncWeb3[AsyncHTTPProvider]:
    """An AsyncWeb3 on the JSON-RPC HTTP endpoint ``rpc_url`` (``close`` it when done).

    web3's own retries are off: the anchorer retries with its own backoff and records each attempt.
    """
    provider = AsyncHTTPProvider(
        rpc_url,
        request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
        exception_retry_configuration=None,
    )
    return AsyncWeb3(provider)


async def close(w3: AsyncWeb3[AsyncHTTPProvider]) -> None:
    """Close the HTTP sessions of ``w3``."""
    await w3.provider.disconnect()


def redact_url(url: str) -> str:
    """``scheme://host:port`` of ``url``: what logs show (paths and queries often hold API keys)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _describe(error: BaseException) -> str:
    """``error`` for a log line: an HTTP error names its status only (its URL may hold an API key)."""
    if isinstance(error, aiohttp.ClientResponseError):
        return f"HTTP {error.status} {error.message}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _hex32(value: bytes) -> str:
    return bytes(value).hex()


@dataclass(frozen=True)
class SettlementAnchor:
    """What the contract records for one settlement."""

    netuid: int
    epoch: int
    settlement_hash: str
    """Hex sha256 of the settlement's canonical encoding (the ledger's settlement hash)."""
    credits_root: bytes
    """The 32-byte Merkle root of the per-hotkey credits (``merkle``)."""
    leaf_count: int

    @classmethod
    def of(cls, settlement: Settlement, credits: Sequence[Credit] | None = None) -> SettlementAnchor:
        """The anchor of ``settlement`` (``credits``, if given, are checked against its entries)."""
        tree = CreditTree.of(settlement, credits)
        return cls(
            netuid=settlement.netuid,
            epoch=settlement.epoch,
            settlement_hash=settlement.hash,
            credits_root=tree.root,
            leaf_count=tree.leaf_count,
        )


@dataclass(frozen=True)
class OnChainAnchor:
    """An anchor as the contract holds it."""

    anchor: SettlementAnchor
    anchored_at: int
    """The EVM block that recorded it."""
    anchorer: str
    """The checksummed address that sent it."""


@dataclass(frozen=True)
class AnchorReceipt:
    """The outcome of ``SettlementsContract.anchor``."""

    recorded: bool
    """False when the same anchor was already there (nothing sent, or a retried transaction was a no-op)."""
    transaction_hash: str | None
    """0x-hex hash of the transaction sent, None when nothing was sent."""
    block_number: int
    """The EVM block holding the anchor."""


def _selectors(abi: Sequence[dict[str, Any]]) -> dict[bytes, str]:
    """4-byte selector -> name of each custom error in ``abi`` (to name a revert in a message)."""
    names: dict[bytes, str] = {}
    for item in abi:
        if item.get("type") == "error":
            signature = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            names[keccak(text=signature)[:4]] = item["name"]
    return names


def _revert_reason(error: ContractLogicError, selectors: dict[bytes, str]) -> str:
    data = error.data
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        name = selectors.get(bytes.fromhex(data[2:10]))
        if name is not None:
            return f"reverted with {name} ({data[:138]})"
    return f"reverted: {error.message or data!r}"


class SettlementsContract:
    """A Settlements contract at ``address`` on the chain ``w3`` reaches; ``account`` signs anchors."""

    def __init__(
        self,
        w3: AsyncWeb3[AsyncHTTPProvider],
        *,
        address: str,
        chain_id: int,
        account: LocalAccount | None = None,
        receipt_timeout: float = 120.0,
    ) -> None:
        self._w3 = w3
        self._chain_id = chain_id
        self._account = account
        self._receipt_timeout = receipt_timeout
        self._artifact = artifact.load()
        self._selectors = _selectors(self._artifact.abi)
        self.address: ChecksumAddress = to_checksum_address(address)
        self._contract: AsyncContract = w3.eth.contract(address=self.address, abi=self._artifact.abi)

    # -- set-up -------------------------------------------------------------------------------------------
    @classmethod
    async def deploy(
        cls,
        w3: AsyncWeb3[AsyncHTTPProvider],
        *,
        chain_id: int,
        account: LocalAccount,
        receipt_timeout: float = 120.0,
    ) -> SettlementsContract:
        """Deploy the committed bytecode from ``account`` (which becomes the contract's owner)."""
        await check_chain_id(w3, chain_id)
        built = artifact.load()
        factory = w3.eth.contract(abi=built.abi, bytecode=built.bytecode)
        try:
            transaction = await factory.constructor().build_transaction(
                {"from": account.address, "chainId": chain_id}
            )
        except _TRANSPORT_ERRORS as error:
            raise EvmUnavailableError(f"cannot prepare the deployment: {_describe(error)}") from error
        receipt = await _send(w3, account, transaction, chain_id=chain_id, receipt_timeout=receipt_timeout)
        address = receipt.get("contractAddress")
        if not address:
            raise EvmUnavailableError("the deployment receipt names no contract address")
        _log.info(
            "deployed Settlements (%s) at %s on chain %d, block %d",
            built.compiler,
            address,
            chain_id,
            receipt["blockNumber"],
        )
        return cls(w3, address=address, chain_id=chain_id, account=account, receipt_timeout=receipt_timeout)

    @classmethod
    async def attach(
        cls,
        w3: AsyncWeb3[AsyncHTTPProvider],
        *,
        address: str,
        chain_id: int,
        account: LocalAccount | None = None,
        receipt_timeout: float = 120.0,
    ) -> SettlementsContract:
        """The contract at ``address``, after checking the chain id and that its code is this build's."""
        await check_chain_id(w3, chain_id)
        checksummed = to_checksum_address(address)
        try:
            code = bytes(await w3.eth.get_code(checksummed))
        except _TRANSPORT_ERRORS as error:
            raise EvmUnavailableError(f"cannot read the code at {checksummed}: {_describe(error)}") from error
        expected = artifact.load().deployed_bytecode
        if code != expected:
            what = "no code" if not code else f"{len(code)} bytes of other code"
            raise EvmSetupError(
                f"{checksummed} on chain {chain_id} holds {what}, not the Settlements contract "
                f"this sidecar was built with ({len(expected)} bytes)"
            )
        return cls(
            w3, address=checksummed, chain_id=chain_id, account=account, receipt_timeout=receipt_timeout
        )

    # -- reads --------------------------------------------------------------------------------------------
    async def get_anchor(self, netuid: int, epoch: int) -> OnChainAnchor | None:
        """The anchor recorded for (netuid, epoch), None if there is none."""
        try:
            raw = await self._contract.functions.getAnchor(netuid, epoch).call()
        except _TRANSPORT_ERRORS as error:
            raise EvmUnavailableError(f"getAnchor({netuid}, {epoch}) failed: {_describe(error)}") from error
        settlement_hash, root, leaf_count, anchored_at, anchorer = raw
        if bytes(settlement_hash) == bytes(32):
            return None
        return OnChainAnchor(
            anchor=SettlementAnchor(
                netuid=netuid,
                epoch=epoch,
                settlement_hash=_hex32(settlement_hash),
                credits_root=bytes(root),
                leaf_count=int(leaf_count),
            ),
            anchored_at=int(anchored_at),
            anchorer=str(anchorer),
        )

    async def verify(self, *, netuid: int, epoch: int, leaf: bytes, proof: Sequence[bytes]) -> bool:
        """The contract's ``verify``: is ``leaf`` under the root anchored for (netuid, epoch)?"""
        try:
            ok = await self._contract.functions.verify(netuid, epoch, leaf, list(proof)).call()
        except _TRANSPORT_ERRORS as error:
            raise EvmUnavailableError(f"verify({netuid}, {epoch}) failed: {_describe(error)}") from error
        return bool(ok)

    async def verify_credit(self, proof: CreditProof) -> bool:
        """The contract's ``verifyCredit``: the leaf is computed on-chain from the credit's fields."""
        credit = proof.credit
        try:
            ok = await self._contract.functions.verifyCredit(
                credit.netuid,
                credit.epoch,
                credit.uid,
                bytes.fromhex(credit.hotkey),
                credit.amount_rao,
                list(proof.proof),
            ).call()
        except _TRANSPORT_ERRORS as error:
            raise EvmUnavailableError(
                f"verifyCredit({credit.netuid}, {credit.epoch}) failed: {_describe(error)}"
            ) from error
        return bool(ok)

    async def credit_leaf(self, *, netuid: int, epoch: int, uid: int, hotkey: str, amount_rao: int) -> bytes:
        """The contract's ``creditLeaf`` (the leaf hash as Solidity computes it)."""
        try:
            leaf = await self._contract.functions.creditLeaf(
                netuid, epoch, uid, bytes.fromhex(hotkey), amount_rao
            ).call()
        except _TRANSPORT_ERRORS as error:
            raise EvmUnavailableError(f"creditLeaf failed: {_describe(error)}") from error
        return bytes(leaf)

    # -- writes -------------------------------------------------------------------------------------------
    async def anchor(self, anchor: SettlementAnchor) -> AnchorReceipt:
        """Record ``anchor`` (idempotent: an identical anchor already there sends nothing).

        AnchorConflictError if a different anchor is recorded for its (netuid, epoch);
        EvmUnavailableError if the transaction could not be sent, was not mined within the receipt
        timeout, or reverted (for example: the account may not anchor).
        """
        if self._account is None:
            raise EvmSetupError("this SettlementsContract has no anchor account")
        existing = await self.get_anchor(anchor.netuid, anchor.epoch)
        if existing is not None:
            if existing.anchor == anchor:
                return AnchorReceipt(recorded=False, transaction_hash=None, block_number=existing.anchored_at)
            raise AnchorConflictError(
                netuid=anchor.netuid,
                epoch=anchor.epoch,
                recorded_hash=existing.anchor.settlement_hash,
                offered_hash=anchor.settlement_hash,
            )
        receipt = await self._transact(
            self._contract.functions.anchor(
                anchor.netuid,
                anchor.epoch,
                bytes.fromhex(anchor.settlement_hash),
                anchor.credits_root,
                anchor.leaf_count,
            ),
            what=f"anchor({anchor.netuid}, {anchor.epoch})",
        )
        recorded = any(log["address"] == self.address for log in receipt["logs"])
        return AnchorReceipt(
            recorded=recorded,
            transaction_hash=HexBytes(receipt["transactionHash"]).to_0x_hex(),
            block_number=int(receipt["blockNumber"]),
        )

    async def set_anchorer(self, address: str, *, allowed: bool) -> None:
        """Allow (or stop allowing) ``address`` to anchor; the account must be the contract's owner."""
        await self._transact(
            self._contract.functions.setAnchorer(to_checksum_address(address), allowed),
            what=f"setAnchorer({address}, {allowed})",
        )

    async def _transact(self, call: Any, *, what: str) -> Any:
        """Build ``call`` as a transaction from the account (estimating gas: a revert shows here), send it."""
        if self._account is None:
            raise EvmSetupError("this SettlementsContract has no account to send transactions")
        try:
            transaction = await call.build_transaction(
                {"from": self._account.address, "chainId": self._chain_id}
            )
        except ContractLogicError as error:
            raise EvmUnavailableError(f"{what} {_revert_reason(error, self._selectors)}") from error
        except _TRANSPORT_ERRORS as error:
            raise EvmUnavailableError(f"cannot prepare {what}: {_describe(error)}") from error
        return await _send(
            self._w3,
            self._account,
            transaction,
            chain_id=self._chain_id,
            receipt_timeout=self._receipt_timeout,
        )


async def check_chain_id(w3: AsyncWeb3[AsyncHTTPProvider], expected: int) -> None:
    """EvmSetupError unless the node's chain id is ``expected`` (transactions are signed for it)."""
    try:
        got = await w3.eth.chain_id
    except _TRANSPORT_ERRORS as error:
        raise EvmUnavailableError(f"eth_chainId failed: {_describe(error)}") from error
    if got != expected:
        raise EvmSetupError(f"the node is on chain id {got}, the sidecar is configured for {expected}")


async def _send(
    w3: AsyncWeb3[AsyncHTTPProvider],
    account: LocalAccount,
    transaction: Any,
    *,
    chain_id: int,
    receipt_timeout: float,
) -> Any:
    """Sign ``transaction`` with ``account``, send it raw, and return its receipt once mined (status 1)."""
    try:
        transaction["nonce"] = await w3.eth.get_transaction_count(account.address, "pending")
        transaction["chainId"] = chain_id
        signed = account.sign_transaction(transaction)
        sent = HexBytes(await w3.eth.send_raw_transaction(signed.raw_transaction))
        tx = sent.to_0x_hex()
    except _TRANSPORT_ERRORS as error:
        raise EvmUnavailableError(f"cannot send the transaction: {_describe(error)}") from error
    try:
        receipt = await w3.eth.wait_for_transaction_receipt(sent, timeout=receipt_timeout)
    except TimeExhausted:
        raise EvmUnavailableError(f"transaction {tx} was not mined within {receipt_timeout:.0f}s") from None
    except _TRANSPORT_ERRORS as error:
        raise EvmUnavailableError(f"waiting for transaction {tx}: {_describe(error)}") from error
    if receipt["status"] != 1:
        raise EvmUnavailableError(f"transaction {tx} reverted in block {receipt['blockNumber']}")
    return receipt
