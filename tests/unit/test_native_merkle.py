"""``kubetensor_native``'s Merkle tree against ``kubetensor.core.merkle``'s Python one (the specification):
the same roots and proofs for random trees, and the same verdicts on random damage to the proofs."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

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


def test_a_native_module_built_before_the_tree_falls_back_to_python(tmp_path: Path) -> None:
    # A kubetensor_native from older sources (ed25519 only): the tree runs in Python, with a warning
    # that says how to rebuild it, instead of failing every round on a missing function.
    (tmp_path / "kubetensor_native.py").write_text(
        "def verify(public_key, message, signature):\n    return False\n"
    )
    script = (
        "import logging; logging.basicConfig()\n"
        "from kubetensor.core import merkle\n"
        "root, proofs = merkle.tree([b'a', b'b', b'c'])\n"
        "print(merkle.BACKEND, merkle.verify(root, b'b', proofs[1]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["python", "True"]
    assert "has no Merkle tree" in done.stderr
    assert "make venv" in done.stderr
