"""Unit tests for settlement hashing (kubetensor.core.settlement, canonical) and its wire form."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from kubetensor.consensus.fixed import ONE
from kubetensor.core import canonical
from kubetensor.core.settlement import Settlement, SettlementEntry
from kubetensor.core.settlementwire import settlement_from_proto, settlement_to_proto

SETTLEMENT = Settlement(
    netuid=2,
    epoch=7,
    block=2520,
    metagraph_digest="ab" * 32,
    weights_digest="cd" * 32,
    entries=(
        SettlementEntry(
            uid=0, hotkey="01" * 32, incentive=0, dividends=ONE // 3, emission_rao=98_400_000_000
        ),
        SettlementEntry(
            uid=1, hotkey="02" * 32, incentive=ONE - 1, dividends=0, emission_rao=196_800_000_000
        ),
    ),
    previous_hash="ef" * 32,
)


def test_canonical_encoding_sorts_keys_and_has_no_whitespace() -> None:
    assert canonical.encode({"b": [1, "x", None, True], "a": {"d": 2, "c": -1}}) == (
        b'{"a":{"c":-1,"d":2},"b":[1,"x",null,true]}'
    )


def test_canonical_encoding_refuses_floats() -> None:
    with pytest.raises(TypeError, match=r"\$\.a\[1\]"):
        canonical.encode({"a": [1, 0.5]})


def test_settlement_hash_is_sha256_of_its_canonical_encoding() -> None:
    encoded = SETTLEMENT.encode()
    assert SETTLEMENT.hash == hashlib.sha256(encoded).hexdigest()
    assert encoded.startswith(b'{"block":2520,"entries":[{"dividends":1431655765,"emission_rao":98400000000,')
    assert b'"format":"kubetensor.settlement/v1"' in encoded


def test_settlement_hash_is_the_one_ledgers_already_hold() -> None:
    # Pinned: settlements recorded before (consensus stores, chain ledgers) must keep verifying.
    assert SETTLEMENT.hash == "45da3659424d96c4b69a63b3db140048acfaacab7638cc23ba492a81e89ed26e"


@pytest.mark.parametrize(
    "change",
    [
        {"netuid": 3},
        {"epoch": 8},
        {"block": 2521},
        {"metagraph_digest": "00" * 32},
        {"weights_digest": "00" * 32},
        {"previous_hash": ""},
        {"entries": SETTLEMENT.entries[:1]},
        {"entries": (replace(SETTLEMENT.entries[0], incentive=1), SETTLEMENT.entries[1])},
        {"entries": (replace(SETTLEMENT.entries[0], dividends=1), SETTLEMENT.entries[1])},
        {"entries": (replace(SETTLEMENT.entries[0], emission_rao=1), SETTLEMENT.entries[1])},
        {"entries": (replace(SETTLEMENT.entries[0], hotkey="03" * 32), SETTLEMENT.entries[1])},
    ],
)
def test_settlement_hash_changes_with_every_field(change: dict[str, object]) -> None:
    assert replace(SETTLEMENT, **change).hash != SETTLEMENT.hash  # type: ignore[arg-type]


def test_settlement_decode_round_trips_and_refuses_non_canonical_bytes() -> None:
    assert Settlement.decode(SETTLEMENT.encode()) == SETTLEMENT
    with pytest.raises(ValueError, match="canonical"):
        Settlement.decode(SETTLEMENT.encode().replace(b'"block":2520', b'"block": 2520'))


def test_wire_form_carries_the_hash_and_converts_back_exactly() -> None:
    message = settlement_to_proto(SETTLEMENT)
    assert message.hash == SETTLEMENT.hash
    assert message.entries[0].dividends == (ONE // 3) / ONE
    back = settlement_from_proto(message)
    assert back == SETTLEMENT
    assert back.hash == message.hash
