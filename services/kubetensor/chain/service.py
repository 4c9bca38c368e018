"""``ChainService``: the chain sidecar's domain service (settlements, transactions, blocks, queries).

Called by ``ChainServicer`` (the gRPC edge, which turns requests into ``transactions`` and
``settlement`` values and verifies nothing itself) and composed by ``__main__`` (``ChainService.open``).
It is the ledger's only writer.

Writes are group-committed: each accepted request waits in a queue; one writer task takes what has
queued (up to ``max_batch``), applies each request to a copy-on-write layer of the state
(``state.apply_transaction``, then ``apply_settlement``: transactions before settlements, the order a
block is replayed in; a refused request is answered at once and leaves no trace), seals one block
with everything accepted, commits it with ``Ledger.append`` (fsync) in a worker thread, and only then
merges the layer into the state and answers the waiting callers. So an
acknowledged write is durable, a reader never sees state that is not committed, and a failed commit
answers UNAVAILABLE and changes nothing. Requests arriving during a commit form the next block.

Signatures are verified before a request is queued (forged requests never reach the writer); the
block keeps each request's signed bytes so ``verify`` can check them again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubetensor.chain.block import Block, BlockSettlement, Genesis, SealedBlock, Submitter
from kubetensor.chain.economics import Credit
from kubetensor.chain.errors import (
    BadSignatureError,
    BlockNotFoundError,
    ChainError,
    LedgerStateError,
    LedgerUnavailableError,
    SettlementConflictError,
    SettlementNotFoundError,
    SignatureRequiredError,
    SubmitterNotAllowedError,
)
from kubetensor.chain.ledger import Head, Ledger
from kubetensor.chain.metrics import ChainMetrics
from kubetensor.chain.state import (
    ChainParams,
    ChainState,
    apply_genesis,
    apply_settlement,
    apply_transaction,
    snapshot,
)
from kubetensor.chain.transactions import SUBMIT_SETTLEMENT, SignedTransaction, public_key_hex
from kubetensor.core import keys, telemetry
from kubetensor.core.settlement import Settlement

_log = logging.getLogger(__name__)

MAX_PAGE = 1_000
"""Most settlements one ListSettlements page holds."""


@dataclass(frozen=True)
class Receipt:
    """The ledger's acknowledgement of a settlement."""

    block: int
    settlement_hash: str


@dataclass(frozen=True)
class TransactionReceipt:
    """The ledger's acknowledgement of a transaction."""

    block: int
    transaction_hash: str


@dataclass(frozen=True)
class SettlementSubmission:
    """A settlement to record, with its submitter's signature if the request carried one."""

    settlement: Settlement
    submitter: Submitter | None = None


@dataclass(frozen=True)
class RecordedSettlement:
    """A recorded settlement, its receipt and the credits it made."""

    settlement: Settlement
    receipt: Receipt
    credits: tuple[Credit, ...]


@dataclass(frozen=True)
class Balance:
    account: str
    free_rao: int
    staked_rao: int
    nonce: int
    """The last accepted nonce (0: none yet)."""


@dataclass(frozen=True)
class StakePosition:
    hotkey: str
    coldkey: str
    stake_rao: int


@dataclass(frozen=True)
class HotkeyStake:
    hotkey: str
    owner: str | None
    take: int
    total_rao: int
    positions: tuple[StakePosition, ...]


@dataclass(frozen=True)
class ChainInfo:
    height: int
    head_hash: str
    genesis_hash: str
    authority: str
    issuance_rao: int


@dataclass
class _Write:
    request: SignedTransaction | SettlementSubmission
    future: asyncio.Future[TransactionReceipt | Receipt]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _resolve(
    future: asyncio.Future[TransactionReceipt | Receipt], result: TransactionReceipt | Receipt
) -> None:
    if not future.done():
        future.set_result(result)


