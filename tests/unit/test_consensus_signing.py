"""Unit tests for canonical request signing (kubetensor.core.signing) as the consensus service uses it."""

from __future__ import annotations

from kubetensor.consensus.client import register_request, set_weights_request
from kubetensor.core import keys, signing
from kubetensor.core.keys import Keypair
from kubetensor.v1 import common_pb2, consensus_pb2

VALIDATOR = Keypair(bytes([7]) * 32)


def test_payload_is_the_request_with_its_signature_cleared_serialized_deterministically() -> None:
    request = set_weights_request(VALIDATOR, netuid=3, weights=[(1, 10), (2, 20)], nonce=5)
    unsigned = consensus_pb2.SetWeightsRequest(
        netuid=3,
        hotkey=VALIDATOR.hotkey,
        weights=[common_pb2.WeightEntry(uid=1, weight=10), common_pb2.WeightEntry(uid=2, weight=20)],
        nonce=5,
    )
    assert signing.payload(request) == unsigned.SerializeToString(deterministic=True)
    assert request.HasField("signature")
    # payload() does not modify the message it reads.
    assert request.signature.public_key == VALIDATOR.public_key


def test_signed_request_verifies_over_the_signing_bytes_of_its_domain() -> None:
    request = set_weights_request(VALIDATOR, netuid=3, weights=[(1, 10)], nonce=5)
    payload = signing.payload(request)
    assert request.signature.public_key == VALIDATOR.public_key
    assert keys.verify(VALIDATOR.public_key, "SetWeights", payload, request.signature.signature)
    assert not keys.verify(VALIDATOR.public_key, "RegisterNeuron", payload, request.signature.signature)


def test_changing_any_signed_field_breaks_the_signature() -> None:
    request = set_weights_request(VALIDATOR, netuid=3, weights=[(1, 10), (2, 20)], nonce=5)
    signature = request.signature.signature
    tampered = [consensus_pb2.SetWeightsRequest() for _ in range(4)]
    for copy in tampered:
        copy.CopyFrom(request)
    tampered[0].netuid = 4
    tampered[1].weights[1].weight = 21
    tampered[2].nonce = 6
    tampered[3].weights.add(uid=3, weight=1)
    for copy in tampered:
        assert not keys.verify(VALIDATOR.public_key, "SetWeights", signing.payload(copy), signature)


def test_registration_is_signed_by_the_hotkey_it_names() -> None:
    coldkey = Keypair(bytes([9]) * 32)
    request = register_request(VALIDATOR, netuid=1, coldkey=coldkey.hotkey, nonce=1)
    assert request.hotkey == VALIDATOR.hotkey
    assert keys.verify(
        bytes.fromhex(request.hotkey), "RegisterNeuron", signing.payload(request), request.signature.signature
    )


def test_payload_of_an_unsigned_message_is_its_deterministic_serialization() -> None:
    request = set_weights_request(VALIDATOR, netuid=3, weights=[(1, 10), (2, 20)], nonce=5)
    unsigned = consensus_pb2.SetWeightsRequest()
    unsigned.CopyFrom(request)
    unsigned.ClearField("signature")
    assert not unsigned.HasField("signature")
    assert signing.payload(unsigned) == signing.payload(request)


def test_detach_returns_what_payload_covers_and_clears_the_signature() -> None:
    request = set_weights_request(VALIDATOR, netuid=3, weights=[(1, 10), (2, 20)], nonce=5)
    expected = (VALIDATOR.public_key, request.signature.signature, signing.payload(request))
    assert signing.detach(request) == expected
    assert not request.HasField("signature")
    assert keys.verify(VALIDATOR.public_key, "SetWeights", expected[2], expected[1])
