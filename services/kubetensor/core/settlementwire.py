"""The wire form of a settlement (``kubetensor.v1.Settlement``): one translation for both services.

The consensus service sends settlements (its servicer answers with them, its chain client submits them)
and the chain sidecar receives, stores and serves them; both must turn the same domain value into the
same message and back, or a hash computed on one side would not match on the other. Called by
``consensus.servicer``, ``consensus.client``, ``consensus.chainclient`` (through the servicer) and
``chain.wire``; the one ``core`` module that touches generated proto code.

Shares (incentive, dividends) travel as doubles that hold an I32F32 value exactly; anything else is
refused with ``MalformedSettlementError`` naming the wire field. The ``hash`` field is written, never
trusted on the way in: the domain value recomputes it.
"""

from __future__ import annotations

import math

from kubetensor.core.settlement import MAX_RAO, MalformedSettlementError, Settlement, SettlementEntry
from kubetensor.v1 import consensus_pb2

ONE = 1 << 32
"""An I32F32 value's raw integer is the value times 2**32."""


def raw_share(field: str, value: float) -> int:
    """The raw I32F32 integer of a share sent as an exact double."""
    if not math.isfinite(value) or value < 0:
        raise MalformedSettlementError(field, f"expected a non-negative I32F32 value, got {value!r}")
    scaled = value * ONE
    if scaled != math.floor(scaled) or scaled > MAX_RAO:
        raise MalformedSettlementError(
            field, f"expected an exact I32F32 value (a multiple of 2**-32), got {value!r}"
        )
    return int(scaled)


def settlement_to_proto(settlement: Settlement) -> consensus_pb2.Settlement:
    """The wire form of a settlement, with its hash."""
    return consensus_pb2.Settlement(
        netuid=settlement.netuid,
        epoch=settlement.epoch,
        block=settlement.block,
        metagraph_digest=settlement.metagraph_digest,
        weights_digest=settlement.weights_digest,
        entries=[
            consensus_pb2.SettlementEntry(
                uid=entry.uid,
                hotkey=entry.hotkey,
                incentive=entry.incentive / ONE,
                dividends=entry.dividends / ONE,
                emission_rao=entry.emission_rao,
            )
            for entry in settlement.entries
        ],
        previous_hash=settlement.previous_hash,
        hash=settlement.hash,
    )


def settlement_from_proto(message: consensus_pb2.Settlement) -> Settlement:
    """The settlement a wire message carries (its ``hash`` is recomputed, not copied)."""
    return Settlement(
        netuid=message.netuid,
        epoch=message.epoch,
        block=message.block,
        metagraph_digest=message.metagraph_digest,
        weights_digest=message.weights_digest,
        entries=tuple(
            SettlementEntry(
                uid=entry.uid,
                hotkey=entry.hotkey,
                incentive=raw_share(f"settlement.entries[{index}].incentive", entry.incentive),
                dividends=raw_share(f"settlement.entries[{index}].dividends", entry.dividends),
                emission_rao=entry.emission_rao,
            )
            for index, entry in enumerate(message.entries)
        ),
        previous_hash=message.previous_hash,
    )
