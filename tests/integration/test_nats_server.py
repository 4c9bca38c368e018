"""The nats_server fixture runs a real nats-server with JetStream."""

from __future__ import annotations

from pathlib import Path

import nats
from kubetensor.sandbox.natsserver import NatsServer
from kubetensor.sandbox.processes import group_members
from kubetensor.sandbox.tools import Tools


async def test_jetstream_publish_then_consume_round_trips(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="KT_HARNESS", subjects=["kt.harness.>"])
        acks = [await js.publish(f"kt.harness.task.{i}", f"payload-{i}".encode()) for i in range(3)]
        assert [a.seq for a in acks] == [1, 2, 3]
        assert {a.stream for a in acks} == {"KT_HARNESS"}

        sub = await js.pull_subscribe("kt.harness.>", durable="harness-consumer")
        msgs = await sub.fetch(3, timeout=5)
        assert [m.data for m in msgs] == [b"payload-0", b"payload-1", b"payload-2"]
        for m in msgs:
            await m.ack_sync()  # waits for the server to record the ack
        info = await js.consumer_info("KT_HARNESS", "harness-consumer")
        assert info.num_ack_pending == 0
        assert info.delivered.stream_seq == 3
    finally:
        await nc.close()


async def test_request_reply_round_trips(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:

        async def echo(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(msg.data.upper())

        await nc.subscribe("kt.reqrep.echo", cb=echo)
        reply = await nc.request("kt.reqrep.echo", b"ping", timeout=5)
        assert reply.data == b"PING"
    finally:
        await nc.close()


def test_stop_leaves_no_process(tools: Tools, tmp_path: Path) -> None:
    server = NatsServer(tmp_path, tools=tools).start()
    pid = server.process.pid if server.process else 0
    assert group_members(pid) == [pid]
    server.stop()
    assert group_members(pid) == []
