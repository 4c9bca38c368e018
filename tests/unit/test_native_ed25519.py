"""kubetensor_native (Rust, ed25519-dalek) against PyNaCl (libsodium), case by case.

The native module must sign byte for byte as libsodium does and give libsodium's verdicts, so that a
process on either backend (``kubetensor.core.keys`` falls back to PyNaCl without the module) accepts
exactly the same signatures. Besides valid, tampered and mis-sized signatures, the cases are the ones
where ed25519 implementations disagree, each built so that the verification equation itself holds and
only the extra check refuses it: a small-order public key, a small-order R, a non-canonical S; plus a
key with a small-order component, where the cofactorless equation holds for some messages only.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import kubetensor_native
import nacl.bindings
import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

# The order of the prime subgroup.
L = 2**252 + 27742317777372353535851937790883648493
# The eight points of small order, canonical encodings (identity, order 2, order 4 twice, order 8 four times).
TORSION = [
    bytes.fromhex("01" + "00" * 31),
    bytes.fromhex("ec" + "ff" * 30 + "7f"),
    bytes.fromhex("00" * 32),
    bytes.fromhex("00" * 31 + "80"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
]
# Non-canonical encodings (y >= p) of small-order points: y = p (0) and y = p + 1 (1), either sign,
# and the identity with its sign bit set (x = 0 has no sign).
NON_CANONICAL_SMALL_ORDER = [
    bytes.fromhex("ed" + "ff" * 30 + "7f"),
    bytes.fromhex("ed" + "ff" * 31),
    bytes.fromhex("ee" + "ff" * 30 + "7f"),
    bytes.fromhex("ee" + "ff" * 31),
    bytes.fromhex("01" + "00" * 30 + "80"),
]
# Non-canonical encodings (y >= p) that are not small-order encodings: y = p + 3, p + 5, 2^255 - 1.
NON_CANONICAL = [bytes.fromhex(lead + "ff" * 30 + "7f") for lead in ("f0", "f2", "ff")]


def nacl_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """libsodium's verdict (``crypto_sign_open`` through PyNaCl), False for wrong lengths."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except BadSignatureError:
        return False
    return True


def scalar(value: int) -> bytes:
    return (value % L).to_bytes(32, "little")


def times_base(value: int) -> bytes:
    """[value]B, encoded."""
    return nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(scalar(value))


def challenge(r: bytes, public_key: bytes, message: bytes) -> int:
    """k = SHA-512(R || A || M) mod l."""
    return int.from_bytes(hashlib.sha512(r + public_key + message).digest(), "little") % L


def secret_scalar(seed: bytes) -> int:
    """RFC 8032's clamped secret scalar a of a seed (its public key is [a]B)."""
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return int.from_bytes(h, "little")


def sign_as(a: int, public_key: bytes, message: bytes, *, nonce: int) -> bytes:
    """R = [nonce]B, S = nonce + k a: a signature for ``public_key`` whatever point it encodes."""
    r = times_base(nonce)
    return r + scalar(nonce + challenge(r, public_key, message) * a)


@dataclass(frozen=True)
class Case:
    name: str
    public_key: bytes
    message: bytes
    signature: bytes
    valid: bool


def seed(index: int) -> bytes:
    return hashlib.sha256(b"seed %d" % index).digest()


def valid_triple(index: int, message: bytes = b"") -> tuple[bytes, bytes, bytes]:
    key = SigningKey(seed(index))
    message = message or b"message %d" % index
    return bytes(key.verify_key), message, bytes(key.sign(message).signature)


def flip(data: bytes, position: int, bit: int = 1) -> bytes:
    out = bytearray(data)
    out[position] ^= bit
    return bytes(out)


def torsion_r_case(point: bytes) -> Case:
    """R = ``point`` (small order) under the key A' = A + ``point`` with S = k a, for a message whose k
    is -1 modulo 8: then [S]B - [k]A' = -[k]point = point = R, the equation holds."""
    a = secret_scalar(seed(90))
    mixed = nacl.bindings.crypto_core_ed25519_add(times_base(a), point)
    for attempt in range(1000):
        message = b"torsion R %d" % attempt
        k = challenge(point, mixed, message)
        if k % 8 == 7:
            return Case(
                f"small-order R {point.hex()[:8]}..{point.hex()[-2:]}",
                mixed,
                message,
                point + scalar(k * a),
                False,
            )
    raise AssertionError("no message with k = -1 mod 8 in 1000 tries")


