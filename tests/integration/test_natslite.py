"""``kubetensor.core.natslite.LiteClient`` against a real nats-server (and with nats.py on the other end):
publish/subscribe with headers, queue groups, requests and no-responders, a server restart, credentials
and refusals; and a validator's round to miners that both use it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.aio.client
import nats.aio.msg
import nats.errors
import pytest
from kubetensor.core import bus, natsauth, natslite
from kubetensor.core.natsauth import NatsCredentials
from kubetensor.core.natslite import Message
from kubetensor.core.tracecontext import TraceContext
from kubetensor.sandbox import pki
from kubetensor.sandbox.natsserver import NatsServer
from kubetensor.sandbox.processes import http_json
from kubetensor.sandbox.tools import Tools
from kubetensor.validator.rounds import Outcome
from kubetensor.validator.taskclient import MinerTaskClient

from tests import polling
from tests.bench.support import NETUID
from tests.network_support import addition_round, answer_for, keypair, running_miners

VALIDATOR = keypair(90)
MINERS = [keypair(91 + i) for i in range(3)]


@pytest.fixture
async def lite(nats_server: NatsServer) -> AsyncIterator[natslite.LiteClient]:
    client = await bus.connect_lite(nats_server.url, name="test-lite")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def natspy(nats_server: NatsServer) -> AsyncIterator[nats.aio.client.Client]:
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


async def test_publish_reaches_a_subscriber_with_its_headers_both_ways(
    lite: natslite.LiteClient, natspy: nats.aio.client.Client
) -> None:
    from_natspy: list[Message] = []
    await lite.subscribe("kt.lite.in", cb=from_natspy.append)
    await lite.flush()
    await natspy.publish("kt.lite.in", b"one", reply="kt.lite.reply", headers={"traceparent": "00-x"})
    await natspy.publish("kt.lite.in", b"two")
    await polling.eventually(lambda: len(from_natspy) == 2, what="both messages from nats.py", seconds=5)
    assert from_natspy[0] == Message("kt.lite.in", "kt.lite.reply", b"one", {"traceparent": "00-x"})
    assert from_natspy[1] == Message("kt.lite.in", "", b"two", None)

    to_natspy: list[nats.aio.msg.Msg] = []

    async def keep(msg: nats.aio.msg.Msg) -> None:
        to_natspy.append(msg)

    await natspy.subscribe("kt.lite.out", cb=keep)
    # nats.py's flush can overtake its own SUB (its PING is written at once, the SUB by its flusher):
    # probe until the subscription is live on the server.
    while not to_natspy:
        await lite.publish("kt.lite.out", b"probe")
        await asyncio.sleep(0.01)
    await lite.publish("kt.lite.out", b"\x00\r\nbinary", headers={"kt-message-type": "Task", "a": "b c"})
    await lite.publish("kt.lite.out", b"", reply="kt.lite.r")
    await polling.eventually(
        lambda: sum(m.data != b"probe" for m in to_natspy) == 2, what="both messages to nats.py", seconds=5
    )
    to_natspy[:] = [m for m in to_natspy if m.data != b"probe"]
    assert to_natspy[0].data == b"\x00\r\nbinary"
    assert to_natspy[0].headers == {"kt-message-type": "Task", "a": "b c"}
    assert (to_natspy[1].data, to_natspy[1].reply) == (b"", "kt.lite.r")


async def test_a_queue_group_gets_each_message_once_and_unsubscribe_stops_delivery(
    lite: natslite.LiteClient,
) -> None:
    first: list[Message] = []
    second: list[Message] = []
    sub = await lite.subscribe("kt.lite.q", "workers", cb=first.append)
    await lite.subscribe("kt.lite.q", "workers", cb=second.append)
    await lite.flush()
    for i in range(50):
        await lite.publish("kt.lite.q", str(i).encode())
    await lite.flush()
    await polling.eventually(
        lambda: len(first) + len(second) == 50, what="the 50 messages in the queue group", seconds=5
    )
    assert sorted(int(m.data) for m in first + second) == list(range(50))
    await sub.unsubscribe()
    await lite.flush()
    seen = len(first)
    for _ in range(10):
        await lite.publish("kt.lite.q", b"after")
    await polling.eventually(
        lambda: len(first) + len(second) == 60, what="the 60 messages in the queue group", seconds=5
    )
    assert len(first) == seen


async def test_request_gets_its_reply_or_no_responders_or_a_timeout(
    lite: natslite.LiteClient, natspy: nats.aio.client.Client
) -> None:
    async def echo(msg: nats.aio.msg.Msg) -> None:
        await natspy.publish(msg.reply, msg.data.upper(), headers=msg.headers)

    async def silent(msg: nats.aio.msg.Msg) -> None:
        pass

    await natspy.subscribe("kt.lite.echo", cb=echo)
    await natspy.subscribe("kt.lite.silent", cb=silent)
    # nats.py's flush can overtake its own SUBs: ask until the echo answers.
    for attempt in range(100):
        try:
            await lite.request("kt.lite.echo", b"probe", timeout=5)
            break
        except nats.errors.NoRespondersError:
            assert attempt < 99, "the echo never subscribed"
            await asyncio.sleep(0.01)
    replies = await asyncio.gather(
        *(
            lite.request("kt.lite.echo", f"ping{i}".encode(), timeout=5, headers={"n": str(i)})
            for i in range(20)
        )
    )
    assert [(r.data, r.headers) for r in replies] == [(f"PING{i}".encode(), {"n": str(i)}) for i in range(20)]
    with pytest.raises(nats.errors.NoRespondersError):
        await lite.request("kt.lite.nobody", b"x", timeout=5)
    with pytest.raises(nats.errors.TimeoutError):
        await lite.request("kt.lite.silent", b"x", timeout=0.2)
    assert lite._requests == {}


async def test_publish_refuses_an_oversized_payload_and_a_bad_subject(lite: natslite.LiteClient) -> None:
    with pytest.raises(ValueError, match="at most"):
        await lite.publish("kt.lite.big", b"x" * (lite.max_payload + 1))
    with pytest.raises(ValueError, match="whitespace"):
        await lite.publish("kt lite", b"x")
    with pytest.raises(ValueError, match="header"):
        await lite.publish("kt.lite", b"x", headers={"a": "b\r\nPUB x 1"})


async def test_publish_refuses_once_the_outbound_buffer_is_full(nats_server: NatsServer) -> None:
    client = await natslite.connect(nats_server.url, name="test-full", max_pending_bytes=4096)
    try:
        # Each message is 124 bytes ("PUB kt.lite.full 100", CRLF, the payload, CRLF): 33 fit in 4096.
        for _ in range(33):
            client.publish_nowait("kt.lite.full", b"x" * 100)
        with pytest.raises(natslite.OutboundBufferFullError):
            client.publish_nowait("kt.lite.full", b"x" * 100)
        # Once written out, there is room again.
        await asyncio.sleep(0)
        await client.publish("kt.lite.full", b"x" * 100)
        await client.flush()
    finally:
        await client.close()


def server_in_msgs(server: NatsServer, name: str) -> int:
    connections = http_json(f"http://127.0.0.1:{server.monitor_port}/connz")["connections"]
    return sum(int(c["in_msgs"]) for c in connections if c.get("name") == name)


async def test_a_publish_that_fills_the_write_batch_is_written_at_once(nats_server: NatsServer) -> None:
    client = await natslite.connect(nats_server.url, name="test-batch", write_batch_bytes=256)
    try:
        client.publish_nowait("kt.lite.batch", b"x" * 300)
        # No await: the event loop does not turn, yet the server has the message.
        deadline = time.monotonic() + 5
        while server_in_msgs(nats_server, "test-batch") < 1:
            assert time.monotonic() < deadline, "the message was not written"
            time.sleep(0.01)  # noqa: ASYNC251 (blocking on purpose: the loop must not turn)
    finally:
        await client.close()


async def test_a_server_restart_is_logged_and_healed_with_subscriptions_renewed(
    tools: Tools, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubetensor.core.natslite")
    server = NatsServer(tmp_path / "nats", tools=tools).start()
    client = await natslite.connect(server.url, name="test-restart", reconnect_wait_s=0.1)
    try:
        received: list[Message] = []
        await client.subscribe("kt.lite.restart", cb=received.append)
        await client.flush()
        port = server.port
        server.stop()
        await polling.eventually(
            lambda: not client.is_connected, what="the client to see the server go", seconds=5
        )
        with pytest.raises(natslite.NatsDisconnectedError):
            await client.publish("kt.lite.restart", b"lost")
        server.start(port=port)
        await polling.eventually(lambda: client.is_connected, what="the client to reconnect", seconds=15)
        await client.publish("kt.lite.restart", b"back")
        await polling.eventually(
            lambda: [m.data for m in received] == [b"back"], what="the message after the restart", seconds=5
        )
        messages = [record.getMessage() for record in caplog.records]
        assert any("test-restart: disconnected from NATS" in m for m in messages)
        assert any("test-restart: reconnected to NATS" in m for m in messages)
    finally:
        await client.close()
        server.stop()
    assert client.is_closed
    with pytest.raises(natslite.NatsDisconnectedError):
        await client.publish("kt.lite.restart", b"closed")


@pytest.fixture
def auth_server(tools: Tools, tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", tools=tools).start(extra_args=["--user", "kt", "--pass", "s3cret"])
    try:
        yield server
    finally:
        server.stop()


async def test_credentials_in_the_url_are_used_and_refusals_are_clear(auth_server: NatsServer) -> None:
    # Not NatsUnsupportedError: bus.connect_tasks must not fall back to nats.py, which has none either.
    with pytest.raises(natslite.NatsServerError, match="requires authentication and none was given"):
        await natslite.connect(auth_server.url, name="test-noauth")
    with pytest.raises(natslite.NatsServerError, match="Authorization Violation"):
        await natslite.connect(f"nats://kt:wrong@127.0.0.1:{auth_server.port}", name="test-badauth")
    client = await natslite.connect(f"nats://kt:s3cret@127.0.0.1:{auth_server.port}", name="test-auth")
    try:
        got: list[Message] = []
        await client.subscribe("kt.lite.auth", cb=got.append)
        await client.publish("kt.lite.auth", b"in")
        await polling.eventually(lambda: len(got) == 1, what="the message with credentials", seconds=5)
    finally:
        await client.close()


async def from_nats_py_to_lite(heavy: nats.aio.client.Client, lite: natslite.LiteClient) -> None:
    """One message from the nats.py client to the lean one, through the server both are connected to."""
    got: list[bytes] = []
    subscription = await bus.subscribe(lite, "kt.lite.creds", cb=lambda msg: got.append(msg.data))
    try:
        await lite.flush()
        await heavy.publish("kt.lite.creds", b"from nats.py")
        await polling.eventually(lambda: got == [b"from nats.py"], what="the message", seconds=5)
    finally:
        await subscription.unsubscribe()


@pytest.mark.parametrize("kind", ["token", "user"])
async def test_both_clients_take_credentials_with_any_characters_as_they_are(
    tools: Tools, tmp_path: Path, kind: str
) -> None:
    """Credentials from a service's folder go to nats.py and to the lean client as they are: neither
    reads them out of a URL, where ``:``, ``@`` and ``/`` would need escaping that nats.py does not undo."""
    secret = "p:w@d/x%41"
    flags = ["--auth", secret] if kind == "token" else ["--user", "kt", "--pass", secret]
    credentials = (
        NatsCredentials(token=secret) if kind == "token" else NatsCredentials(user="kt", password=secret)
    )
    server = NatsServer(tmp_path / "nats", tools=tools).start(extra_args=flags)
    try:
        heavy = await bus.connect(server.url, name="test-nats-py", credentials=credentials)
        lite = await bus.connect_lite(server.url, name="test-lite", credentials=credentials)
        try:
            await from_nats_py_to_lite(heavy, lite)
        finally:
            await heavy.close()
            await lite.close()
    finally:
        server.stop()


async def test_a_rotated_credentials_folder_is_read_again_when_reconnecting(
    tools: Tools, tmp_path: Path
) -> None:
    """The server comes back wanting a new token, and the folder (a mounted Secret, updated in place by
    the kubelet) holds it: both clients reconnect with it, without a restart."""
    folder = tmp_path / "nats-auth"
    folder.mkdir()
    (folder / "token").write_text("first-token")
    credentials = natsauth.NatsAuthFolder(folder, setting="KT_MINER_NATS_AUTH_DIR")
    first = NatsServer(tmp_path / "nats", tools=tools).start(extra_args=["--auth", "first-token"])
    second = NatsServer(tmp_path / "nats", tools=tools)
    try:
        heavy = await bus.connect(first.url, name="test-rotate-nats-py", credentials=credentials)
        lite = await bus.connect_lite(first.url, name="test-rotate-lite", credentials=credentials)
        try:
            first.stop()
            await polling.eventually(
                lambda: not (lite.is_connected or heavy.is_connected), what="both to see it go", seconds=5
            )
            (folder / "token").write_text("second-token")
            second.start(port=first.port, extra_args=["--auth", "second-token"])
            await polling.eventually(
                lambda: lite.is_connected and heavy.is_connected, what="both to reconnect", seconds=20
            )
            await from_nats_py_to_lite(heavy, lite)
        finally:
            await lite.close()
            await heavy.close()
    finally:
        # Whatever the clients did on the way out, no server outlives the test.
        first.stop()
        second.stop()


@contextlib.asynccontextmanager
async def fake_server(info: dict[str, object], *, answer_pings: int) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server that sends ``info`` to each connection and answers its first ``answer_pings`` PINGs
    only; yields its port and the number of connections so far (in a list)."""
    connections = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        import json

        writer.write(b"INFO " + json.dumps(info).encode() + b"\r\n")
        answered = 0
        try:
            while line := await reader.readline():
                if line.startswith(b"PING") and answered < answer_pings:
                    answered += 1
                    writer.write(b"PONG\r\n")
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()


