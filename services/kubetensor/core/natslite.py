"""A lean asyncio client of the core NATS protocol, for the hot path of rounds.

``connect`` returns a ``LiteClient``; ``kubetensor.core.bus.connect_lite`` is how the miner and the
validator get theirs (their ``TaskSubscriber`` and ``MinerTaskClient`` also take a nats.py client, as the
tests and the devnet pass). nats.py stays for everything else (JetStream, the devnet's monitor, the
tests): this client speaks only the core protocol (INFO, CONNECT with headers and no-responders,
PING/PONG, SUB/UNSUB, PUB/HPUB, MSG/HMSG, -ERR), which is all a round needs, at a fraction of nats.py's
cost per message (nats.py queues each message to a per-subscription task and parses headers line by
line in Python; a round sends and answers thousands a second):

* a message is parsed in ``data_received`` and handed at once to its subscription's callback, a plain
  function (it must not block: the miner's starts a task, the validator's only records the reply);
* a publish appends to an output buffer that is written once per event-loop turn (one ``send`` per
  burst of messages, as nats.py's flusher does, without its queue and task), or at once when it holds
  ``write_batch_bytes`` (so a reader starts on a long burst before its end);
* it reconnects forever (``reconnect_wait_s`` between attempts over the URLs given, comma-separated;
  the servers a cluster announces in its INFO are not added),
  logging the disconnect and the reconnect, and subscribes again; a publish while disconnected raises
  ``NatsDisconnectedError`` (nats.py would buffer it: a round's task then fails at once instead of
  waiting out its deadline); pings the server every ``ping_interval_s`` and drops a connection that
  left ``max_outstanding_pings`` unanswered;
* refuses what it does not do, when connecting: TLS (a ``tls://`` URL, or a server that requires it:
  ``NatsUnsupportedError``); authenticates with a user and password or a token only, in the URL or
  given to ``connect`` (a server that wants credentials and gets none, or refuses them:
  ``NatsServerError``).

Outbound flow control: a publish raises ``OutboundBufferFullError`` once more than
``max_pending_bytes`` wait to be written (the server, not this client, then is the slow one). Inbound,
the server is the guard: a client that does not read fast enough is dropped as a slow consumer, and
this one reconnects.

``Parser`` is the protocol's read side on bytes alone (``tests/unit/test_natslite.py`` feeds it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import re
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import nats.errors

from kubetensor.core.natsauth import NatsCredentials

_log = logging.getLogger(__name__)

CRLF = b"\r\n"
STATUS_HEADER = "Status"
"""The header a status message's code goes in (as nats.py names it: ``nats.js.api.Header.STATUS``)."""
DESCRIPTION_HEADER = "Description"
NO_RESPONDERS_STATUS = "503"
"""The status of the message the server sends a request's reply subject when nobody is subscribed."""

FLUSH_TIMEOUT_S = 10.0
"""How long ``LiteClient.flush`` waits for the server's PONG."""
MAX_CONTROL_LINE = 4096
"""Bytes a protocol line may take before its CRLF (the server's default ``max_control_line``)."""
_HEADER_PREFIX = "NATS/1.0"
_BAD_HEADER_NAME = re.compile(r"[\r\n: ]")
_GOOD_NAMES: set[str] = set()
"""Header names already checked (a few constants in practice; at most ``_GOOD_NAMES_KEPT`` kept)."""
_GOOD_NAMES_KEPT = 256


def _bad_subject(subject: str) -> bool:
    # Empty, or with whitespace (a space, or a character ``isprintable`` refuses: tabs, line breaks,
    # other separators): two scans in C, a regular expression's cost several times over.
    return not subject or " " in subject or not subject.isprintable()


class NatsLiteError(Exception):
    """Base of this client's errors."""


class NatsProtocolError(NatsLiteError):
    """The server sent something that is not the NATS protocol; the connection is dropped."""


class NatsServerError(NatsLiteError):
    """The server refused the connection (``-ERR`` while connecting: authorization, ...)."""


