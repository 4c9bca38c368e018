"""``python -m kubetensor.consensus``: the consensus process of one subnet (the only composition root).

Settings (``KT_CONSENSUS_*``) -> state file -> clock, stake source and settlement sink (the chain
sidecar when ``KT_CONSENSUS_CHAIN_ADDRESS`` is set, else genesis stake and the local log) -> service ->
gRPC server. On SIGTERM or SIGINT: health NOT_SERVING, ``server.stop(grace)`` lets in-flight RPCs
finish, the epoch and delivery tasks stop, the state file closes. A SIGKILL at any instant is also
safe: every change is one SQLite transaction, and the next start resumes from the last one.
"""

from __future__ import annotations

import functools
import logging
import time

from kubetensor.consensus.chainclient import ChainSidecar
from kubetensor.consensus.clock import WallClock
from kubetensor.consensus.errors import ConsensusError
from kubetensor.consensus.service import ConsensusService
from kubetensor.consensus.servicer import SERVICE_NAME, create_server
from kubetensor.consensus.settings import ConsensusSettings
from kubetensor.consensus.settlement import SettlementSink
from kubetensor.consensus.settlementlog import LocalSettlementLog
from kubetensor.consensus.stake import GenesisStake, StakeSource
from kubetensor.consensus.store import ConsensusStore
from kubetensor.core import grpcserver, metrics, process

_log = logging.getLogger("kubetensor.consensus")


async def serve(settings: ConsensusSettings) -> None:
    """Run the consensus process until SIGTERM or SIGINT."""
    store = ConsensusStore.open(
        settings.state_path, netuid=settings.netuid, block_ns=settings.block_ns, now_ns=time.time_ns()
    )
    endpoint = None
    try:
        clock = WallClock(
            genesis_ns=store.genesis_ns, block_ns=settings.block_ns, floor=store.highest_block()
        )
        sidecar = ChainSidecar.connect(settings.chain_address) if settings.chain_address else None
        stake_source: StakeSource = sidecar if sidecar else GenesisStake(settings.genesis_stake)
        sink: SettlementSink = sidecar if sidecar else LocalSettlementLog(store)
        service = ConsensusService(
            config=settings.config(), store=store, clock=clock, stake_source=stake_source, sink=sink
        )
        health = grpcserver.Health([SERVICE_NAME])
        server, port = create_server(settings, service, health=health)
        if settings.metrics_listen:
            endpoint = metrics.serve(settings.metrics_listen, service.metrics.registry)
        await service.start()
        await server.start()
        await health.set_serving()
        host = settings.listen.rsplit(":", 1)[0]
        address = f"{host}:{port}"
        _log.info(
            "consensus for subnet %d serving on %s (block %d, state %s)",
            settings.netuid,
            address,
            clock.block(),
            settings.state_path,
        )
        if settings.ready_file is not None:
            process.write_ready_file(
                settings.ready_file, address=address, port=port, metrics_port=endpoint.port if endpoint else 0
            )
        received = await grpcserver.wait_for_termination()
        _log.info("%s received: draining for up to %.1fs", received, settings.grace_seconds)
        await health.set_not_serving()
        await server.stop(settings.grace_seconds)
        await service.stop()
        if sidecar is not None:
            await sidecar.close()
        _log.info("stopped")
    finally:
        store.close()
        if endpoint is not None:
            endpoint.stop()


def main() -> None:
    settings = ConsensusSettings()
    process.configure_logging(settings.log_level)
    # A refusal to start (a state file of another subnet, ...) is one clear line, not a traceback.
    process.run(
        functools.partial(serve, settings),
        service_name="kubetensor-consensus",
        log=_log,
        refusals=(ConsensusError,),
    )


if __name__ == "__main__":
    main()