async def test_a_server_that_requires_tls_is_refused() -> None:
    async with fake_server({"server_id": "x", "headers": True, "tls_required": True}, answer_pings=1) as (
        port,
        _,
    ):
        with pytest.raises(natslite.NatsUnsupportedError, match="TLS"):
            await natslite.connect(f"nats://127.0.0.1:{port}", name="test-tls")


async def test_a_connection_whose_pings_go_unanswered_is_dropped_and_made_again() -> None:
    async with fake_server({"server_id": "x", "headers": True}, answer_pings=1) as (port, connections):
        client = await natslite.connect(
            f"nats://127.0.0.1:{port}", name="test-stale", ping_interval_s=0.05, reconnect_wait_s=0.05
        )
        try:
            await polling.eventually(lambda: connections[0] >= 2, what="a second connection", seconds=5)
        finally:
            await client.close()


# -- a round over the lite client on both sides -------------------------------------------------------


async def test_a_round_over_lite_clients_is_answered_signed_and_traced(nats_server: NatsServer) -> None:
    miners_nc = await bus.connect_lite(nats_server.url, name="test-miners")
    validator_nc = await bus.connect_lite(nats_server.url, name="test-validator")
    try:
        # The last miner is not running: its task finds no responders.
        subscribers = await running_miners(miners_nc, MINERS[:-1], validator=VALIDATOR, registered=MINERS)
        await miners_nc.flush()
        sender = MinerTaskClient(validator_nc, keypair=VALIDATOR)
        trace = TraceContext.start()
        # The round waits for the down miner's task until its own deadline (a no-responders status is
        # unsigned): 1 s, well before the tasks' (5 s), so the replay below is still within its window.
        replies = await sender.send_round(
            sender.seal(addition_round(MINERS, netuid=NETUID, nonce=1)), timeout_s=1, trace=trace
        )
        assert [r.outcome for r in replies] == [Outcome.OK, Outcome.OK, Outcome.NO_RESPONDERS]
        assert [r.completion for r in replies[:2]] == [answer_for("47+85=")] * 2
        # This process does not trace: the miners answer without headers (docs/protocol.md).
        assert [r.trace for r in replies] == [None, None, None]
        # The same task again is a replay, refused; one task on its own goes as a request.
        [again, *_] = sender.seal(addition_round(MINERS, netuid=NETUID, nonce=1))
        assert (await sender.send(again, timeout_s=5, trace=trace)).outcome is Outcome.REFUSED
        [fresh, *_] = sender.seal(addition_round(MINERS, netuid=NETUID, nonce=100))
        assert (await sender.send(fresh, timeout_s=5, trace=trace)).outcome is Outcome.OK
        for subscriber in subscribers:
            await subscriber.stop(grace=1)
    finally:
        await validator_nc.close()
        await miners_nc.close()