class NatsUnsupportedError(NatsLiteError):
    """The URL or the server asks for something this client does not do (TLS)."""


class NatsDisconnectedError(NatsLiteError, ConnectionError):
    """Not connected (reconnecting, or closed): nothing was sent."""


class OutboundBufferFullError(NatsLiteError):
    """More than ``max_pending_bytes`` wait to be written to the server: nothing was sent."""


@dataclass(slots=True)
class Message:
    """A message from the server (the attributes nats.py's ``Msg`` has too)."""

    subject: str
    reply: str
    data: bytes
    headers: dict[str, str] | None


Handler = Callable[[Message], None]
"""A subscription's callback: called in the read path for each message, so it must not block."""


def parse_headers(block: bytes) -> dict[str, str]:
    """The headers of an ``HMSG`` (``NATS/1.0[ <status>[ <description>]]`` then ``Name: value`` lines).

    A status goes under ``Status`` and its description under ``Description``, as nats.py puts them.
    NatsProtocolError when the block does not start with the version line.
    """
    text = block.decode("utf-8", "replace")
    first, _, rest = text.partition("\r\n")
    if not first.startswith(_HEADER_PREFIX):
        raise NatsProtocolError(f"headers: expected {_HEADER_PREFIX!r}, got {first[:32]!r}")
    headers: dict[str, str] = {}
    status = first[len(_HEADER_PREFIX) :].strip()
    if status:
        code, _, description = status.partition(" ")
        headers[STATUS_HEADER] = code
        if description:
            headers[DESCRIPTION_HEADER] = description.strip()
    for line in rest.split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip()] = value.strip()
    return headers


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """The header block of an ``HPUB``; ValueError for a name or value that would break the protocol."""
    lines = [_HEADER_PREFIX]
    for name, value in headers.items():
        if name not in _GOOD_NAMES:
            if not name or _BAD_HEADER_NAME.search(name):
                raise ValueError(f"header {name!r}: a name needs no ':', space or line break")
            if len(_GOOD_NAMES) < _GOOD_NAMES_KEPT:
                _GOOD_NAMES.add(name)
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {name!r}: a value needs no line break")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode()


class Sink(Protocol):
    """What ``Parser`` tells of what it read (``LiteClient``, or a test's recorder)."""

    def on_message(self, sid: int, subject: str, reply: str, headers: bytes | None, data: bytes) -> None: ...

    def on_ping(self) -> None: ...

    def on_pong(self) -> None: ...

    def on_info(self, info: dict[str, Any]) -> None: ...

    def on_error(self, text: str) -> None: ...


