"""``python -m kubetensor_operator``: the operator process (the only composition root).

Settings (``KT_OPERATOR_*``) -> credentials -> Kubernetes client and consensus gateway -> runtime ->
handlers registry -> ``kopf.operator`` (standalone: one replica, ``Recreate``; kopf's peering is not
leader election). kopf handles SIGTERM/SIGINT: it stops the watches and lets running handlers finish.
``/metrics`` (``metrics_listen``, when set) is served while kopf runs and stopped when it returns.
"""

from __future__ import annotations

import asyncio
import logging

import kopf
from kubetensor.core import metrics, telemetry

from kubetensor_operator import handlers, kube
from kubetensor_operator.consensus import ConsensusGateway
from kubetensor_operator.errors import KubeConfigError
from kubetensor_operator.settings import OperatorSettings

_log = logging.getLogger("kubetensor_operator")


async def serve(settings: OperatorSettings) -> None:
    """Run the operator until it is signalled to stop."""
    credentials = kube.load_credentials(settings.kubeconfig)
    async with (
        kube.KubeClient(credentials, timeout=settings.request_seconds) as client,
        ConsensusGateway(
            call_seconds=settings.consensus_call_seconds, metagraph_ttl=settings.metagraph_ttl_seconds
        ) as gateway,
    ):
        runtime = handlers.Runtime.create(settings, kube_client=client, gateway=gateway)
        _log.info(
            "kubetensor operator for %s against %s",
            ", ".join(settings.namespaces) or "all namespaces",
            credentials.server,
        )
        endpoint = (
            metrics.serve(settings.metrics_listen, runtime.metrics.registry)
            if settings.metrics_listen
            else None
        )
        if endpoint is not None:
            _log.info("metrics on %s", endpoint.url)
        try:
            await kopf.operator(
                registry=handlers.build_registry(runtime),
                settings=handlers.kopf_settings(settings),
                standalone=True,
                clusterwide=not settings.namespaces,
                namespaces=settings.namespaces,
                liveness_endpoint=settings.liveness_endpoint or None,
            )
        finally:
            if endpoint is not None:
                endpoint.stop()


def main() -> None:
    settings = OperatorSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.verbose_kopf:
        logging.getLogger("kopf").setLevel(logging.DEBUG)
    else:
        # kopf logs every handler run at INFO (thousands a minute with many resources), httpx every
        # request and aiohttp every liveness probe; the operator logs what changed itself.
        for name in ("kopf.objects", "httpx", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
    tracing = telemetry.configure("kubetensor-operator")
    try:
        asyncio.run(serve(settings))
    except KubeConfigError as error:
        _log.error("not starting: %s", error)
        raise SystemExit(2) from None
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    main()
