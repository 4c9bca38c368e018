"""``python -m kubetensor.validator``: the validator process (the only composition root).

Settings (``KT_VALIDATOR_*``) -> hotkey -> state file -> task plug-in -> NATS and consensus clients ->
``ValidatorService`` -> its round loop, plus a gRPC health server. On SIGTERM or SIGINT: health
NOT_SERVING, the round in progress gets ``grace_seconds`` to finish (its state is saved at its end),
then everything closes. A SIGKILL loses at most the round in progress: state is saved after each.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random

from kubetensor.consensus.client import ConsensusClient
from kubetensor.core import bus, grpcserver, metrics, natsauth, natslite, process
from kubetensor.validator.consensus import ConsensusAdapter
from kubetensor.validator.errors import ValidatorError
from kubetensor.validator.metrics import ValidatorMetrics
from kubetensor.validator.server import SERVICE_NAME, create_server
from kubetensor.validator.service import ValidatorService
from kubetensor.validator.settings import ENV_PREFIX, ValidatorSettings
from kubetensor.validator.state import StateFile
from kubetensor.validator.taskclient import MinerTaskClient
from kubetensor.validator.tasks import default_registry

_log = logging.getLogger("kubetensor.validator")


async def serve(settings: ValidatorSettings) -> None:
    """Run the validator until SIGTERM or SIGINT."""
    keypair = settings.keypair()
    nats_credentials = natsauth.for_service(
        settings.nats_url, auth_dir=settings.nats_auth_dir, setting=f"{ENV_PREFIX}NATS_AUTH_DIR"
    )
    task_kind = default_registry().get(settings.task_type)
    state_file = StateFile(settings.state_path, netuid=settings.netuid, hotkey=keypair.hotkey)
    state = state_file.load(alpha=settings.moving_average_alpha)
    if state.round:
        _log.info(
            "resuming from %s: round %d, moving averages for %d uids",
            settings.state_path,
            state.round,
            len(state.averages.entries),
        )
    consensus = ConsensusClient.connect(settings.consensus_address, netuid=settings.netuid, call_seconds=5.0)
    health = grpcserver.Health([SERVICE_NAME])
    server, port = create_server(settings, health=health)
    nc = None
    loop_task: asyncio.Task[None] | None = None
    stopping = asyncio.Event()
    endpoint = None
    try:
        nc = await bus.connect_tasks(
            settings.nats_url, name=f"validator-{keypair.hotkey[:12]}", credentials=nats_credentials
        )
        figures = ValidatorMetrics()
        service = ValidatorService(
            hotkey=keypair.hotkey,
            netuid=settings.netuid,
            task_kind=task_kind,
            sender=MinerTaskClient(nc, keypair=keypair, on_unsigned=figures.unsigned_reply),
            consensus=ConsensusAdapter(consensus, keypair=keypair),
            state_file=state_file,
            state=state,
            task_timeout_s=settings.task_timeout_seconds,
            sample_size=settings.sample_size,
            latency_weight=settings.latency_weight,
            weights_interval_s=settings.weights_interval_seconds,
            retry_s=settings.weights_retry_seconds,
            vpermit_stake_limit_rao=settings.vpermit_stake_limit_rao,
            rng=random.Random(settings.seed),
            metrics=figures,
        )
        if settings.metrics_listen:
            endpoint = metrics.serve(settings.metrics_listen, service.metrics.registry)
        await server.start()
        loop_task = asyncio.create_task(service.run(round_interval_s=settings.round_seconds, stop=stopping))
        await health.set_serving()
        address = f"{settings.listen.rsplit(':', 1)[0]}:{port}"
        _log.info(
            "validator %s... on subnet %d (task %s): a round every %.1fs, weights every %.0fs",
            keypair.hotkey[:16],
            settings.netuid,
            task_kind.name,
            settings.round_seconds,
            settings.weights_interval_seconds,
        )
        if settings.ready_file is not None:
            process.write_ready_file(
                settings.ready_file,
                address=address,
                port=port,
                hotkey=keypair.hotkey,
                metrics_port=endpoint.port if endpoint else 0,
            )
        stop = asyncio.create_task(grpcserver.wait_for_termination())
        done, _ = await asyncio.wait({stop, loop_task}, return_when=asyncio.FIRST_COMPLETED)
        if loop_task in done:
            stop.cancel()
            loop_task.result()  # the loop only ends by an error: raise it
        _log.info(
            "%s received: finishing the round in progress (up to %.1fs)",
            stop.result(),
            settings.grace_seconds,
        )
        await health.set_not_serving()
        stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(loop_task), timeout=settings.grace_seconds)
    finally:
        if loop_task is not None and not loop_task.done():
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        await server.stop(settings.grace_seconds)
        if nc is not None:
            await nc.close()
        await consensus.close()
        if endpoint is not None:
            endpoint.stop()
        _log.info("stopped")


def main() -> None:
    settings = ValidatorSettings()
    process.configure_logging(settings.log_level)
    process.run(
        functools.partial(serve, settings),
        service_name="kubetensor-validator",
        log=_log,
        refusals=(ValidatorError, ValueError, natslite.NatsServerError),
    )


if __name__ == "__main__":
    main()