def _refuse(future: asyncio.Future[TransactionReceipt | Receipt], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class ChainService:
    """The ledger's writer and reader. ``start()`` before writing; ``stop()`` drains and stops."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        authority: keys.Keypair,
        state: ChainState,
        settlement_signers: Collection[str] = (),
        max_batch: int = 256,
        clock_ms: Callable[[], int] = _now_ms,
        metrics: ChainMetrics | None = None,
    ) -> None:
        head = ledger.head()
        genesis = ledger.block(0)
        if head is None or genesis is None:
            raise LedgerStateError(f"{ledger.path}: no genesis block (use ChainService.open)")
        self._ledger = ledger
        self._authority = authority
        self._state = state
        self._signers = frozenset(settlement_signers)
        self._max_batch = max_batch
        self._clock_ms = clock_ms
        self._head = head
        head_block = ledger.block(head.height)
        assert head_block is not None
        self._head_timestamp_ms = head_block.block.timestamp_ms
        self._genesis_hash = genesis.hash
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._committed: asyncio.Condition | None = None
        self.metrics = metrics if metrics is not None else ChainMetrics()
        self.metrics.watch(height=lambda: self._head.height)

    @classmethod
    def open(
        cls,
        *,
        ledger_path: Path,
        authority: keys.Keypair,
        genesis_balances: Mapping[str, int] | None = None,
        params: ChainParams | None = None,
        settlement_signers: Collection[str] = (),
        max_batch: int = 256,
    ) -> ChainService:
        """Open the ledger at ``ledger_path``, writing its genesis block first if it is new.

        ``genesis_balances`` and ``params`` are used only for a new ledger; an existing one keeps what
        its genesis block says. A ledger signed by another authority is refused (LedgerStateError).
        """
        ledger = Ledger.open(ledger_path)
        try:
            if ledger.head() is None:
                _write_genesis(
                    ledger,
                    authority=authority,
                    balances=genesis_balances or {},
                    params=params or ChainParams(),
                )
            genesis_sealed = ledger.block(0)
            if genesis_sealed is None:
                raise LedgerStateError(f"{ledger_path}: blocks exist but block 0 is missing")
            genesis_block = genesis_sealed.block
            if genesis_block.authority != authority.hotkey:
                raise LedgerStateError(
                    f"{ledger_path}: the ledger's authority is {genesis_block.authority[:16]}..., "
                    f"the key file holds {authority.hotkey[:16]}... (wrong key file for this ledger)"
                )
            assert genesis_block.genesis is not None
            stored_params = genesis_block.genesis.params
            if params is not None and params != stored_params:
                _log.warning(
                    "the ledger's genesis parameters %s apply, not the configured %s", stored_params, params
                )
            state = ledger.load_state(stored_params)
            return cls(
                ledger=ledger,
                authority=authority,
                state=state,
                settlement_signers=settlement_signers,
                max_batch=max_batch,
            )
        except BaseException:
            ledger.close()
            raise

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the writer task."""
        if self._writer is None:
            self._committed = asyncio.Condition()
            self._writer = asyncio.create_task(self._write_loop(), name="chain-writer")

    async def stop(self) -> None:
        """Write what is queued, stop the writer and close the ledger."""
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
            self._writer = None
        self._ledger.close()

    # -- writes -----------------------------------------------------------------------------------------
    async def submit_transaction(self, signed: SignedTransaction) -> TransactionReceipt:
        """Record ``signed`` in a block; returns once the block is durable (see ``state`` for the rules)."""
        signed.check_signatures()
        result = await self._enqueue(signed)
        assert isinstance(result, TransactionReceipt)
        return result

    async def submit_settlement(self, submission: SettlementSubmission) -> Receipt:
        """Record a settlement (idempotent by (netuid, epoch)); returns once durable.

        The same settlement again returns its original receipt at once; a different one for a recorded
        (netuid, epoch) raises SettlementConflictError.
        """
        settlement = submission.settlement
        attributes: telemetry.Attributes = {
            telemetry.NETUID: settlement.netuid,
            telemetry.EPOCH: settlement.epoch,
            "kubetensor.settlement.hash": settlement.hash,
        }
        with telemetry.span("chain.settlement.write", attributes=attributes) as span:
            receipt, new = await self._submit_settlement(submission)
            if span is not None:
                span.set_attribute(telemetry.BLOCK, receipt.block)
                span.set_attribute("kubetensor.settlement.new", new)
        if new:
            self.metrics.settled(netuid=settlement.netuid, epoch=settlement.epoch, block=receipt.block)
        return receipt

    async def _submit_settlement(self, submission: SettlementSubmission) -> tuple[Receipt, bool]:
        """The receipt, and whether this call recorded the settlement (False: it was recorded before)."""
        settlement = submission.settlement
        self._check_submitter(submission)
        recorded = self._state.settlements.get(settlement.key)
        if recorded is not None:
            if recorded.hash != settlement.hash:
                raise SettlementConflictError(
                    netuid=settlement.netuid,
                    epoch=settlement.epoch,
                    recorded_hash=recorded.hash,
                    offered_hash=settlement.hash,
                )
            return Receipt(block=recorded.block, settlement_hash=recorded.hash), False
        result = await self._enqueue(submission)
        assert isinstance(result, Receipt)
        return result, True

    def _check_submitter(self, submission: SettlementSubmission) -> None:
        submitter = submission.submitter
        if submitter is None:
            if self._signers:
                raise SignatureRequiredError(
                    "signature: this sidecar records only settlements signed by a configured signer"
                )
            return
        key = submitter.public_key.hex()
        if not keys.verify(submitter.public_key, SUBMIT_SETTLEMENT, submitter.payload, submitter.signature):
            raise BadSignatureError(field="signature", key=key, domain=SUBMIT_SETTLEMENT)
        if self._signers and key not in self._signers:
            raise SubmitterNotAllowedError(f"signature: {key[:16]}... is not a configured settlement signer")

    async def _enqueue(
        self, request: SignedTransaction | SettlementSubmission
    ) -> TransactionReceipt | Receipt:
        if self._writer is None:
            raise LedgerUnavailableError("the chain service is not started")
        future: asyncio.Future[TransactionReceipt | Receipt] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Write(request, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                await self._write_batch(batch)
            except Exception as error:  # a bug: answer everyone rather than hang them
                _log.exception("the chain writer failed")
                for write in batch:
                    _refuse(write.future, error)
            if stopping:
                return

    async def _write_batch(self, batch: Sequence[_Write]) -> None:
        layer = self._state.child()
        height = self._head.height + 1
        transactions: list[SignedTransaction] = []
        settlements: list[BlockSettlement] = []
        answers: list[tuple[_Write, TransactionReceipt | Receipt]] = []
        # A block replays its transactions first, then its settlements (``verify`` does the same), so
        # they are applied in that order here: a settlement's credits see every transaction before it.
        ordered = sorted(batch, key=lambda write: not isinstance(write.request, SignedTransaction))
        for write in ordered:
            if write.future.done():  # the caller went away before its turn
                continue
            request = write.request
            try:
                if isinstance(request, SignedTransaction):
                    apply_transaction(layer, request, check_signatures=False)
                    transactions.append(request)
                    answers.append((write, TransactionReceipt(block=height, transaction_hash=request.hash)))
                else:
                    outcome = apply_settlement(
                        layer, request.settlement, block=height, position=len(settlements)
                    )
                    if outcome.credits is not None:
                        settlements.append(
                            BlockSettlement(
                                settlement=request.settlement,
                                credits=outcome.credits,
                                submitter=request.submitter,
                            )
                        )
                    answers.append(
                        (write, Receipt(block=outcome.ref.block, settlement_hash=outcome.ref.hash))
                    )
            except ChainError as error:
                _refuse(write.future, error)
        if not transactions and not settlements:
            for write, answer in answers:
                _resolve(write.future, answer)
            return
        timestamp = max(self._clock_ms(), self._head_timestamp_ms)
        block = Block(
            height=height,
            parent_hash=self._head.hash,
            timestamp_ms=timestamp,
            authority=self._authority.hotkey,
            transactions=tuple(transactions),
            settlements=tuple(settlements),
        )
        sealed = SealedBlock.seal(block, self._authority)
        try:
            await asyncio.to_thread(
                self._ledger.append,
                height=height,
                sealed=sealed,
                layer=layer,
                transactions=[tx.hash for tx in transactions],
                settlements=[item.settlement.key for item in settlements],
            )
        except Exception as error:
            _log.error("block %d could not be committed: %s", height, error)
            for write, _ in answers:
                _refuse(
                    write.future,
                    LedgerUnavailableError(f"the ledger could not commit block {height}: {error}"),
                )
            return
        self._state.merge(layer)
        self._head = Head(height=height, hash=sealed.hash)
        self._head_timestamp_ms = timestamp
        for write, answer in answers:
            _resolve(write.future, answer)
        assert self._committed is not None
        async with self._committed:
            self._committed.notify_all()

    # -- reads ------------------------------------------------------------------------------------------
    def info(self) -> ChainInfo:
        return ChainInfo(
            height=self._head.height,
            head_hash=self._head.hash,
            genesis_hash=self._genesis_hash,
            authority=self._authority.hotkey,
            issuance_rao=self._state.issuance,
        )

    def snapshot(self) -> dict[str, object]:
        """A comparable picture of the committed state (``state.snapshot``), for audits and tests."""
        return {"head": self._head, **snapshot(self._state)}

    def block(self, height: int) -> SealedBlock:
        """The committed block at ``height`` (BlockNotFoundError beyond the head)."""
        sealed = self._ledger.block(height) if height <= self._head.height else None
        if sealed is None:
            raise BlockNotFoundError(height=height, head=self._head.height)
        return sealed

    async def blocks(self, start_height: int) -> AsyncIterator[SealedBlock]:
        """Committed blocks from ``start_height`` on, then each new one as it is committed (endless)."""
        if self._committed is None:
            raise LedgerUnavailableError("the chain service is not started")
        condition = self._committed
        height = start_height

        def arrived() -> bool:
            return self._head.height >= height

        while True:
            while height <= self._head.height:
                yield self.block(height)
                height += 1
            async with condition:
                await condition.wait_for(arrived)

    def settlement(self, netuid: int, epoch: int) -> RecordedSettlement:
        ref = self._state.settlements.get((netuid, epoch))
        if ref is None:
            raise SettlementNotFoundError(netuid=netuid, epoch=epoch)
        return self._recorded(ref.block, ref.position)

    def settlements(self, netuid: int, *, start_epoch: int, limit: int) -> list[RecordedSettlement]:
        """The subnet's recorded settlements from ``start_epoch`` on, in epoch order (at most ``limit``)."""
        limit = max(0, min(limit, MAX_PAGE + 1))
        return [
            self._recorded(ref.block, ref.position)
            for _, ref in self._ledger.settlement_refs(netuid, start_epoch=start_epoch, limit=limit)
            if ref.block <= self._head.height
        ]

    def _recorded(self, height: int, position: int) -> RecordedSettlement:
        item = self.block(height).block.settlements[position]
        return RecordedSettlement(
            settlement=item.settlement,
            receipt=Receipt(block=height, settlement_hash=item.settlement.hash),
            credits=item.credits,
        )

    def balance(self, account: str) -> Balance:
        account = public_key_hex("account", account)
        staked = sum(rao for _, rao in self._state.coldkey_positions(account))
        return Balance(
            account=account,
            free_rao=self._state.free_of(account),
            staked_rao=staked,
            nonce=self._state.nonce.get(account, 0),
        )

    def hotkey_stakes(self, hotkeys: Sequence[str]) -> list[HotkeyStake]:
        """Stake per hotkey, in the order asked (an unknown hotkey has none)."""
        answers = []
        for index, raw in enumerate(hotkeys):
            hotkey = public_key_hex(f"hotkeys[{index}]", raw)
            positions = tuple(
                StakePosition(hotkey=hotkey, coldkey=coldkey, stake_rao=rao)
                for coldkey, rao in self._state.positions(hotkey)
            )
            answers.append(
                HotkeyStake(
                    hotkey=hotkey,
                    owner=self._state.owner.get(hotkey),
                    take=self._state.take_of(hotkey),
                    total_rao=sum(p.stake_rao for p in positions),
                    positions=positions,
                )
            )
        return answers

    def coldkey_stakes(self, coldkey: str) -> list[StakePosition]:
        coldkey = public_key_hex("coldkey", coldkey)
        return [
            StakePosition(hotkey=hotkey, coldkey=coldkey, stake_rao=rao)
            for hotkey, rao in self._state.coldkey_positions(coldkey)
        ]


def _write_genesis(
    ledger: Ledger, *, authority: keys.Keypair, balances: Mapping[str, int], params: ChainParams
) -> None:
    normalized: dict[str, int] = {}
    for account, rao in balances.items():
        key = public_key_hex("genesis_balances", account)
        normalized[key] = normalized.get(key, 0) + rao
    state = ChainState(params=params)
    layer = state.child()
    apply_genesis(layer, normalized)
    block = Block(
        height=0,
        parent_hash="",
        timestamp_ms=_now_ms(),
        authority=authority.hotkey,
        genesis=Genesis(balances=tuple(sorted(normalized.items())), params=params),
    )
    sealed = SealedBlock.seal(block, authority)
    ledger.append(height=0, sealed=sealed, layer=layer, transactions=(), settlements=())
    _log.info("new ledger %s: genesis %s, authority %s", ledger.path, sealed.hash[:16], authority.hotkey)
