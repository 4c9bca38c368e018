"""``ConsensusAdapter``: the validator's view of the consensus service: the metagraph, and its weights.

Composed by ``__main__`` around a ``kubetensor.consensus.client.ConsensusClient`` and the validator's
hotkey; ``ValidatorService`` sees only the two methods (``ConsensusPort``). gRPC failures become
validator errors here: UNAVAILABLE and DEADLINE_EXCEEDED are ``ConsensusUnavailableError`` (try again
later), any other refusal of weights is ``WeightsRefusedError`` carrying the server's message (the
rate limit, a missing permit, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc

from kubetensor.consensus.client import ConsensusClient
from kubetensor.core.keys import Keypair
from kubetensor.core.metagraphview import MetagraphView, from_response
from kubetensor.validator.errors import ConsensusUnavailableError, WeightsRefusedError

_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class ConsensusPort(Protocol):
    """What the validator needs from the consensus service."""

    async def metagraph(self) -> MetagraphView: ...

    async def set_weights(self, weights: Sequence[tuple[int, int]], *, nonce: int) -> int:
        """Set this validator's weights; returns the block they were set at."""
        ...


class ConsensusAdapter:
    """``ConsensusPort`` over a ``ConsensusClient`` for one validator hotkey."""

    def __init__(self, client: ConsensusClient, *, keypair: Keypair) -> None:
        self._client = client
        self._keypair = keypair

    async def metagraph(self) -> MetagraphView:
        try:
            return from_response(await self._client.metagraph())
        except grpc.aio.AioRpcError as error:
            raise ConsensusUnavailableError(f"reading the metagraph failed: {error.details()}") from None

    async def set_weights(self, weights: Sequence[tuple[int, int]], *, nonce: int) -> int:
        try:
            response = await self._client.set_weights(self._keypair, weights=weights, nonce=nonce)
        except grpc.aio.AioRpcError as error:
            if error.code() in _TRANSIENT:
                raise ConsensusUnavailableError(f"setting weights failed: {error.details()}") from None
            raise WeightsRefusedError(f"{error.code().name}: {error.details()}") from None
        block: int = response.block
        return block
