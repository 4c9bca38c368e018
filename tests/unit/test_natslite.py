"""``kubetensor.core.natslite`` on bytes alone: the protocol parser, headers, URLs (the client against a
real nats-server is in ``tests/integration/test_natslite.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubetensor.core import natslite
from kubetensor.core.natslite import NatsProtocolError, NatsUnsupportedError, Parser, Server


class Recorder:
    """A parser sink that records what it heard, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_message(self, sid: int, subject: str, reply: str, headers: bytes | None, data: bytes) -> None:
        self.events.append(("msg", sid, subject, reply, headers, data))

    def on_ping(self) -> None:
        self.events.append(("ping",))

    def on_pong(self) -> None:
        self.events.append(("pong",))

    def on_info(self, info: dict[str, Any]) -> None:
        self.events.append(("info", info))

    def on_error(self, text: str) -> None:
        self.events.append(("err", text))


STREAM = (
    b'INFO {"server_id":"x","max_payload":1048576,"headers":true}\r\n'
    b"MSG kt.a 1 5\r\nhello\r\n"
    b"MSG kt.b 2 _INBOX.r 0\r\n\r\n"
    b"HMSG kt.c 3 _INBOX.q 32 37\r\nNATS/1.0\r\ntraceparent: 00-ab\r\n\r\nworld\r\n"
    b"HMSG _INBOX.q.1 4 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    b"PING\r\nPONG\r\n+OK\r\n-ERR 'Permissions Violation for Publish to \"kt.x\"'\r\n"
    b"MSG kt.d 5 7\r\na\r\nb\r\nc\r\n"
)
EXPECTED = [
    ("info", {"server_id": "x", "max_payload": 1048576, "headers": True}),
    ("msg", 1, "kt.a", "", None, b"hello"),
    ("msg", 2, "kt.b", "_INBOX.r", None, b""),
    ("msg", 3, "kt.c", "_INBOX.q", b"NATS/1.0\r\ntraceparent: 00-ab\r\n\r\n", b"world"),
    ("msg", 4, "_INBOX.q.1", "", b"NATS/1.0 503\r\n\r\n", b""),
    ("ping",),
    ("pong",),
    ("err", 'Permissions Violation for Publish to "kt.x"'),
    ("msg", 5, "kt.d", "", None, b"a\r\nb\r\nc"),
]


def test_parser_reads_every_command_of_a_stream_in_one_piece() -> None:
    sink = Recorder()
    Parser(sink).feed(STREAM)
    assert sink.events == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_parser_reads_the_same_stream_cut_into_pieces(size: int) -> None:
    sink = Recorder()
    parser = Parser(sink)
    for start in range(0, len(STREAM), size):
        parser.feed(STREAM[start : start + size])
    assert sink.events == EXPECTED


def test_parser_waits_for_a_whole_payload_split_across_reads() -> None:
    sink = Recorder()
    parser = Parser(sink)
    payload = bytes(range(256)) * 300
    message = f"MSG kt.big 9 {len(payload)}\r\n".encode() + payload + b"\r\n"
    parser.feed(message[:10])
    parser.feed(message[10:40_000])
    assert sink.events == []
    parser.feed(message[40_000:] + b"PING\r\n")
    assert sink.events == [("msg", 9, "kt.big", "", None, payload), ("ping",)]


@pytest.mark.parametrize(
    "stream",
    [
        b"HELLO there\r\n",
        b"MSG kt.a 1\r\n",
        b"MSG kt.a 1 x\r\nhello\r\n",
        b"MSG kt.a 1 3\r\nhello\r\n",
        b"HMSG kt.a 1 40 36\r\n" + b"x" * 36 + b"\r\n",
        b"INFO not-json\r\n",
        b"MSG kt.a 1 " + b"9" * (natslite.MAX_CONTROL_LINE + 10),
    ],
)
def test_parser_refuses_what_is_not_the_protocol(stream: bytes) -> None:
    with pytest.raises(NatsProtocolError):
        Parser(Recorder()).feed(stream)


def test_headers_round_trip_through_encode_and_parse() -> None:
    headers = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "kt-message-type": "Task"}
    block = natslite.encode_headers(headers)
    assert block.startswith(b"NATS/1.0\r\n")
    assert block.endswith(b"\r\n\r\n")
    assert natslite.parse_headers(block) == headers


def test_parse_headers_reads_a_status_and_its_description() -> None:
    assert natslite.parse_headers(b"NATS/1.0 503\r\n\r\n") == {"Status": "503"}
    assert natslite.parse_headers(b"NATS/1.0 408 Request Timeout\r\nA: b\r\n\r\n") == {
        "Status": "408",
        "Description": "Request Timeout",
        "A": "b",
    }


def test_parse_headers_refuses_a_block_without_the_version_line() -> None:
    with pytest.raises(NatsProtocolError):
        natslite.parse_headers(b"HTTP/1.1 200\r\n\r\n")


@pytest.mark.parametrize(
    "headers", [{"a\r\nb": "x"}, {"a": "x\r\nPUB evil 1"}, {"a:b": "x"}, {"": "x"}, {"a b": "x"}]
)
def test_encode_headers_refuses_what_would_break_the_protocol(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="header"):
        natslite.encode_headers(headers)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nats://127.0.0.1:4333", Server("127.0.0.1", 4333)),
        ("nats://nats.kt.svc", Server("nats.kt.svc", 4222)),
        ("127.0.0.1:4333", Server("127.0.0.1", 4333)),
        ("nats://alice:s%40cret@host:1", Server("host", 1, user="alice", password="s@cret")),
        ("nats://t0ken@host:1", Server("host", 1, token="t0ken")),
    ],
)
def test_server_parse_reads_host_port_and_credentials(url: str, expected: Server) -> None:
    assert Server.parse(url) == expected


@pytest.mark.parametrize("url", ["tls://host:4222", "ws://host:8080", "wss://host"])
def test_server_parse_refuses_transports_the_lite_client_does_not_speak(url: str) -> None:
    with pytest.raises(NatsUnsupportedError, match="only nats://"):
        Server.parse(url)


def test_stream_fixture_is_consistent() -> None:
    # The HMSG sizes in STREAM are what a server would write for those headers and payloads.
    block = b"NATS/1.0\r\ntraceparent: 00-ab\r\n\r\n"
    assert (len(block), len(block) + len(b"world")) == (32, 37)
    assert json.loads(STREAM.split(b"\r\n")[0][5:])["headers"] is True