def edge_cases() -> list[Case]:
    cases = [Case(f"valid {index}", *valid_triple(index), valid=True) for index in range(4)]
    cases.append(Case("valid, empty message", *valid_triple(4, b""), valid=True))
    cases.append(Case("valid, 64 KiB message", *valid_triple(5, bytes(range(256)) * 256), valid=True))
    public_key, message, signature = valid_triple(6)
    other_key, _, _ = valid_triple(7)
    cases += [
        Case("tampered message", public_key, message + b"!", signature, False),
        Case("tampered R", public_key, message, flip(signature, 3), False),
        Case("tampered S", public_key, message, flip(signature, 40), False),
        Case("tampered key", public_key[:-1] + bytes([public_key[-1] ^ 2]), message, signature, False),
        Case("another key", other_key, message, signature, False),
        Case("key of 31 bytes", public_key[:31], message, signature, False),
        Case("key of 33 bytes", public_key + b"\0", message, signature, False),
        Case("empty key", b"", message, signature, False),
        Case("signature of 63 bytes", public_key, message, signature[:63], False),
        Case("signature of 65 bytes", public_key, message, signature + b"\0", False),
        Case("empty signature", public_key, message, b"", False),
    ]
    # S + l: the same point [S]B, so the equation holds; only the canonical-S check refuses it.
    s = int.from_bytes(signature[32:], "little")
    cases.append(
        Case(
            "non-canonical S (S + l)",
            public_key,
            message,
            signature[:32] + (s + L).to_bytes(32, "little"),
            False,
        )
    )
    cases.append(
        Case(
            "S with its top bit set",
            public_key,
            message,
            signature[:32] + (s + 2**255).to_bytes(32, "little"),
            False,
        )
    )
    # The identity as key: [S]B - [k]A = [S]B = R for any message when S = nonce; only the small-order
    # key check refuses it. The other small-order keys and their non-canonical encodings likewise.
    for point in TORSION + NON_CANONICAL_SMALL_ORDER:
        r = times_base(12345)
        cases.append(
            Case(
                f"small-order key {point.hex()[:8]}..{point.hex()[-2:]}",
                point,
                message,
                r + scalar(12345),
                False,
            )
        )
    # R = identity with S = k a under an honest key: [S]B - [k]A = identity = R.
    a = secret_scalar(seed(6))
    identity = TORSION[0]
    cases.append(
        Case(
            "identity R",
            public_key,
            message,
            identity + scalar(challenge(identity, public_key, message) * a),
            False,
        )
    )
    cases += [torsion_r_case(point) for point in TORSION[1:]]
    for encoding in NON_CANONICAL:
        cases.append(Case(f"non-canonical key {encoding.hex()[:4]}", encoding, message, signature, False))
        cases.append(
            Case(
                f"non-canonical R {encoding.hex()[:4]}", public_key, message, encoding + signature[32:], False
            )
        )
    return cases


CASES = edge_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_verify_agrees_with_libsodium_on_edge_cases(case: Case) -> None:
    assert nacl_verify(case.public_key, case.message, case.signature) is case.valid
    assert kubetensor_native.verify(case.public_key, case.message, case.signature) is case.valid


def test_verify_batch_gives_each_edge_case_its_libsodium_verdict() -> None:
    verdicts = kubetensor_native.verify_batch(
        [case.public_key for case in CASES],
        [case.message for case in CASES],
        [case.signature for case in CASES],
    )
    assert verdicts == [case.valid for case in CASES]


@pytest.mark.parametrize("bad", [case for case in CASES if not case.valid], ids=lambda case: case.name)
def test_verify_batch_says_exactly_which_items_of_a_batch_fail(bad: Case) -> None:
    # 40 signatures are batches of 16, 16 and 8: forgeries in the first, on both sides of the first
    # boundary and last in the last.
    batch = [valid_triple(100 + index) for index in range(40)]
    failing = {2, 7, 15, 16, 39}
    for index in failing:
        batch[index] = (bad.public_key, bad.message, bad.signature)
    keys, messages, signatures = (list(column) for column in zip(*batch, strict=True))
    assert kubetensor_native.verify_batch(keys, messages, signatures) == [i not in failing for i in range(40)]


