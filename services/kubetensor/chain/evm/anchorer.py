"""``EvmAnchorer``: anchors each recorded settlement in the Settlements contract, in the background.

Composed by ``kubetensor.chain.__main__`` when ``KT_CHAIN_BACKEND=evm``; started after the
``ChainService`` and stopped before it. The ledger stays the source of truth: ``SubmitSettlement``
answers once the ledger block is durable, exactly as with the ``ledger`` backend, and never waits for
(or fails because of) the EVM chain. Two tasks do the rest:

- **follow**: reads the ledger's committed blocks from ``scanned_height + 1`` on (``ChainService.blocks``,
  the stream ``StreamBlocks`` serves) and adds a pending row per settlement to the ``AnchorStore``,
  with its anchor (settlement hash, Merkle root of the per-hotkey credits, leaf count), computed from
  the block's recorded credits. A settlement is thus queued within moments of its commit, and after a
  crash or restart the follower resumes from the store, so no recorded settlement is ever skipped.
- **work**: connects (checks the chain id; attaches to the configured contract after checking its
  code, or to the one it deployed earlier, or deploys one and records its address), then anchors the
  pending rows in ledger order. A failure (node down, transaction not mined in time, reverted,
  the key not allowed to anchor) is counted on the row (``attempts``, ``last_error``) and retried with
  exponential backoff from ``retry_initial`` to ``retry_max`` seconds, forever; the row stays pending,
  so nothing is lost. A different anchor already in the contract for the same (netuid, epoch) marks
  the row ``conflict`` (logged as an error, not retried: only a person can settle which is right).

Retrying is safe because anchoring is idempotent: ``SettlementsContract.anchor`` reads the contract
first, and the contract itself treats the same anchor again as a no-op, so a transaction that was
mined after its receipt wait timed out does no harm when the retry finds it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from eth_account.signers.local import LocalAccount

from kubetensor.chain.block import SealedBlock
from kubetensor.chain.errors import AnchorConflictError, EvmError
from kubetensor.chain.evm import contract as evm
from kubetensor.chain.evm.store import AnchorRecord, AnchorState, AnchorStore
from kubetensor.chain.service import ChainService

_log = logging.getLogger(__name__)


def records_of(sealed: SealedBlock) -> list[AnchorRecord]:
    """A pending row for each settlement of ``sealed``, with its anchor computed from its credits."""
    records = []
    for position, item in enumerate(sealed.block.settlements):
        anchor = evm.SettlementAnchor.of(item.settlement, item.credits)
        records.append(
            AnchorRecord(
                netuid=anchor.netuid,
                epoch=anchor.epoch,
                ledger_block=sealed.block.height,
                position=position,
                settlement_hash=anchor.settlement_hash,
                credits_root=anchor.credits_root.hex(),
                leaf_count=anchor.leaf_count,
                state=AnchorState.PENDING,
            )
        )
    return records


class EvmAnchorer:
    """Follows ``service``'s ledger and anchors its settlements; ``start()``, then ``stop()``."""

    def __init__(
        self,
        *,
        service: ChainService,
        store: AnchorStore,
        rpc_url: str,
        chain_id: int,
        account: LocalAccount,
        contract_address: str | None = None,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        rpc_timeout: float = 10.0,
        receipt_timeout: float = 120.0,
    ) -> None:
        self._service = service
        self._store = store
        self._rpc_url = rpc_url
        self._chain_id = chain_id
        self._account = account
        self._configured_address = contract_address
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._receipt_timeout = receipt_timeout
        self._w3 = evm.connect(rpc_url, timeout=rpc_timeout)
        self._contract: evm.SettlementsContract | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def contract(self) -> evm.SettlementsContract | None:
        """The contract anchors go to, once the worker has connected."""
        return self._contract

    @property
    def store(self) -> AnchorStore:
        return self._store

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start following the ledger and anchoring (the ChainService must be started)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._follow(), name="evm-follow"),
                asyncio.create_task(self._work(), name="evm-anchor"),
            ]
            _log.info(
                "anchoring settlements on chain %d via %s as %s",
                self._chain_id,
                evm.redact_url(self._rpc_url),
                self._account.address,
            )

    async def stop(self) -> None:
        """Stop both tasks (a transaction in flight is abandoned; the retry after a restart finds it)."""
        for task in self._tasks:
            task.cancel()
        # A task that already died has logged why; stopping does not raise it again.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await evm.close(self._w3)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; it is checked after every change of the store (tests, tools)."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- follow -------------------------------------------------------------------------------------------
    async def _follow(self) -> None:
        try:
            async for sealed in self._service.blocks(self._store.scanned_height() + 1):
                self._store.record_block(sealed.block.height, records_of(sealed))
                if sealed.block.settlements:
                    self._wake.set()
                    await self._notify()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug or a broken ledger: loud, since nothing new gets anchored after it
            _log.exception("the evm anchorer stopped following the ledger")
            raise

    # -- work ---------------------------------------------------------------------------------------------
    async def _work(self) -> None:
        delay = self._retry_initial
        while True:
            self._wake.clear()
            try:
                progressed = await self._step()
            except EvmError as error:
                await self._failed(str(error), delay=delay)
                delay = min(delay * 2, self._retry_max)
                continue
            except Exception as error:  # a bug, or a failure web3 raised unwrapped: keep retrying, loudly
                _log.exception("unexpected error while anchoring")
                await self._failed(f"{type(error).__name__}: {error}", delay=delay)
                delay = min(delay * 2, self._retry_max)
                continue
            if progressed:
                delay = self._retry_initial
            else:
                await self._wake.wait()

    async def _step(self) -> bool:
        """Anchor the pending rows in order; False when there were none."""
        pending = self._store.pending()
        if not pending:
            return False
        contract = await self._connect()
        for record in pending:
            await self._anchor(contract, record)
        return True

    async def _connect(self) -> evm.SettlementsContract:
        if self._contract is not None:
            return self._contract
        address = self._configured_address or self._store.contract(self._chain_id)
        if address:
            contract = await evm.SettlementsContract.attach(
                self._w3,
                address=address,
                chain_id=self._chain_id,
                account=self._account,
                receipt_timeout=self._receipt_timeout,
            )
        else:
            contract = await evm.SettlementsContract.deploy(
                self._w3,
                chain_id=self._chain_id,
                account=self._account,
                receipt_timeout=self._receipt_timeout,
            )
        if self._store.bind_contract(chain_id=self._chain_id, address=contract.address):
            _log.info("anchors go to %s on chain %d", contract.address, self._chain_id)
        self._contract = contract
        return contract

    async def _anchor(self, contract: evm.SettlementsContract, record: AnchorRecord) -> None:
        anchor = evm.SettlementAnchor(
            netuid=record.netuid,
            epoch=record.epoch,
            settlement_hash=record.settlement_hash,
            credits_root=bytes.fromhex(record.credits_root),
            leaf_count=record.leaf_count,
        )
        try:
            receipt = await contract.anchor(anchor)
        except AnchorConflictError as error:
            _log.error("not anchored: %s", error)
            self._store.mark_conflict(netuid=record.netuid, epoch=record.epoch, error=str(error))
            await self._notify()
            return
        self._store.mark_anchored(
            netuid=record.netuid,
            epoch=record.epoch,
            transaction_hash=receipt.transaction_hash,
            evm_block=receipt.block_number,
        )
        _log.info(
            "anchored netuid %d epoch %d (settlement %s, root %s) %s at EVM block %d",
            record.netuid,
            record.epoch,
            record.settlement_hash[:16],
            record.credits_root[:16],
            f"in transaction {receipt.transaction_hash}" if receipt.recorded else "(already there)",
            receipt.block_number,
        )
        await self._notify()

    async def _failed(self, error: str, *, delay: float) -> None:
        """Count the failure on the oldest pending row (what it held up) and wait ``delay`` seconds."""
        head = self._store.pending(limit=1)
        if head:
            self._store.mark_failed_attempt(netuid=head[0].netuid, epoch=head[0].epoch, error=error)
            await self._notify()
        _log.warning("anchoring failed (%s); retrying in %.1fs", error, delay)
        await asyncio.sleep(delay)
