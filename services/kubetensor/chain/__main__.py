"""``python -m kubetensor.chain``: the chain sidecar process (the only composition root).

Settings (``KT_CHAIN_*``) -> authority key file (generated 0600 when absent) -> ledger (genesis block on
first start) -> ``ChainService`` -> with ``backend=evm``, the anchor key file, the anchor store and an
``EvmAnchorer`` following the ledger -> gRPC server. On SIGTERM or SIGINT: health NOT_SERVING,
``server.stop(grace)`` lets in-flight RPCs finish, the anchorer stops (what it has not anchored stays
pending in its store for the next start), the writer commits what is queued, the ledger closes. A
SIGKILL at any instant is also safe: a block is one SQLite transaction, fsynced before any write it
holds is acknowledged, and the next start resumes from the last committed block (and the anchorer
from the last block it had scanned).
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from kubetensor.chain import keyfile
from kubetensor.chain.errors import ChainError
from kubetensor.chain.service import ChainService
from kubetensor.chain.servicer import SERVICE_NAME, create_server
from kubetensor.chain.settings import ChainSettings
from kubetensor.core import grpcserver, metrics, process

if TYPE_CHECKING:
    from kubetensor.chain.evm.anchorer import EvmAnchorer
    from kubetensor.chain.evm.store import AnchorStore

_log = logging.getLogger("kubetensor.chain")


def _anchorer(settings: ChainSettings, service: ChainService) -> tuple[EvmAnchorer, AnchorStore]:
    """The evm backend's anchorer and its store (KeyFileError or EvmSetupError if they cannot be used)."""
    # Imported here: the ledger backend does not pay web3's import time (most of a second).
    from kubetensor.chain.evm.anchorer import EvmAnchorer
    from kubetensor.chain.evm.contract import load_anchor_account
    from kubetensor.chain.evm.store import AnchorStore

    assert settings.evm_anchor_key_path is not None  # ChainSettings requires it with backend=evm
    account = load_anchor_account(settings.evm_anchor_key_path)
    store = AnchorStore.open(settings.evm_state_path, genesis_hash=service.info().genesis_hash)
    anchorer = EvmAnchorer(
        service=service,
        store=store,
        rpc_url=settings.evm_rpc_url,
        chain_id=settings.evm_chain_id,
        account=account,
        contract_address=settings.evm_contract_address or None,
        retry_initial=settings.evm_retry_initial_seconds,
        retry_max=settings.evm_retry_max_seconds,
        rpc_timeout=settings.evm_rpc_timeout_seconds,
        receipt_timeout=settings.evm_receipt_timeout_seconds,
    )
    return anchorer, store


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
    anchorer: EvmAnchorer | None = None
    store: AnchorStore | None = None
    endpoint = None
    try:
        if settings.metrics_listen:
            endpoint = metrics.serve(settings.metrics_listen, service.metrics.registry)
        if settings.backend == "evm":
            anchorer, store = _anchorer(settings, service)
        health = grpcserver.Health([SERVICE_NAME])
        server, port = create_server(settings, service, health=health)
        await service.start()
        if anchorer is not None:
            await anchorer.start()
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
            process.write_ready_file(
                settings.ready_file,
                address=address,
                port=port,
                authority=info.authority,
                metrics_port=endpoint.port if endpoint else 0,
            )
        received = await grpcserver.wait_for_termination()
        _log.info("%s received: draining for up to %.1fs", received, settings.grace_seconds)
        await health.set_not_serving()
        await server.stop(settings.grace_seconds)
    finally:
        if anchorer is not None:
            await anchorer.stop()
        if store is not None:
            store.close()
        await service.stop()
        if endpoint is not None:
            endpoint.stop()
        _log.info("stopped")


def main() -> None:
    settings = ChainSettings()
    process.configure_logging(settings.log_level)
    # web3 logs the full RPC URL, which may carry credentials or an API key (at INFO on disconnect,
    # with every response at DEBUG); the anchorer logs what matters with the URL redacted.
    logging.getLogger("web3").setLevel(max(logging.WARNING, logging.getLogger().level))
    # A ledger or key file that cannot be used: say why, no traceback.
    process.run(
        functools.partial(serve, settings),
        service_name="kubetensor-chain",
        log=_log,
        refusals=(ChainError,),
        refusal="cannot start",
        exit_code=1,
    )


if __name__ == "__main__":
    main()