def test_verify_agrees_with_libsodium_on_a_key_with_a_small_order_component() -> None:
    # A' = [a]B + T8 (not small order, so both accept it as a key): an honest-looking signature
    # satisfies the cofactorless equation only when k is a multiple of 8.
    a = secret_scalar(seed(91))
    mixed = nacl.bindings.crypto_core_ed25519_add(times_base(a), TORSION[4])
    verdicts = []
    for index in range(64):
        message = b"mixed %d" % index
        signature = sign_as(a, mixed, message, nonce=1000 + index)
        expected = nacl_verify(mixed, message, signature)
        assert kubetensor_native.verify(mixed, message, signature) is expected, message
        assert kubetensor_native.verify_batch([mixed], [message], [signature]) == [expected]
        verdicts.append(expected)
    assert True in verdicts
    assert False in verdicts


def mutations(rng: random.Random) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for index in range(150):
        public_key, message, signature = valid_triple(200 + index, rng.randbytes(rng.randrange(0, 200)))
        out.append((public_key, message, signature))
        part = rng.randrange(3)
        if part == 0:
            public_key = flip(public_key, rng.randrange(32), 1 << rng.randrange(8))
        elif part == 1:
            signature = flip(signature, rng.randrange(64), 1 << rng.randrange(8))
        else:
            message = flip(message + b"\0", rng.randrange(len(message) + 1), 1 << rng.randrange(8))
        out.append((public_key, message, signature))
    return out


def test_verdicts_agree_with_libsodium_on_random_mutations() -> None:
    triples = mutations(random.Random(5))
    expected = [nacl_verify(*triple) for triple in triples]
    assert [kubetensor_native.verify(*triple) for triple in triples] == expected
    keys, messages, signatures = (list(column) for column in zip(*triples, strict=True))
    assert kubetensor_native.verify_batch(keys, messages, signatures) == expected
    assert sum(expected) == 150  # the originals pass, every mutation fails


@pytest.mark.parametrize("length", [0, 1, 31, 32, 33, 64, 1000, 65536])
def test_signatures_are_byte_identical_to_libsodium(length: int) -> None:
    for index in range(8):
        message = hashlib.shake_256(b"%d %d" % (length, index)).digest(length) if length else b""
        native = kubetensor_native.SigningKey(seed(index))
        reference = SigningKey(seed(index))
        assert native.public_key == bytes(reference.verify_key)
        assert native.sign(message) == bytes(reference.sign(message).signature)


def test_signing_key_matches_rfc8032_test_vector_1() -> None:
    key = kubetensor_native.SigningKey(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    assert key.public_key.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert key.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_signing_key_refuses_a_seed_of_the_wrong_length(length: int) -> None:
    with pytest.raises(ValueError, match=f"32 bytes, got {length} bytes"):
        kubetensor_native.SigningKey(b"\1" * length)


def test_signing_key_repr_shows_no_seed() -> None:
    key = kubetensor_native.SigningKey(b"\x42" * 32)
    assert "42424242" not in repr(key)
    assert key.public_key.hex()[:16] in repr(key)


@pytest.mark.parametrize(
    "lists",
    [
        lambda k, m, s: ([k, k], [m], [s]),
        lambda k, m, s: ([k], [m, m], [s]),
        lambda k, m, s: ([k], [m], []),
    ],
)
def test_verify_batch_refuses_lists_of_different_lengths(
    lists: Callable[[bytes, bytes, bytes], tuple[list[bytes], list[bytes], list[bytes]]],
) -> None:
    with pytest.raises(ValueError, match="one item each per signature"):
        kubetensor_native.verify_batch(*lists(*valid_triple(1)))


def test_verify_batch_of_nothing_and_of_one() -> None:
    assert kubetensor_native.verify_batch([], [], []) == []
    public_key, message, signature = valid_triple(1)
    assert kubetensor_native.verify_batch([public_key], [message], [signature]) == [True]
    assert kubetensor_native.verify_batch([public_key], [message + b"x"], [signature]) == [False]
