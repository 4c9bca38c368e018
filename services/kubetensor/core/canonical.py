"""The canonical byte encoding every kubetensor hash and signature covers (settlements, blocks, digests).

Called by the consensus service (metagraph, weights and settlement digests) and the chain sidecar
(blocks, settlements, transaction fields): a settlement hash computed on either side must agree, so there
is exactly one definition, here. Hashes must be reproducible by anyone, in any language, from the values
alone, so the encoding is plain canonical JSON: UTF-8 (ASCII-escaped), object keys sorted, no whitespace,
and only integers, strings, booleans, null, arrays and objects. Floats are refused: every quantity that is
hashed is an integer (rao, blocks, u16 storage values, raw I32F32 fixed-point values), so no float
formatting question can ever change a hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

Canonical = None | bool | int | str | Sequence["Canonical"] | Mapping[str, "Canonical"]
"""A value the canonical encoding accepts."""


def _check(value: object, path: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: object keys must be strings, got {key!r}")
            _check(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    raise TypeError(f"{path}: only integers, strings, booleans, null, lists and dicts, got {value!r}")


def encode(value: Canonical) -> bytes:
    """The canonical JSON bytes of ``value`` (TypeError for a float or another unsupported value)."""
    _check(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def digest(value: Canonical) -> str:
    """Hex sha256 of ``encode(value)``."""
    return hashlib.sha256(encode(value)).hexdigest()
