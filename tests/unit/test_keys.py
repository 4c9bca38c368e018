"""ed25519 keys: one signature and a group of signatures checked at once."""

from __future__ import annotations

from kubetensor.core import keys
from kubetensor.core.keys import Keypair


def test_verify_many_says_which_signatures_of_a_group_verify_in_order() -> None:
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


def test_verify_many_refuses_keys_and_signatures_of_the_wrong_length() -> None:
    signer = Keypair(b"\x07" * 32)
    signature = signer.sign("TaskResponse", b"x")
    assert keys.verify_many(
        [
            (signer.public_key[:31], "TaskResponse", b"x", signature),
            (signer.public_key, "TaskResponse", b"x", signature[:63]),
            (signer.public_key, "TaskResponse", b"x", signature),
        ]
    ) == [False, False, True]
