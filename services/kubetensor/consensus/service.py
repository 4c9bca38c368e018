"""``ConsensusService``: the consensus domain service of one subnet (registration, deregistration,
weights, epochs).

Called by ``ConsensusServicer`` (the gRPC edge, which turns wire requests into the request types
below) and composed by ``__main__``. It owns the subnet's ``Metagraph`` and changes it only through
its ``ConsensusStore``: every accepted request and every epoch is committed in one transaction before
the in-memory state moves, and every refusal raises a ``kubetensor.consensus.errors`` error and
changes nothing (not even the nonce).

Requests are signed by the hotkey they name. What the signature covers is computed by the edge
(``kubetensor.core.signing.payload``: the request with its signature cleared, serialized
deterministically) and arrives here as ``SignedBytes.payload``; this service checks that the signing
key is the named hotkey and verifies ``keys.signing_bytes(domain, payload)``. Nonces are tracked per
(hotkey, request kind) and must strictly increase. A refused nonce answers either
``ReplayedRequestError`` (ALREADY_EXISTS: this exact request was accepted already, so a client that
retries after a lost response learns that it went through) or ``StaleNonceError``
(FAILED_PRECONDITION: any other nonce not above the last accepted one).

Epochs: the service runs one every ``tempo`` blocks (``block - last_epoch_block >= tempo``, the
chain's rule), where blocks come from a ``BlockClock``. After downtime it runs one epoch at the current
block, not one per missed tempo (as the chain does after a stall). Each epoch reads stake from the
``StakeSource``, runs ``yuma.run_epoch``, commits the new metagraph with the epoch's ``Settlement``,
and then wakes the delivery task, which submits undelivered settlements to the ``SettlementSink`` in
epoch order, retrying with capped exponential backoff until each is acknowledged. On start it
re-delivers whatever a previous process committed but did not deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass

from opentelemetry.trace import SpanContext, SpanKind

from kubetensor.consensus.clock import BlockClock
from kubetensor.consensus.errors import (
    AlreadyRegisteredError,
    BadSignatureError,
    MalformedRequestError,
    ReplayedRequestError,
    SettlementConflictError,
    StaleNonceError,
    UnknownSubnetError,
)
from kubetensor.consensus.metagraph import Metagraph, SubnetRules
from kubetensor.consensus.metrics import ConsensusMetrics
from kubetensor.consensus.settlement import Receipt, SettlementSink, settlement_of_epoch
from kubetensor.consensus.stake import StakeSource
from kubetensor.consensus.store import ConsensusStore, NonceRecord, SettlementRecord
from kubetensor.consensus.yuma import EpochParams, run_epoch
from kubetensor.core import keys, telemetry
from kubetensor.core.settlement import Settlement

_log = logging.getLogger(__name__)

REGISTER_NEURON = "RegisterNeuron"
"""Signing domain of registrations (``keys.signing_bytes``)."""
DEREGISTER_NEURON = "DeregisterNeuron"
"""Signing domain of deregistrations."""
SET_WEIGHTS = "SetWeights"
"""Signing domain of weight sets."""
MAX_PAGE = 1_000
"""Most settlements one ``ListSettlements`` page holds (the servicer's page size)."""

_U16_MAX = 65_535
_U64_MAX = (1 << 64) - 1


def _public_key_hex(field: str, value: str) -> str:
    """``value`` as a lowercase hex ed25519 public key, or MalformedRequestError naming ``field``."""
    return keys.public_key_hex(field, value, error=MalformedRequestError)


def _check_u64(field: str, value: int) -> None:
    if not 0 <= value <= _U64_MAX:
        raise MalformedRequestError(field, f"expected an unsigned 64-bit integer, got {value}")


@dataclass(frozen=True)
class SignedBytes:
    """A signature and the exact bytes it must cover (the request with its signature cleared)."""

    public_key: bytes
    signature: bytes
    payload: bytes

    def __post_init__(self) -> None:
        if not self.public_key and not self.signature:
            raise MalformedRequestError("signature", "required: sign the request with the hotkey it names")
        if len(self.public_key) != keys.PUBLIC_KEY_BYTES:
            raise MalformedRequestError(
                "signature.public_key", f"expected 32 bytes (ed25519), got {len(self.public_key)}"
            )
        if len(self.signature) != keys.SIGNATURE_BYTES:
            raise MalformedRequestError(
                "signature.signature", f"expected 64 bytes (ed25519), got {len(self.signature)}"
            )


@dataclass(frozen=True)
class NeuronRegistration:
    """A request to register ``hotkey`` (owned by ``coldkey``) on subnet ``netuid``; signed by the hotkey."""

    netuid: int
    hotkey: str
    coldkey: str
    nonce: int
    signed: SignedBytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "hotkey", _public_key_hex("hotkey", self.hotkey))
        object.__setattr__(self, "coldkey", _public_key_hex("coldkey", self.coldkey))
        _check_u64("nonce", self.nonce)