class Parser:
    """The server-to-client protocol on bytes: ``feed`` what arrives, in any pieces; the ``sink`` hears
    of every complete message and command, in order. NatsProtocolError on anything else (then the
    parser is spent: the connection must go)."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._rest = bytearray()
        self._needed = 0

    def feed(self, data: bytes) -> None:
        if self._rest:
            self._rest += data
            if len(self._rest) < self._needed:
                return
            data = bytes(self._rest)
            self._rest.clear()
        self._needed = 0
        sink = self._sink
        pos = 0
        end = len(data)
        while pos < end:
            eol = data.find(CRLF, pos)
            if eol < 0:
                if end - pos > MAX_CONTROL_LINE:
                    raise NatsProtocolError(f"a protocol line longer than {MAX_CONTROL_LINE} bytes")
                break
            if data.startswith(b"HMSG ", pos):
                args = data[pos + 5 : eol].split(b" ")
                if len(args) == 5:
                    subject, sid, reply, header_size, total_size = args
                elif len(args) == 4:
                    subject, sid, header_size, total_size = args
                    reply = b""
                else:
                    raise NatsProtocolError(f"bad HMSG line: {data[pos:eol][:200]!r}")
                try:
                    head, total = int(header_size), int(total_size)
                except ValueError:
                    raise NatsProtocolError(f"bad HMSG sizes: {data[pos:eol][:200]!r}") from None
                start = eol + 2
                stop = start + total
                if stop + 2 > end:
                    self._needed = stop + 2 - pos
                    break
                if data[stop : stop + 2] != CRLF or not 0 <= head <= total:
                    raise NatsProtocolError("an HMSG's payload does not end where its size says")
                sink.on_message(
                    int(sid),
                    subject.decode(),
                    reply.decode(),
                    data[start : start + head],
                    data[start + head : stop],
                )
                pos = stop + 2
            elif data.startswith(b"MSG ", pos):
                args = data[pos + 4 : eol].split(b" ")
                if len(args) == 4:
                    subject, sid, reply, size = args
                elif len(args) == 3:
                    subject, sid, size = args
                    reply = b""
                else:
                    raise NatsProtocolError(f"bad MSG line: {data[pos:eol][:200]!r}")
                try:
                    total = int(size)
                except ValueError:
                    raise NatsProtocolError(f"bad MSG size: {data[pos:eol][:200]!r}") from None
                start = eol + 2
                stop = start + total
                if stop + 2 > end:
                    self._needed = stop + 2 - pos
                    break
                if data[stop : stop + 2] != CRLF:
                    raise NatsProtocolError("a MSG's payload does not end where its size says")
                sink.on_message(int(sid), subject.decode(), reply.decode(), None, data[start:stop])
                pos = stop + 2
            else:
                line = data[pos:eol]
                pos = eol + 2
                verb = line[:4].upper()
                if verb == b"PING":
                    sink.on_ping()
                elif verb == b"PONG":
                    sink.on_pong()
                elif verb == b"+OK":
                    pass
                elif verb == b"INFO":
                    try:
                        info = json.loads(line[5:])
                    except ValueError:
                        raise NatsProtocolError(f"bad INFO: {line[:200]!r}") from None
                    if not isinstance(info, dict):
                        raise NatsProtocolError(f"bad INFO: {line[:200]!r}")
                    sink.on_info(info)
                elif verb == b"-ERR":
                    sink.on_error(line[4:].decode("utf-8", "replace").strip().strip("'"))
                else:
                    raise NatsProtocolError(f"unknown protocol line: {line[:200]!r}")
        if pos < end:
            self._rest += data[pos:]


@dataclass(frozen=True, slots=True)
class Server:
    """One server of the URL list: where, and the credentials its URL carries."""

    host: str
    port: int
    user: str = ""
    password: str = ""
    token: str = ""

    @classmethod
    def parse(cls, url: str) -> Server:
        """``nats://[user:password@ | token@]host[:port]``; NatsUnsupportedError for ``tls://`` and other
        schemes, ValueError for a malformed URL."""
        parsed = urllib.parse.urlsplit(url.strip() if "://" in url else f"nats://{url.strip()}")
        if parsed.scheme != "nats":
            raise NatsUnsupportedError(
                f"NATS URL {url!r}: only nats:// is supported by the lite client (no TLS); got "
                f"{parsed.scheme}://"
            )
        if not parsed.hostname:
            raise ValueError(f"NATS URL {url!r}: no host")
        user = urllib.parse.unquote(parsed.username or "")
        password = urllib.parse.unquote(parsed.password or "")
        if user and parsed.password is None:
            return cls(parsed.hostname, parsed.port or 4222, token=user)
        return cls(parsed.hostname, parsed.port or 4222, user=user, password=password)


class LiteSubscription:
    """One subscription of a ``LiteClient`` (``unsubscribe`` as nats.py's has it)."""

    def __init__(self, client: LiteClient, sid: int, *, subject: str, queue: str, cb: Handler) -> None:
        self._client = client
        self.sid = sid
        self.subject = subject
        self.queue = queue
        self.cb = cb

    async def unsubscribe(self) -> None:
        """Stop receiving (at once here; the server stops sending when it reads the UNSUB)."""
        self._client._unsubscribe(self)


class _Connection(asyncio.Protocol):
    """One TCP connection: bytes to the client's parser, and the loss to the client."""

    def __init__(self, client: LiteClient) -> None:
        self._client = client
        self.parser = Parser(client)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an ``asyncio.Transport`` subclass, but has its methods).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except NatsProtocolError as error:
            _log.warning("%s: %s; dropping the connection", self._client.name, error)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._client._connection_lost(self, exc)


