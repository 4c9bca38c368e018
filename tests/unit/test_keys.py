"""ed25519 keys: one signature and a group of signatures checked at once, on either backend."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import kubetensor_native
import pytest
from kubetensor.core import keys
from kubetensor.core.keys import Keypair


@pytest.fixture(params=["native", "pynacl"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on the native module and on the PyNaCl fallback (as without the module)."""
    if request.param == "pynacl":
        monkeypatch.setattr(keys, "kubetensor_native", None)
    return str(request.param)


def test_native_backend_is_active_in_the_project_venv() -> None:
    # `make venv` builds and installs kubetensor_native; a silent fallback to PyNaCl would fail here.
    assert keys.BACKEND == "native"
    assert keys.kubetensor_native is kubetensor_native


def test_keys_fall_back_to_pynacl_with_one_warning_without_the_native_module() -> None:
    # None in sys.modules makes `import kubetensor_native` fail as if it were not installed.
    script = (
        "import sys; sys.modules['kubetensor_native'] = None\n"
        "from kubetensor.core import keys\n"
        "pair = keys.Keypair(bytes(range(32)))\n"
        "signature = pair.sign('D', b'x')\n"
        "key = pair.public_key\n"
        "print(keys.BACKEND, signature.hex(), keys.verify(key, 'D', b'x', signature),\n"
        "      keys.verify_many([(key, 'D', b'x', signature), (key, 'D', b'y', signature)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    native = Keypair(bytes(range(32))).sign("D", b"x")
    assert done.stdout.split(maxsplit=2) == ["pynacl", native.hex(), "True [True, False]\n"]
    assert done.stderr.count("the kubetensor_native module is not installed") == 1


def test_sign_and_verify_on_either_backend(backend: str) -> None:
    pair = Keypair(b"\x05" * 32)
    signature = pair.sign("TaskResponse", b"answer")
    # The same bytes as the other backend's (deterministic RFC 8032 signatures).
    message = keys.signing_bytes("TaskResponse", b"answer")
    other = keys._NaclSigner(pair.seed) if backend == "native" else kubetensor_native.SigningKey(pair.seed)
    assert signature == other.sign(message)
    assert pair.public_key == other.public_key
    assert keys.verify(pair.public_key, "TaskResponse", b"answer", signature)
    assert not keys.verify(pair.public_key, "TaskResponse", b"answex", signature)
    assert not keys.verify(pair.public_key, "SetWeights", b"answer", signature)
    assert not keys.verify(bytes.fromhex("01" + "00" * 31), "TaskResponse", b"answer", signature)


def test_verify_many_says_which_signatures_of_a_group_verify_in_order(backend: str) -> None:
    signers = [Keypair(bytes([index + 1]) * 32) for index in range(5)]
    checks = [
        (
            signer.public_key,
            "TaskResponse",
            f"answer {index}".encode(),
            signer.sign("TaskResponse", f"answer {index}".encode()),
        )
        for index, signer in enumerate(signers)
    ]
    forged = list(checks)
    forged[1] = (checks[1][0], "TaskResponse", b"another answer", checks[1][3])  # payload changed
    forged[3] = (checks[4][0], "TaskResponse", checks[3][2], checks[3][3])  # another key
    forged[4] = (checks[4][0], "SetWeights", checks[4][2], checks[4][3])  # another domain

    assert keys.verify_many(checks) == [True] * 5
    assert keys.verify_many(forged) == [True, False, True, False, False]
    assert keys.verify_many([]) == []


def test_verify_many_refuses_keys_and_signatures_of_the_wrong_length(backend: str) -> None:
    signer = Keypair(b"\x07" * 32)
    signature = signer.sign("TaskResponse", b"x")
    assert keys.verify_many(
        [
            (signer.public_key[:31], "TaskResponse", b"x", signature),
            (signer.public_key, "TaskResponse", b"x", signature[:63]),
            (signer.public_key, "TaskResponse", b"x", signature),
        ]
    ) == [False, False, True]


def test_keypair_copies_and_pickles_after_signing(backend: str) -> None:
    pair = Keypair(b"\x09" * 32)
    signature = pair.sign("RoundReport", b"r")
    for clone in (copy.deepcopy(pair), copy.copy(pair), pickle.loads(pickle.dumps(pair))):
        assert clone == pair
        assert clone.sign("RoundReport", b"r") == signature
        assert clone.hotkey == pair.hotkey


def test_a_derived_secret_is_the_seeds_alone_and_one_per_purpose(backend: str) -> None:
    pair = Keypair(b"\x09" * 32)
    secret = pair.derive_secret("queue")
    assert len(secret) == 16
    assert pair.derive_secret("queue") == secret == Keypair(b"\x09" * 32).derive_secret("queue")
    assert pair.derive_secret("other purpose") != secret
    assert Keypair(b"\x0a" * 32).derive_secret("queue") != secret
    # Nothing public gives it: not the hotkey's bytes, nor an unkeyed hash of the purpose.
    assert secret not in (pair.public_key, pair.seed)
    assert len(pair.derive_secret("queue", size=64)) == 64


@pytest.mark.parametrize(
    ("purpose", "size", "message"), [("", 16, "purpose"), ("queue", 15, "size"), ("queue", 65, "size")]
)
def test_derive_secret_refuses_an_empty_purpose_or_a_bad_size(purpose: str, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Keypair(b"\x09" * 32).derive_secret(purpose, size=size)