@dataclass(frozen=True)
class NeuronDeregistration:
    """A request to free the uid ``hotkey`` holds on subnet ``netuid``; signed by the hotkey."""

    netuid: int
    hotkey: str
    nonce: int
    signed: SignedBytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "hotkey", _public_key_hex("hotkey", self.hotkey))
        _check_u64("nonce", self.nonce)


@dataclass(frozen=True)
class WeightSubmission:
    """A validator's weights ``(uid, u16)`` for subnet ``netuid``; signed by its hotkey."""

    netuid: int
    hotkey: str
    weights: tuple[tuple[int, int], ...]
    nonce: int
    signed: SignedBytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "hotkey", _public_key_hex("hotkey", self.hotkey))
        _check_u64("nonce", self.nonce)
        for index, (uid, weight) in enumerate(self.weights):
            if not 0 <= uid <= _U16_MAX:
                raise MalformedRequestError(f"weights[{index}].uid", f"expected a uid in 0..65535, got {uid}")
            if not 0 <= weight <= _U16_MAX:
                raise MalformedRequestError(
                    f"weights[{index}].weight", f"expected a u16 weight in 0..65535, got {weight}"
                )


@dataclass(frozen=True)
class Registered:
    """Where a registration landed."""

    uid: int
    block: int


@dataclass(frozen=True)
class Deregistered:
    """Which uid a deregistration freed, and when."""

    uid: int
    block: int


@dataclass(frozen=True)
class MetagraphSnapshot:
    """The metagraph as of ``block``."""

    metagraph: Metagraph
    block: int


@dataclass(frozen=True)
class ConsensusConfig:
    """What the service runs: the subnet, its epoch hyperparameters and rules, and delivery retries."""

    netuid: int
    params: EpochParams
    """Epoch hyperparameters; ``params.tempo`` is also the epoch period in blocks."""
    rules: SubnetRules
    retry_seconds: float = 0.5
    """First wait after a failed delivery or epoch; doubles per failure."""
    retry_max_seconds: float = 30.0
    """Longest wait between two retries."""

    def __post_init__(self) -> None:
        if self.params.tempo < 1:
            raise ValueError(f"params.tempo: expected at least 1 block, got {self.params.tempo}")
        if not 0 < self.retry_seconds <= self.retry_max_seconds:
            raise ValueError("retry_seconds: expected 0 < retry_seconds <= retry_max_seconds")


