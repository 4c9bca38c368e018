"""``python -m kubetensor.chain``: the chain sidecar process (the only composition root).

Settings (``KT_CHAIN_*``) -> authority key file (generated 0600 when absent) -> ledger (genesis block on
first start) -> ``ChainService`` -> gRPC server. On SIGTERM or SIGINT: health NOT_SERVING,
``server.stop(grace)`` lets in-flight RPCs finish, the writer commits what is queued, the ledger
closes. A SIGKILL at any instant is also safe: a block is one SQLite transaction, fsynced before any
write it holds is acknowledged, and the next start resumes from the last committed block.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from kubetensor.chain import keyfile
from kubetensor.chain.errors import ChainError
from kubetensor.chain.service import ChainService
from kubetensor.chain.servicer import SERVICE_NAME, create_server
from kubetensor.chain.settings import ChainSettings
from kubetensor.core import grpcserver

_log = logging.getLogger("kubetensor.chain")


def _write_ready_file(path: Path, *, address: str, port: int, authority: str) -> None:
    """Write the ready file atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(
        json.dumps({"address": address, "port": port, "pid": os.getpid(), "authority": authority})
    )
    partial.replace(path)


async def serve(settings: ChainSettings) -> None:
    """Run the chain sidecar until SIGTERM or SIGINT."""
    authority, created = keyfile.load_or_create(settings.authority_key_path)
    if created:
        _log.info(
            "generated a new authority key at %s (public key %s)",
            settings.authority_key_path,
            authority.hotkey,
        )
    service = ChainService.open(
        ledger_path=settings.ledger_path,
        authority=authority,
        genesis_balances=settings.genesis_balances,
        params=settings.params(),
        settlement_signers=settings.settlement_signers,
        max_batch=settings.max_batch,
    )
    try:
        health = grpcserver.Health([SERVICE_NAME])
        server, port = create_server(settings, service, health=health)
        await service.start()
        await server.start()
        await health.set_serving()
        host = settings.listen.rsplit(":", 1)[0]
        address = f"{host}:{port}"
        info = service.info()
        _log.info(
            "chain sidecar serving on %s (ledger %s, height %d, authority %s)",
            address,
            settings.ledger_path,
            info.height,
            info.authority,
        )
        if settings.ready_file is not None:
            _write_ready_file(settings.ready_file, address=address, port=port, authority=info.authority)
        received = await grpcserver.wait_for_termination()
        _log.info("%s received: draining for up to %.1fs", received, settings.grace_seconds)
        await health.set_not_serving()
        await server.stop(settings.grace_seconds)
    finally:
        await service.stop()
        _log.info("stopped")


def main() -> None:
    settings = ChainSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(settings))
    except ChainError as error:  # a ledger or key file that cannot be used: say why, no traceback
        _log.error("cannot start: %s", error)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
