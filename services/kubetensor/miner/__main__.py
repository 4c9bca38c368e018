"""``python -m kubetensor.miner``: the miner process (the only composition root).

Settings (``KT_MINER_*``) -> hotkey -> consensus client (permits) and engine client -> ``MinerService``
-> NATS subscriber and gRPC server. Health is NOT_SERVING until the engine lists its model and the
subscription is live. On SIGTERM or SIGINT: health NOT_SERVING, the subscription closes, in-flight
tasks and RPCs get ``grace_seconds``, then everything closes.
"""

from __future__ import annotations

import functools
import logging
import time

from kubetensor.consensus.client import ConsensusClient
from kubetensor.core import bus, grpcserver, metrics, natsauth, natslite, process
from kubetensor.core.metagraphview import MetagraphView, from_response
from kubetensor.miner.completions import CompletionsClient
from kubetensor.miner.errors import MinerError
from kubetensor.miner.permits import PermitCache
from kubetensor.miner.replay import open_guard
from kubetensor.miner.service import MinerService
from kubetensor.miner.servicer import SERVICE_NAME, create_server
from kubetensor.miner.settings import ENV_PREFIX, MinerSettings
from kubetensor.miner.subscriber import REPLY_WRITE_BATCH_BYTES, TaskSubscriber

_log = logging.getLogger("kubetensor.miner")


async def serve(settings: MinerSettings) -> None:
    """Run the miner until SIGTERM or SIGINT."""
    keypair = settings.keypair()
    nats_credentials = natsauth.for_service(
        settings.nats_url, auth_dir=settings.nats_auth_dir, setting=f"{ENV_PREFIX}NATS_AUTH_DIR"
    )
    consensus = ConsensusClient.connect(settings.consensus_address, netuid=settings.netuid, call_seconds=5.0)
    engine = CompletionsClient(
        base_url=settings.engine_url,
        model=settings.engine_model,
        api_key=settings.engine_api_key.get_secret_value() if settings.engine_api_key else None,
        request_seconds=settings.engine_request_seconds,
        max_connections=settings.max_concurrency,
    )

    async def fetch() -> MetagraphView:
        return from_response(await consensus.metagraph())

    permits = PermitCache(
        fetch,
        netuid=settings.netuid,
        refresh_seconds=settings.permit_refresh_seconds,
        miss_refresh_seconds=settings.permit_miss_refresh_seconds,
    )
    service = MinerService(
        keypair=keypair,
        netuid=settings.netuid,
        engine=engine,
        permits=permits,
        max_concurrency=settings.max_concurrency,
        max_ahead_ms=round(settings.max_ahead_seconds * 1000),
        max_tokens_limit=settings.max_tokens_limit,
        replay_guard=open_guard(
            settings.state_dir, hotkey=keypair.hotkey, now_unix_ms=int(time.time() * 1000)
        ),
    )
    service.metrics.watch_engine(settings.engine_url.rstrip("/") + "/metrics")
    health = grpcserver.Health([SERVICE_NAME])
    server, port = create_server(settings, service, health=health)
    nc = None
    subscriber = None
    endpoint = None
    try:
        if settings.metrics_listen:
            endpoint = metrics.serve(settings.metrics_listen, service.metrics.registry)
        await server.start()
        model = await engine.wait_ready(within_seconds=settings.engine_wait_seconds)
        await permits.start()
        nc = await bus.connect_tasks(
            settings.nats_url,
            name=f"miner-{keypair.hotkey[:12]}",
            write_batch_bytes=REPLY_WRITE_BATCH_BYTES,
            credentials=nats_credentials,
        )
        subscriber = TaskSubscriber(nc, service, max_pending=settings.max_pending_tasks)
        await subscriber.start()
        await health.set_serving()
        address = f"{settings.listen.rsplit(':', 1)[0]}:{port}"
        _log.info(
            "miner %s... on subnet %d: tasks on %s, engine %s (%s), gRPC on %s",
            keypair.hotkey[:16],
            settings.netuid,
            subscriber.subject,
            settings.engine_url,
            model,
            address,
        )
        if settings.ready_file is not None:
            process.write_ready_file(
                settings.ready_file,
                address=address,
                port=port,
                hotkey=keypair.hotkey,
                metrics_port=endpoint.port if endpoint else 0,
            )
        received = await grpcserver.wait_for_termination()
        _log.info("%s received: draining for up to %.1fs", received, settings.grace_seconds)
        await health.set_not_serving()
    finally:
        if subscriber is not None:
            await subscriber.stop(grace=settings.grace_seconds)
        await server.stop(settings.grace_seconds)
        if nc is not None:
            await nc.close()
        await permits.stop()
        await engine.close()
        await consensus.close()
        if endpoint is not None:
            endpoint.stop()
        _log.info("stopped")


def main() -> None:
    settings = MinerSettings()
    process.configure_logging(settings.log_level)
    # A refusal to start (no hotkey, an engine that never came up, a NATS server that refuses the miner)
    # is one clear line, not a traceback.
    process.run(
        functools.partial(serve, settings),
        service_name="kubetensor-miner",
        log=_log,
        refusals=(MinerError, ValueError, natslite.NatsServerError),
    )


if __name__ == "__main__":
    main()
