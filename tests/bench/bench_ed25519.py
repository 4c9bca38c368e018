"""Benchmark of ed25519 on the network's hot paths: PyNaCl (libsodium) against kubetensor_native, same run.

Run by hand or by ``make bench`` as ``python tests/bench/bench_ed25519.py --out results.json``; imported by
``tests/bench/test_bench_ed25519_smoke.py``, which runs it tiny and checks the JSON shape.

Each operation runs as ``kubetensor.core.keys`` runs it on each backend, over messages of
``--message-bytes`` signed by distinct keys (a round's miners):

* ``sign``: one signature (PyNaCl's ``SigningKey.sign`` as the fallback signer does, against the native
  ``SigningKey.sign``), the key made once, as ``Keypair`` keeps it;
* ``verify``: one verification (PyNaCl's ``VerifyKey(key).verify``, against ``kubetensor_native.verify``);
* ``verify_batch_16``, ``verify_batch_64``: a group of 16 or 64 signatures (one PyNaCl verification each,
  as ``keys.verify_many`` did, against one ``kubetensor_native.verify_batch``), per signature;
* ``verify_batch_64_one_bad``: the same group with one forged signature, where the native batch fails
  and every signature is checked alone (its worst case), per signature.

The backends alternate round by round (``--repeats`` rounds of about ``--iterations`` signatures each),
so that both see the same machine load; the JSON holds each one's median microseconds per signature
over the rounds, and ``speedup`` = PyNaCl / native. The native module caches decoded public keys, as it
does for a validator whose miners keep their hotkeys. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

try:
    from tests.bench import support
except ModuleNotFoundError:  # run as a script: this folder is on sys.path (support finds kubetensor)
    import support

import kubetensor_native
from kubetensor.core import keys


def signed_group(size: int, *, message_bytes: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """``size`` (public key, message, signature) of distinct keys, as lists."""
    public_keys, messages, signatures = [], [], []
    for index in range(size):
        signer = kubetensor_native.SigningKey(hashlib.sha256(b"bench key %d" % index).digest())
        message = hashlib.shake_256(b"bench message %d" % index).digest(message_bytes)
        public_keys.append(signer.public_key)
        messages.append(message)
        signatures.append(signer.sign(message))
    return public_keys, messages, signatures


def operations(*, message_bytes: int) -> dict[str, tuple[int, Callable[[], object], Callable[[], object]]]:
    """Per operation: signatures per call, the PyNaCl call, the native call."""
    seed = hashlib.sha256(b"bench signer").digest()
    nacl_signer = keys._NaclSigner(seed)
    native_signer = kubetensor_native.SigningKey(seed)
    message = hashlib.shake_256(b"bench message").digest(message_bytes)
    public_key, signature = native_signer.public_key, native_signer.sign(message)
    table: dict[str, tuple[int, Callable[[], object], Callable[[], object]]] = {
        "sign": (1, lambda: nacl_signer.sign(message), lambda: native_signer.sign(message)),
        "verify": (
            1,
            lambda: keys._nacl_verify(public_key, message, signature),
            lambda: kubetensor_native.verify(public_key, message, signature),
        ),
    }
    for name, size, forged in (
        ("verify_batch_16", 16, False),
        ("verify_batch_64", 64, False),
        ("verify_batch_64_one_bad", 64, True),
    ):
        public_keys, messages, signatures = signed_group(size, message_bytes=message_bytes)
        if forged:
            messages[size // 2] += b"!"
        triples = list(zip(public_keys, messages, signatures, strict=True))

        def nacl_group(triples: list[tuple[bytes, bytes, bytes]] = triples) -> list[bool]:
            return [keys._nacl_verify(*triple) for triple in triples]

        def native_group(
            public_keys: list[bytes] = public_keys,
            messages: list[bytes] = messages,
            signatures: list[bytes] = signatures,
        ) -> list[bool]:
            return kubetensor_native.verify_batch(public_keys, messages, signatures)

        # The two must agree before either is timed.
        assert nacl_group() == native_group() == [not (forged and i == size // 2) for i in range(size)]
        table[name] = (size, nacl_group, native_group)
    assert native_signer.sign(message) == nacl_signer.sign(message)
    return table


def per_signature_us(call: Callable[[], object], *, calls: int, signatures: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - started) / 1000 / (calls * signatures)


def run_benchmark(*, repeats: int, iterations: int, message_bytes: int) -> dict[str, Any]:
    table = operations(message_bytes=message_bytes)
    results: dict[str, Any] = {}
    for name, (signatures, nacl_call, native_call) in table.items():
        calls = max(1, iterations // signatures)
        nacl_call(), native_call()  # warm-up (and the native key cache)
        nacl_us, native_us = [], []
        for round_index in range(repeats):
            # Alternate which backend goes first.
            order = [("pynacl", nacl_call), ("native", native_call)]
            for backend, call in order if round_index % 2 == 0 else reversed(order):
                sample = per_signature_us(call, calls=calls, signatures=signatures)
                (nacl_us if backend == "pynacl" else native_us).append(sample)
        pynacl, native = statistics.median(nacl_us), statistics.median(native_us)
        results[name] = {
            "signatures_per_call": signatures,
            "calls_per_round": calls,
            "pynacl_us_per_signature": pynacl,
            "native_us_per_signature": native,
            "speedup": pynacl / native,
        }
    return {
        "benchmark": "ed25519",
        "machine": support.machine(),
        "message_bytes": message_bytes,
        "repeats": repeats,
        "iterations": iterations,
        "operations": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="where to write the JSON results")
    parser.add_argument("--repeats", type=int, default=21, help="timed rounds per operation and backend")
    parser.add_argument(
        "--iterations", type=int, default=640, help="signatures per round (rounded to whole calls)"
    )
    parser.add_argument(
        "--message-bytes", type=int, default=256, help="bytes per signed message (a task response: ~200)"
    )
    args = parser.parse_args(argv)
    results = run_benchmark(
        repeats=args.repeats, iterations=args.iterations, message_bytes=args.message_bytes
    )
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for name, row in results["operations"].items():
        print(
            f"{name:>24}: PyNaCl {row['pynacl_us_per_signature']:7.2f} us, "
            f"native {row['native_us_per_signature']:7.2f} us per signature, {row['speedup']:.2f}x",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
