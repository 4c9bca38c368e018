"""``kubetensor_native``'s Merkle tree against ``kubetensor.core.merkle``'s Python one (the specification):
the same roots and proofs for random trees, and the same verdicts on random damage to the proofs."""

from __future__ import annotations

import random

import kubetensor_native
from kubetensor.core import merkle


def test_this_process_uses_the_native_implementation() -> None:
    # make venv builds kubetensor_native: the fallback must not be what the tests run by accident.
    assert merkle.BACKEND == "native"


def damaged(proof: tuple[bytes, ...], rng: random.Random) -> list[bytes]:
    """``proof`` with one random kind of damage."""
    out = list(proof)
    kind = rng.randrange(5)
    if kind == 0 and out:
        i = rng.randrange(len(out))
        node = bytearray(out[i])
        node[rng.randrange(32)] ^= 1 << rng.randrange(8)
        out[i] = bytes(node)
    elif kind == 1 and out:
        out.pop(rng.randrange(len(out)))
    elif kind == 2:
        out.insert(rng.randrange(len(out) + 1), rng.randbytes(32))
    elif kind == 3 and out:
        i = rng.randrange(len(out))
        out[i] = out[i][: rng.randrange(32)] + out[i][32:] + rng.randbytes(rng.choice([0, 2]))
    else:
        out.reverse()
    return out


def test_native_and_python_agree_on_random_trees_and_damaged_proofs() -> None:
    rng = random.Random(7)
    for count in [*range(1, 40), 63, 64, 65, 100, 129]:
        members = [rng.randbytes(rng.randrange(0, 200)) for _ in range(count)]
        root, proofs = kubetensor_native.merkle_tree(members)
        assert (root, proofs) == merkle.python_tree(members)
        for index in rng.sample(range(count), min(count, 5)):
            item, proof = members[index], proofs[index]
            assert kubetensor_native.merkle_verify(root, item, proof)
            assert kubetensor_native.merkle_verify(root, item, list(proof))
            for _ in range(4):
                bad = damaged(proof, rng)
                assert kubetensor_native.merkle_verify(root, item, bad) == merkle.python_verify(
                    root, item, bad
                )
            other = rng.randbytes(len(item))
            assert kubetensor_native.merkle_verify(root, other, proof) == merkle.python_verify(
                root, other, proof
            )
            assert not kubetensor_native.merkle_verify(root[:31], item, proof)
