"""W3C trace context (``traceparent``): parse, start, continue, format. No tracing SDK needed.

The validator starts a trace per round and a span per task; the miner continues the span it receives
(``child``) and hands the result to vLLM and back to the validator in NATS headers
(``kubetensor.core.subjects.TRACEPARENT``). With OpenTelemetry off this module mints the ids, so the
context flows without an SDK; with it on, ``kubetensor.core.telemetry.current_trace`` gives the real
span's ids in this same type and these are the ones sent. Format (W3C Trace Context §3.2)::

    traceparent: 00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>

An all-zero trace-id or parent-id, a version ``ff`` or a malformed header is invalid and ignored.

The ids minted here come from ``random``'s generator (seeded from the OS, reseeded in a forked child),
not from ``secrets``: W3C asks trace and span ids to be unique and random, not secret, and a miner mints
one per task (``secrets`` makes a system call each time). Nothing is authorized by a trace id; the
validator's round ids and reply inboxes, which must not be guessed, use ``secrets`` themselves.

``TraceContext`` is an immutable ``NamedTuple``: the miner parses one and makes a child for every task,
and a frozen dataclass would set each field through ``object.__setattr__``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import NamedTuple

from kubetensor.core.subjects import TRACEPARENT

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_ONE_SPAN = "0" * 15 + "1"
_ONE_TRACE = "0" * 31 + "1"
SAMPLED = 0x01
_FLAGS_HEX = {flags: f"{flags:02x}" for flags in range(256)}


def _span_id() -> str:
    # Not all zero (W3C): a draw of 0, one in 2**64, becomes 1.
    span = random.randbytes(8).hex()
    return span if span != _ZERO_SPAN else _ONE_SPAN


class TraceContext(NamedTuple):
    """One span's identity in a trace."""

    trace_id: str
    """32 lowercase hex characters, not all zero."""
    span_id: str
    """16 lowercase hex characters, not all zero."""
    flags: int = SAMPLED
    """The 8 trace-flags bits (0-255)."""

    @classmethod
    def start(cls, *, sampled: bool = True) -> TraceContext:
        """A new trace with a new root span."""
        trace = random.randbytes(16).hex()
        return cls(trace if trace != _ZERO_TRACE else _ONE_TRACE, _span_id(), SAMPLED if sampled else 0)

    def child(self) -> TraceContext:
        """A new span in the same trace, whose parent is this span."""
        return TraceContext(self.trace_id, _span_id(), self.flags)

    def children(self, count: int) -> list[TraceContext]:
        """``count`` new spans whose parent is this span (``child`` ``count`` times, one random draw)."""
        ids = random.randbytes(8 * count).hex()
        trace_id, flags = self.trace_id, self.flags
        spans = (ids[i : i + 16] for i in range(0, 16 * count, 16))
        return [TraceContext(trace_id, span if span != _ZERO_SPAN else _ONE_SPAN, flags) for span in spans]

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` header value of this span."""
        # The flags' hex from a table: formatting them costs as much as the rest (a header per task).
        return f"00-{self.trace_id}-{self.span_id}-{_FLAGS_HEX[self.flags]}"

    @classmethod
    def parse(cls, value: str | None) -> TraceContext | None:
        """The context a ``traceparent`` value names, or None when it is absent or invalid."""
        if not value:
            return None
        # A value as this module writes it matches as it is; only others need stripping and lowering.
        match = _TRACEPARENT.fullmatch(value) or _TRACEPARENT.fullmatch(value.strip().lower())
        if match is None:
            return None
        version, trace_id, span_id, flags, rest = match.groups()
        # Version 00 has exactly four fields; a later version may append more (we read the first four).
        if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return cls(trace_id, span_id, int(flags, 16))

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> TraceContext | None:
        """The context in ``headers`` (case-insensitive ``traceparent``), or None."""
        if not headers:
            return None
        exact = headers.get(TRACEPARENT)
        if exact is not None:
            return cls.parse(exact)
        for name, value in headers.items():
            if name.lower() == TRACEPARENT:
                return cls.parse(value)
        return None