async def test_services_fall_back_to_nats_py_for_tasks_on_a_tls_server(
    tools: Tools, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="kubetensor.core.bus")
    # The sandbox's CA and its server certificate for 127.0.0.1 (made for the control plane).
    certificates = pki.create(tmp_path / "pki", clients={})
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_cert))  # nats.py's default TLS context trusts it
    server = NatsServer(tmp_path / "nats", tools=tools).start(
        extra_args=[
            "--tls",
            "--tlscert",
            str(certificates.apiserver_cert),
            "--tlskey",
            str(certificates.apiserver_key),
        ]
    )
    try:
        # tls:// is refused by the lean client from the URL; nats:// by the server's INFO (tls_required).
        for url in (f"tls://127.0.0.1:{server.port}", server.url):
            client = await bus.connect_tasks(url, name="test-tls")
            try:
                assert isinstance(client, nats.aio.client.Client)

                async def echo(msg: nats.aio.msg.Msg) -> None:
                    await msg.respond(msg.data)

                await client.subscribe("kt.tls.echo", cb=echo)
                reply = await client.request("kt.tls.echo", b"over tls", timeout=5)
                assert reply.data == b"over tls"
            finally:
                await client.close()
    finally:
        server.stop()
    fallbacks = [
        r.getMessage() for r in caplog.records if "using nats.py for tasks instead" in r.getMessage()
    ]
    assert len(fallbacks) == 2
    assert "tls://" in fallbacks[0]
    assert "requires TLS" in fallbacks[1]