Credentials = Callable[[], NatsCredentials]
"""Gives the credentials to connect with (``kubetensor.core.natsauth``), asked at every connect."""


class LiteClient:
    """A connection to NATS for publishing and subscribing: see the module doc. Made by ``connect``."""

    def __init__(
        self,
        servers: list[Server],
        *,
        name: str,
        connect_timeout_s: float,
        reconnect_wait_s: float,
        ping_interval_s: float,
        max_outstanding_pings: int,
        max_pending_bytes: int,
        write_batch_bytes: int,
        credentials: Credentials | None = None,
    ) -> None:
        if not servers:
            raise ValueError("servers: at least one NATS URL is needed")
        self.name = name
        self._servers = servers
        self._credentials = credentials
        self._next_server = 0
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_wait_s = reconnect_wait_s
        self._ping_interval_s = ping_interval_s
        self._max_outstanding_pings = max_outstanding_pings
        self._max_pending_bytes = max_pending_bytes
        self._write_batch_bytes = write_batch_bytes or max_pending_bytes
        self._loop = asyncio.get_running_loop()
        self._connection: _Connection | None = None
        self._transport: asyncio.Transport | None = None
        self._handshake: asyncio.Future[dict[str, Any]] | None = None
        self._info: dict[str, Any] = {}
        self._max_payload = 1024 * 1024
        self._subscriptions: dict[int, LiteSubscription] = {}
        self._sids = 0
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._write_scheduled = False
        self._pongs: collections.deque[asyncio.Future[None] | None] = collections.deque()
        self._outstanding_pings = 0
        self._closed = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._inbox_prefix = f"_INBOX.{secrets.token_hex(11)}"
        self._requests: dict[str, asyncio.Future[Message]] = {}
        self._request_prefix: str | None = None

    # -- state ----------------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._transport is not None and not self._closed

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def max_payload(self) -> int:
        """The most bytes one message may carry (the server's ``max_payload``)."""
        return self._max_payload

    # -- connecting -----------------------------------------------------------------------------------

    async def _open(self, server: Server) -> None:
        """Connect to ``server``, handshake, subscribe again to every subscription; NatsLiteError,
        OSError or TimeoutError when it fails (the connection is closed again then)."""
        if self._credentials is not None and not (server.user or server.token):
            # Asked at every (re)connect: a rotated Secret's new files are used once the server wants them.
            now = self._credentials()
            server = dataclasses.replace(server, user=now.user, password=now.password, token=now.token)
        self._handshake = self._loop.create_future()
        transport: asyncio.Transport | None = None
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                transport, connection = await self._loop.create_connection(
                    lambda: _Connection(self), server.host, server.port
                )
                self._connection = connection
                info = await self._handshake
                self._check_server(info, server)
                options: dict[str, Any] = {
                    "verbose": False,
                    "pedantic": False,
                    "tls_required": False,
                    "name": self.name,
                    "lang": "python3-kubetensor-lite",
                    "version": "1",
                    "protocol": 1,
                    "headers": True,
                    "no_responders": True,
                    "echo": True,
                }
                if server.token:
                    options["auth_token"] = server.token
                elif server.user:
                    options["user"], options["pass"] = server.user, server.password
                lines = [b"CONNECT " + json.dumps(options).encode() + CRLF]
                lines += [self._sub_line(sub) for sub in self._subscriptions.values()]
                pong: asyncio.Future[None] = self._loop.create_future()
                self._pongs.append(pong)
                transport.write(b"".join([*lines, b"PING\r\n"]))
                # -ERR (authorization, ...) fails the handshake, and the server closes the connection.
                await pong
        except BaseException:
            if transport is not None:
                transport.abort()
            self._connection = None
            self._handshake = None
            raise
        self._handshake = None
        self._info = info
        self._max_payload = int(info.get("max_payload", self._max_payload))
        self._transport = transport
        self._outstanding_pings = 0
        if self._out:
            self._schedule_write()

    def _check_server(self, info: dict[str, Any], server: Server) -> None:
        if info.get("tls_required"):
            raise NatsUnsupportedError(
                f"the NATS server at {server.host}:{server.port} requires TLS, which the lite client does "
                "not do"
            )
        if info.get("auth_required") and not (server.token or server.user):
            # Not NatsUnsupportedError: nats.py, which bus.connect_tasks falls back to, has no credentials
            # either; the answer is to give some (nkeys and JWT credentials are not supported).
            raise NatsServerError(
                f"the NATS server at {server.host}:{server.port} requires authentication and none was "
                "given: a user and password or a token (the service's NATS_AUTH_DIR setting)"
            )
        if not info.get("headers", False):
            raise NatsUnsupportedError(
                f"the NATS server at {server.host}:{server.port} does not support headers (nats-server 2.2+)"
            )

    async def _connect_first(self) -> None:
        errors: list[str] = []
        for _ in self._servers:
            server = self._take_server()
            try:
                await self._open(server)
            except (NatsUnsupportedError, NatsServerError):
                raise
            except (OSError, TimeoutError, NatsLiteError) as error:
                errors.append(f"{server.host}:{server.port}: {str(error) or type(error).__name__}")
                continue
            self._pinger = self._loop.create_task(self._ping_forever())
            return
        raise NatsDisconnectedError("could not connect to NATS: " + "; ".join(errors))

    def _take_server(self) -> Server:
        server = self._servers[self._next_server % len(self._servers)]
        self._next_server += 1
        return server

    def _connection_lost(self, connection: _Connection, exc: Exception | None) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        self._transport = None
        # What was not written yet went with the connection (subscriptions are sent again on reconnect).
        self._out = []
        self._out_bytes = 0
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(NatsDisconnectedError("the server closed the connection"))
        self._fail_pongs(NatsDisconnectedError("disconnected from NATS"))
        if self._closed or self._handshake is not None:
            return
        _log.warning(
            "%s: disconnected from NATS (%s); reconnecting", self.name, exc or "closed by the server"
        )
        self._reconnecting = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._reconnect_wait_s)
            server = self._take_server()
            try:
                await self._open(server)
            except (OSError, TimeoutError, NatsLiteError) as error:
                _log.debug("%s: reconnecting to %s:%d failed: %s", self.name, server.host, server.port, error)
                continue
            _log.info("%s: reconnected to NATS", self.name)
            return

    def _fail_pongs(self, error: Exception) -> None:
        pongs, self._pongs = self._pongs, collections.deque()
        for pong in pongs:
            if pong is not None and not pong.done():
                pong.set_exception(error)

    async def _ping_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._ping_interval_s)
            transport = self._transport
            if transport is None:
                continue
            if self._outstanding_pings >= self._max_outstanding_pings:
                _log.warning(
                    "%s: %d pings unanswered: dropping the connection", self.name, self._outstanding_pings
                )
                transport.abort()
                continue
            self._outstanding_pings += 1
            self._pongs.append(None)
            transport.write(b"PING\r\n")

    # -- what the parser reads ------------------------------------------------------------------------

    def on_message(self, sid: int, subject: str, reply: str, headers: bytes | None, data: bytes) -> None:
        subscription = self._subscriptions.get(sid)
        if subscription is None:
            return  # unsubscribed; the server had sent it before it read the UNSUB
        message = Message(subject, reply, data, parse_headers(headers) if headers else None)
        try:
            subscription.cb(message)
        except Exception:
            _log.exception("%s: the callback of %s failed", self.name, subscription.subject)

    def on_ping(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.write(b"PONG\r\n")

    def on_pong(self) -> None:
        self._outstanding_pings = 0
        if self._pongs:
            pong = self._pongs.popleft()
            if pong is not None and not pong.done():
                pong.set_result(None)

    def on_info(self, info: dict[str, Any]) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(info)
        elif "max_payload" in info:
            self._max_payload = int(info["max_payload"])

    def on_error(self, text: str) -> None:
        if self._pongs and self._transport is None:
            # While connecting: the server refuses us (and closes the connection).
            self._fail_pongs(NatsServerError(f"the NATS server refused the connection: {text}"))
            return
        _log.warning("%s: NATS error: %s", self.name, text)

    # -- subscribing ----------------------------------------------------------------------------------

    @staticmethod
    def _sub_line(sub: LiteSubscription) -> bytes:
        if sub.queue:
            return f"SUB {sub.subject} {sub.queue} {sub.sid}\r\n".encode()
        return f"SUB {sub.subject} {sub.sid}\r\n".encode()

    async def subscribe(self, subject: str, queue: str = "", *, cb: Handler) -> LiteSubscription:
        """Subscribe ``cb`` to ``subject`` (in ``queue``'s group when given); it receives each message in
        the read path and must not block. Live on the server once a ``flush`` after it returns."""
        if _bad_subject(subject) or (queue and _bad_subject(queue)):
            raise ValueError(f"subject {subject!r} / queue {queue!r}: no whitespace, not empty")
        self._check_open()
        self._sids += 1
        sub = LiteSubscription(self, self._sids, subject=subject, queue=queue, cb=cb)
        self._subscriptions[sub.sid] = sub
        if self._transport is not None:
            self._enqueue(self._sub_line(sub))
        return sub

    def _unsubscribe(self, sub: LiteSubscription) -> None:
        if self._subscriptions.pop(sub.sid, None) is not None and self._transport is not None:
            self._enqueue(f"UNSUB {sub.sid}\r\n".encode())

    # -- publishing -----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise NatsDisconnectedError("the NATS connection is closed")

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        """Send ``payload`` to ``subject`` (with ``reply`` and ``headers`` when given), in this event loop
        turn's write. NatsDisconnectedError when not connected, OutboundBufferFullError when the server
        does not keep up, ValueError for a bad subject, header or an oversized payload."""
        self.publish_nowait(subject, payload, reply=reply, headers=headers)

    def publish_nowait(
        self, subject: str, payload: bytes, *, reply: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        """``publish``, from synchronous code."""
        if self._transport is None:
            self._check_open()
            raise NatsDisconnectedError("not connected to NATS (reconnecting)")
        if _bad_subject(subject) or (reply and _bad_subject(reply)):
            raise ValueError(f"subject {subject!r} / reply {reply!r}: no whitespace, not empty")
        size = len(payload)
        if headers:
            block = encode_headers(headers)
            total = len(block) + size
            if total > self._max_payload:
                raise ValueError(f"payload: {total} bytes, the server takes at most {self._max_payload}")
            line = (
                f"HPUB {subject} {reply} {len(block)} {total}\r\n"
                if reply
                else (f"HPUB {subject} {len(block)} {total}\r\n")
            )
            data = b"".join((line.encode(), block, payload, CRLF))
        else:
            if size > self._max_payload:
                raise ValueError(f"payload: {size} bytes, the server takes at most {self._max_payload}")
            line = f"PUB {subject} {reply} {size}\r\n" if reply else f"PUB {subject} {size}\r\n"
            data = b"".join((line.encode(), payload, CRLF))
        self._enqueue(data)

    def _enqueue(self, data: bytes) -> None:
        transport = self._transport
        buffered = self._out_bytes + (transport.get_write_buffer_size() if transport is not None else 0)
        if buffered + len(data) > self._max_pending_bytes:
            raise OutboundBufferFullError(
                f"{buffered} bytes wait to be written to NATS already (at most {self._max_pending_bytes})"
            )
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= self._write_batch_bytes:
            # Enough for one write already: the reader gets it now, not when this loop turn ends.
            self._write()
        elif not self._write_scheduled:
            self._schedule_write()

    def _schedule_write(self) -> None:
        self._write_scheduled = True
        self._loop.call_soon(self._write_soon)

    def _write_soon(self) -> None:
        self._write_scheduled = False
        self._write()

    def _write(self) -> None:
        transport = self._transport
        if transport is None or not self._out:
            return
        out, self._out = self._out, []
        self._out_bytes = 0
        transport.write(b"".join(out))

    async def flush(self) -> None:
        """Return once the server has read everything sent so far (a PING and its PONG); TimeoutError
        after ``FLUSH_TIMEOUT_S``."""
        if self._transport is None:
            self._check_open()
            raise NatsDisconnectedError("not connected to NATS (reconnecting)")
        pong: asyncio.Future[None] = self._loop.create_future()
        self._enqueue(b"PING\r\n")
        self._pongs.append(pong)
        async with asyncio.timeout(FLUSH_TIMEOUT_S):
            await pong

    # -- requests -------------------------------------------------------------------------------------

    def new_inbox(self) -> str:
        """A subject of this client's own, for replies."""
        return f"{self._inbox_prefix}.{secrets.token_hex(8)}"

    # ``timeout`` as nats.py names it: MinerTaskClient takes either client.
    async def request(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float = 0.5,  # noqa: ASYNC109
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Send a request and return its reply; nats.errors.NoRespondersError when nobody is subscribed,
        nats.errors.TimeoutError when no reply comes within ``timeout`` seconds (as nats.py does)."""
        if self._request_prefix is None:
            prefix = f"{self.new_inbox()}."
            await self.subscribe(f"{prefix}*", cb=self._on_response)
            self._request_prefix = prefix
        inbox = f"{self._request_prefix}{secrets.token_hex(8)}"
        future: asyncio.Future[Message] = self._loop.create_future()
        self._requests[inbox] = future
        try:
            self.publish_nowait(subject, payload, reply=inbox, headers=headers)
            try:
                async with asyncio.timeout(timeout):
                    message = await future
            except TimeoutError:
                raise nats.errors.TimeoutError from None
        finally:
            self._requests.pop(inbox, None)
        if message.headers and message.headers.get(STATUS_HEADER) == NO_RESPONDERS_STATUS:
            raise nats.errors.NoRespondersError
        return message

    def _on_response(self, message: Message) -> None:
        future = self._requests.pop(message.subject, None)
        if future is not None and not future.done():
            future.set_result(message)

    # -- closing --------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Write what is buffered, close the connection, stop reconnecting; idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in (self._reconnecting, self._pinger):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._write()
        connection = self._connection
        if connection is not None and connection.transport is not None:
            connection.transport.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._connect_timeout_s):
                    await connection.lost
        self._connection = None
        self._transport = None
        self._subscriptions.clear()
        self._fail_pongs(NatsDisconnectedError("the NATS connection is closed"))
        for future in self._requests.values():
            if not future.done():
                future.set_exception(NatsDisconnectedError("the NATS connection is closed"))
        self._requests.clear()


async def connect(
    url: str,
    *,
    name: str,
    connect_timeout_s: float = 5.0,
    reconnect_wait_s: float = 1.0,
    ping_interval_s: float = 120.0,
    max_outstanding_pings: int = 2,
    max_pending_bytes: int = 8 * 1024 * 1024,
    write_batch_bytes: int = 0,
    credentials: Credentials | None = None,
) -> LiteClient:
    """A ``LiteClient`` connected to the first server of ``url`` (comma-separated ``nats://`` URLs) that
    answers (``write_batch_bytes``: see the module doc; 0 writes once per loop turn only);
    NatsDisconnectedError when none does, NatsUnsupportedError/NatsServerError when a server needs what
    this client does not do or refuses it. ``credentials()`` gives the credentials of every server whose
    URL has none of its own, asked again at each connect and reconnect."""
    servers = [Server.parse(part) for part in url.split(",") if part.strip()]
    client = LiteClient(
        servers,
        name=name,
        connect_timeout_s=connect_timeout_s,
        reconnect_wait_s=reconnect_wait_s,
        ping_interval_s=ping_interval_s,
        max_outstanding_pings=max_outstanding_pings,
        max_pending_bytes=max_pending_bytes,
        write_batch_bytes=write_batch_bytes,
        credentials=credentials,
    )
    await client._connect_first()
    return client
