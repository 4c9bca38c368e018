"""Helpers shared by the chain sidecar's tests: keys, a started in-process service, settlements.

Used by tests/unit/test_chain_*.py, tests/integration/test_chain_*.py and tests/bench/bench_chain.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from pathlib import Path

from google.protobuf.message import Message
from kubetensor.chain import wire
from kubetensor.chain.service import ChainService, SettlementSubmission, TransactionReceipt
from kubetensor.chain.state import ChainParams
from kubetensor.core.keys import Keypair
from kubetensor.core.settlement import Settlement, SettlementEntry

ONE = 1 << 32
"""Raw I32F32 1.0."""
TAO = 10**9
"""Rao per TAO."""


def keypair(index: int) -> Keypair:
    """A deterministic key pair per index (tests only)."""
    return Keypair.from_seed_hex(f"{index + 1:064x}")


AUTHORITY = keypair(999)


@contextlib.asynccontextmanager
async def started_service(
    path: Path,
    *,
    balances: Mapping[str, int] | None = None,
    params: ChainParams | None = None,
    settlement_signers: Collection[str] = (),
    authority: Keypair = AUTHORITY,
    max_batch: int = 256,
) -> AsyncIterator[ChainService]:
    """A started ChainService on the ledger at ``path``; stopped (and the ledger closed) on exit."""
    service = ChainService.open(
        ledger_path=path,
        authority=authority,
        genesis_balances=balances,
        params=params,
        settlement_signers=settlement_signers,
        max_batch=max_batch,
    )
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def transact(service: ChainService, request: Message) -> TransactionReceipt:
    """Send a signed transaction request through the wire conversion, as the servicer does."""
    return await service.submit_transaction(wire.transaction_from_request(request))  # type: ignore[arg-type]


def make_settlement(
    *,
    netuid: int = 1,
    epoch: int = 1,
    entries: Sequence[tuple[str, int, int, int]],
    previous_hash: str = "",
    block: int | None = None,
) -> Settlement:
    """A settlement whose entries are ``(hotkey, incentive raw, dividends raw, emission rao)`` by uid."""
    return Settlement(
        netuid=netuid,
        epoch=epoch,
        block=epoch * 360 if block is None else block,
        metagraph_digest=f"{epoch:064x}",
        weights_digest=f"{epoch + 1:064x}",
        entries=tuple(
            SettlementEntry(uid=uid, hotkey=hotkey, incentive=i, dividends=d, emission_rao=e)
            for uid, (hotkey, i, d, e) in enumerate(entries)
        ),
        previous_hash=previous_hash,
    )


async def settle(service: ChainService, settlement: Settlement) -> None:
    await service.submit_settlement(SettlementSubmission(settlement))
