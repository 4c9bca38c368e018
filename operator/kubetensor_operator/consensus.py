"""The operator's side of a subnet's consensus service: hotkeys, (de)registration, metagraph, settlements.

The only module of the operator that imports kubetensor's services (``kubetensor.consensus.client``
for the signed RPCs, ``kubetensor.core.keys`` for ed25519), so the request format and its signature
have one definition. ``ConsensusGateway`` keeps one channel per address and caches each subnet's
metagraph for ``metagraph_ttl`` seconds: a thousand Miners of one subnet cost one ``GetMetagraph`` per
TTL, not a thousand. gRPC failures become ``ConsensusUnavailableError`` (retry later) or
``ConsensusRefusedError`` (the service said no, with its reason). Called by ``handlers``.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

import grpc
from kubetensor.consensus.client import ConsensusClient
from kubetensor.core.keys import Keypair

from kubetensor_operator.errors import ConsensusRefusedError, ConsensusUnavailableError
from kubetensor_operator.model import Deregistration, Metagraph, Neuron, SettlementHead

_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNKNOWN,
    }
)


def new_seed() -> str:
    """A fresh ed25519 seed, hex (the content of a generated hotkey Secret)."""
    return Keypair.generate().seed.hex()


def hotkey_of(seed_hex: str) -> str:
    """The public hotkey (hex) of a hex seed; ValueError when it is not a 32-byte hex seed."""
    return Keypair.from_seed_hex(seed_hex.strip()).hotkey


class ConsensusGateway:
    """Calls to the consensus services of every subnet the operator manages."""

    def __init__(self, *, call_seconds: float, metagraph_ttl: float) -> None:
        self.call_seconds = call_seconds
        self.metagraph_ttl = metagraph_ttl
        self._clients: dict[tuple[str, int], ConsensusClient] = {}
        self._graphs: dict[tuple[str, int], tuple[float, Metagraph]] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def __aenter__(self) -> ConsensusGateway:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    def _client(self, address: str, netuid: int) -> ConsensusClient:
        key = (address, netuid)
        client = self._clients.get(key)
        if client is None:
            client = ConsensusClient.connect(address, netuid=netuid, call_seconds=self.call_seconds)
            self._clients[key] = client
        return client

    def _error(self, address: str, error: grpc.aio.AioRpcError) -> Exception:
        code = error.code()
        detail = error.details() or code.name
        if code in _RETRYABLE:
            return ConsensusUnavailableError(address, f"{code.name}: {detail}")
        return ConsensusRefusedError(address, code=code.name, detail=detail)

    async def metagraph(self, address: str, netuid: int, *, fresh: bool = False) -> Metagraph:
        """The subnet's metagraph, at most ``metagraph_ttl`` seconds old (``fresh``: fetched now)."""
        key = (address, netuid)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._graphs.get(key)
            if cached is not None and not fresh and time.monotonic() - cached[0] < self.metagraph_ttl:
                return cached[1]
            try:
                response = await self._client(address, netuid).metagraph()
            except grpc.aio.AioRpcError as error:
                raise self._error(address, error) from None
            graph = Metagraph(
                netuid=response.netuid,
                epoch=response.epoch,
                neurons={
                    n.hotkey: Neuron(
                        uid=n.uid,
                        hotkey=n.hotkey,
                        stake_rao=n.stake_rao,
                        validator_permit=n.validator_permit,
                        incentive=n.incentive,
                        dividends=n.dividends,
                        validator_trust=n.validator_trust,
                        consensus=n.consensus,
                        emission_rao=n.emission_rao,
                    )
                    for n in response.neurons
                },
            )
            self._graphs[key] = (time.monotonic(), graph)
            return graph

    async def settlement_head(self, address: str, netuid: int, *, epoch: int) -> SettlementHead | None:
        """The settlement of ``epoch`` (the newest one the metagraph knows), or None before the first.

        Exactly that epoch's, never a newer one: the metagraph may be up to ``metagraph_ttl`` old while
        the next epochs settle, and a status must not show one epoch with another's settlement."""
        if epoch <= 0:
            return None
        try:
            records = await self._client(address, netuid).settlements(start_epoch=epoch)
        except grpc.aio.AioRpcError as error:
            raise self._error(address, error) from None
        for record in records:
            if record.settlement.epoch == epoch:
                return SettlementHead(epoch=epoch, hash=record.settlement.hash)
        return None

    async def register(self, address: str, netuid: int, *, seed_hex: str, coldkey: str) -> int:
        """Register the seed's hotkey (owned by ``coldkey``); its uid, also when it already had one."""
        keypair = Keypair.from_seed_hex(seed_hex.strip())
        try:
            # Nonces must grow per hotkey; the clock in nanoseconds does across operator restarts.
            response = await self._client(address, netuid).register(
                keypair, coldkey=coldkey, nonce=time.time_ns()
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                graph = await self.metagraph(address, netuid, fresh=True)
                neuron = graph.neurons.get(keypair.hotkey)
                if neuron is not None:
                    return neuron.uid
            raise self._error(address, error) from None
        return int(response.uid)

    async def deregister(self, address: str, netuid: int, *, seed_hex: str) -> Deregistration | None:
        """Free the uid the seed's hotkey holds; None when it holds none (NOT_FOUND: nothing to free)."""
        keypair = Keypair.from_seed_hex(seed_hex.strip())
        try:
            response = await self._client(address, netuid).deregister(keypair, nonce=time.time_ns())
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise self._error(address, error) from None
        finally:
            # Whatever the answer, a cached metagraph may now be wrong about this hotkey.
            self._graphs.pop((address, netuid), None)
        return Deregistration(uid=int(response.uid), block=int(response.deregistered_at_block))