class ConsensusService:
    """One subnet's consensus: see the module doc."""

    def __init__(
        self,
        *,
        config: ConsensusConfig,
        store: ConsensusStore,
        clock: BlockClock,
        stake_source: StakeSource,
        sink: SettlementSink,
        metrics: ConsensusMetrics | None = None,
    ) -> None:
        if store.netuid != config.netuid:
            raise ValueError(f"the store holds subnet {store.netuid}, the config names {config.netuid}")
        self._config = config
        self._store = store
        self._clock = clock
        self._stake_source = stake_source
        self._sink = sink
        self._metagraph = store.load_metagraph()
        self._nonces = store.load_nonces()
        last = store.last_settlement()
        self._last_hash = "" if last is None else last.hash
        self._lock = asyncio.Lock()
        self._delivery_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics = metrics if metrics is not None else ConsensusMetrics()
        self.metrics.watch(block=clock.block, epoch=lambda: self._metagraph.epoch)
        # Tracing, in memory only: the span of each hotkey's last accepted weights (an epoch links to
        # the ones it used) and the span of each epoch not yet delivered (delivery continues its trace).
        self._weight_spans: dict[str, SpanContext] = {}
        self._epoch_spans: dict[int, SpanContext] = {}

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the epoch and delivery tasks (delivery first re-sends anything left undelivered)."""
        if self._tasks:
            raise RuntimeError("the consensus service is already started")
        self._delivery_wanted.set()
        self._tasks = [
            asyncio.create_task(self._run_epochs(), name="consensus-epochs"),
            asyncio.create_task(self._deliver_settlements(), name="consensus-delivery"),
        ]

    async def stop(self) -> None:
        """Stop the tasks. A commit is never interrupted (commits do not await)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- requests -------------------------------------------------------------------------------------

    async def register(self, request: NeuronRegistration) -> Registered:
        """Register the request's hotkey (see ``Metagraph.register``)."""
        self._check_netuid(request.netuid)
        self._authenticate(request.hotkey, domain=REGISTER_NEURON, signed=request.signed)
        async with self._lock:
            record = self._nonce_record(
                request.hotkey, domain=REGISTER_NEURON, nonce=request.nonce, signed=request.signed
            )
            existing = self._metagraph.uid_of(request.hotkey)
            if existing is not None:
                raise AlreadyRegisteredError(request.hotkey, uid=existing)
            stakes = await self._stake_source.stakes([request.hotkey])
            block = self._clock.block()
            new, uid = self._metagraph.register(
                hotkey=request.hotkey,
                coldkey=request.coldkey,
                block=block,
                stake_rao=stakes.get(request.hotkey, 0),
                rules=self._config.rules,
            )
            self._commit(new, nonce=record)
        _log.info("registered %s... as uid %d at block %d", request.hotkey[:16], uid, block)
        return Registered(uid=uid, block=block)

    async def deregister(self, request: NeuronDeregistration) -> Deregistered:
        """Free the uid the request's hotkey holds (see ``Metagraph.deregister``).

        A hotkey that holds no uid (never registered, or already deregistered) is NotRegisteredError
        (NOT_FOUND), which a caller that wants the hotkey gone treats as done.
        """
        self._check_netuid(request.netuid)
        self._authenticate(request.hotkey, domain=DEREGISTER_NEURON, signed=request.signed)
        async with self._lock:
            record = self._nonce_record(
                request.hotkey, domain=DEREGISTER_NEURON, nonce=request.nonce, signed=request.signed
            )
            block = self._clock.block()
            new, uid = self._metagraph.deregister(hotkey=request.hotkey, block=block)
            self._commit(new, nonce=record)
        _log.info("deregistered %s... from uid %d at block %d", request.hotkey[:16], uid, block)
        return Deregistered(uid=uid, block=block)

    async def set_weights(self, request: WeightSubmission) -> int:
        """Set the request's weights (see ``Metagraph.set_weights``); returns the block they were set at."""
        self._check_netuid(request.netuid)
        self._authenticate(request.hotkey, domain=SET_WEIGHTS, signed=request.signed)
        async with self._lock:
            record = self._nonce_record(
                request.hotkey, domain=SET_WEIGHTS, nonce=request.nonce, signed=request.signed
            )
            block = self._clock.block()
            new = self._metagraph.set_weights(
                hotkey=request.hotkey, weights=request.weights, block=block, rules=self._config.rules
            )
            self._commit(new, nonce=record)
            span_context = telemetry.current_span_context()
            if span_context is not None:
                self._weight_spans[request.hotkey] = span_context
        self.metrics.weights_accepted.inc()
        return block

    def snapshot(self, netuid: int) -> MetagraphSnapshot:
        """The current metagraph of subnet ``netuid`` and the current block."""
        self._check_netuid(netuid)
        return MetagraphSnapshot(metagraph=self._metagraph, block=self._clock.block())

    def settlements(
        self, netuid: int, *, start_epoch: int = 1, limit: int = MAX_PAGE
    ) -> list[SettlementRecord]:
        """Committed settlements of ``netuid`` from ``start_epoch`` on (at least 1), at most ``limit``."""
        self._check_netuid(netuid)
        return self._store.settlements(start_epoch=max(start_epoch, 1), limit=max(limit, 1))

    @property
    def next_epoch_block(self) -> int:
        """The first block at which the next epoch may run."""
        return self._metagraph.last_epoch_block + self._config.params.tempo

    # -- epochs and delivery --------------------------------------------------------------------------

    async def run_due_epoch(self) -> Settlement | None:
        """Run the epoch if one is due at the current block; return its settlement (None if not due).

        Traced as a ``consensus.epoch`` span (a new trace) with a link to the span of each weight
        submission the epoch used; the settlement's delivery continues that trace.
        """
        if not telemetry.enabled() or self._clock.block() < self.next_epoch_block:
            return await self._run_due_epoch()
        # The weights an epoch uses are the last ones each registered hotkey set; a hotkey that left
        # the subnet is forgotten here, so the map stays as small as the metagraph.
        for hotkey in [h for h in self._weight_spans if self._metagraph.uid_of(h) is None]:
            del self._weight_spans[hotkey]
        links = [
            telemetry.link(context, {telemetry.HOTKEY: hotkey})
            for hotkey, context in self._weight_spans.items()
        ]
        attributes = {telemetry.NETUID: self._config.netuid, "kubetensor.epoch.weight_sets": len(links)}
        with telemetry.span("consensus.epoch", attributes=attributes, links=links) as span:
            settlement = await self._run_due_epoch()
            span_context = telemetry.current_span_context()
            if span is not None and settlement is not None and span_context is not None:
                span.set_attribute(telemetry.EPOCH, settlement.epoch)
                span.set_attribute(telemetry.BLOCK, settlement.block)
                span.set_attribute("kubetensor.settlement.hash", settlement.hash)
                self._epoch_spans[settlement.epoch] = span_context
            return settlement

    async def _run_due_epoch(self) -> Settlement | None:
        started = time.perf_counter()
        async with self._lock:
            block = self._clock.block()
            current = self._metagraph
            if block < self.next_epoch_block:
                return None
            stakes = await self._stake_source.stakes([neuron.hotkey for neuron in current.registered])
            staked = current.with_stakes(stakes)
            result = run_epoch(staked.epoch_inputs(block=block), self._config.params)
            settlement = settlement_of_epoch(
                metagraph=staked, result=result, block=block, previous_hash=self._last_hash
            )
            self._commit(staked.after_epoch(result, block=block), settlement=settlement)
        self.metrics.epoch_seconds.observe(time.perf_counter() - started)
        _log.info(
            "settled epoch %d of subnet %d at block %d: %s (%d uids)",
            settlement.epoch,
            settlement.netuid,
            block,
            settlement.hash,
            len(settlement.entries),
        )
        return settlement

    async def deliver_pending(self) -> int:
        """Submit every undelivered settlement to the sink, in epoch order; return how many were acknowledged.

        Stops at the first failure and raises it (the caller retries); what was acknowledged stays so.
        """
        delivered = 0
        for settlement in self._store.undelivered():
            receipt = await self._deliver(settlement)
            if receipt.settlement_hash != settlement.hash:
                raise SettlementConflictError(
                    settlement.netuid,
                    epoch=settlement.epoch,
                    existing_hash=receipt.settlement_hash,
                    new_hash=settlement.hash,
                )
            self._store.mark_delivered(settlement.epoch, receipt)
            delivered += 1
        return delivered

    async def _deliver(self, settlement: Settlement) -> Receipt:
        """Submit one settlement; traced in its epoch's trace when this process ran that epoch."""
        parent = self._epoch_spans.get(settlement.epoch)
        attributes = {telemetry.NETUID: settlement.netuid, telemetry.EPOCH: settlement.epoch}
        with telemetry.span(
            "consensus.deliver_settlement",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            parent=None if parent is None else telemetry.remote_context_of(parent),
        ):
            receipt = await self._sink.submit(settlement)
        self._epoch_spans.pop(settlement.epoch, None)
        self.metrics.settlements_delivered.inc()
        return receipt

    async def _run_epochs(self) -> None:
        delay = self._config.retry_seconds
        while True:
            await self._clock.wait_for_block(self.next_epoch_block)
            try:
                await self.run_due_epoch()
            except Exception:
                _log.exception(
                    "the epoch due at block %d failed; retrying in %.1fs", self.next_epoch_block, delay
                )
                await asyncio.sleep(delay)
                delay = min(2 * delay, self._config.retry_max_seconds)
            else:
                delay = self._config.retry_seconds

    async def _deliver_settlements(self) -> None:
        delay = self._config.retry_seconds
        while True:
            self._delivery_wanted.clear()
            try:
                await self.deliver_pending()
            except Exception as error:
                _log.warning("delivering settlements failed (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, self._config.retry_max_seconds)
                continue
            delay = self._config.retry_seconds
            await self._delivery_wanted.wait()

    # -- helpers --------------------------------------------------------------------------------------

    def _check_netuid(self, netuid: int) -> None:
        if netuid != self._config.netuid:
            raise UnknownSubnetError(netuid, served=self._config.netuid)

    @staticmethod
    def _authenticate(hotkey: str, *, domain: str, signed: SignedBytes) -> None:
        if signed.public_key != bytes.fromhex(hotkey) or not keys.verify(
            signed.public_key, domain, signed.payload, signed.signature
        ):
            raise BadSignatureError(hotkey, domain=domain)

    def _nonce_record(self, hotkey: str, *, domain: str, nonce: int, signed: SignedBytes) -> NonceRecord:
        digest = hashlib.sha256(signed.payload).hexdigest()
        last = self._nonces.get((hotkey, domain))
        if last is not None:
            if nonce == last.nonce and digest == last.request_digest:
                raise ReplayedRequestError(hotkey, domain=domain, nonce=nonce)
            if nonce <= last.nonce:
                raise StaleNonceError(hotkey, domain=domain, nonce=nonce, last_nonce=last.nonce)
        return NonceRecord(hotkey=hotkey, domain=domain, nonce=nonce, request_digest=digest)

    def _commit(
        self, metagraph: Metagraph, *, nonce: NonceRecord | None = None, settlement: Settlement | None = None
    ) -> None:
        """Persist, then adopt, ``metagraph`` (with the nonce it consumed or the settlement it produced)."""
        self._store.commit(previous=self._metagraph, metagraph=metagraph, nonce=nonce, settlement=settlement)
        self._metagraph = metagraph
        if nonce is not None:
            self._nonces[(nonce.hotkey, nonce.domain)] = nonce
        if settlement is not None:
            self._last_hash = settlement.hash
            self._delivery_wanted.set()
