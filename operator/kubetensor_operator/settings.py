"""``OperatorSettings``: every setting of the operator process, from ``KT_OPERATOR_*`` variables.

Loaded once by ``kubetensor_operator.__main__`` and passed down explicitly. Durations are seconds.
The one exception to the prefix: the operator's own standard ``OTEL_*`` variables (``otel_passthrough``)
become ``otel_env``, which the operator gives every container it creates, so one Helm value configures
tracing everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_IMAGE = "ghcr.io/kubetensor/kubetensor:0.1.0"
DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"

OTEL_PREFIX = "OTEL_"
OTEL_PER_PROCESS = frozenset({"OTEL_SERVICE_NAME"})
"""``OTEL_*`` variables never passed on: each component names its own service."""


def otel_passthrough(environ: Mapping[str, str]) -> dict[str, str]:
    """The standard OpenTelemetry variables of ``environ`` to pass to children (sorted, non-empty)."""
    return {
        name: value
        for name, value in sorted(environ.items())
        if name.startswith(OTEL_PREFIX) and name not in OTEL_PER_PROCESS and value
    }


class OperatorSettings(BaseSettings):
    """Settings of one operator process."""

    model_config = SettingsConfigDict(
        env_prefix="KT_OPERATOR_", frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    kubeconfig: Path | None = None
    """Kubeconfig file; unset: the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch (JSON list); empty: the whole cluster."""
    image: str = DEFAULT_IMAGE
    """kubetensor image for the consensus, chain, miner agent and validator containers (spec may override)."""
    vllm_image: str = DEFAULT_VLLM_IMAGE
    """vLLM image for a Miner's model server (``spec.vllm.image`` overrides)."""
    consensus_image: str = ""
    """Image of a Subnet's consensus container (``""``: ``image``; ``spec.image`` overrides)."""
    chain_image: str = ""
    """Image of a Subnet's chain sidecar (``""``: ``image``; ``spec.image`` overrides)."""
    miner_image: str = ""
    """Image of a Miner's agent container (``""``: ``image``; ``spec.agent.image`` overrides)."""
    validator_image: str = ""
    """Image of a Validator's container (``""``: ``image``; ``spec.image`` overrides)."""
    otel_env: dict[str, str] = Field(default_factory=lambda: otel_passthrough(os.environ))
    """OpenTelemetry variables set on every consensus, chain, miner agent and validator container
    (JSON object); default: the operator's own ``OTEL_*`` variables except ``OTEL_SERVICE_NAME``."""
    consensus_address_override: str = ""
    """host:port the operator dials for every Subnet's consensus service instead of its in-cluster
    Service (development and tests, where pods do not run); the pods themselves are not affected."""
    consensus_call_seconds: float = Field(default=5.0, gt=0)
    """Deadline of each call to a consensus service."""
    metagraph_ttl_seconds: float = Field(default=2.0, ge=0)
    """How long one fetched metagraph serves every resource of that subnet before it is fetched again."""
    release_retry_seconds: float = Field(default=10.0, gt=0)
    """Wait before a deleted resource's finalizer tries again to deregister its hotkey (consensus away)."""
    resync_seconds: float = Field(default=60.0, gt=0)
    """Interval of the timer that re-applies children (drift), retries registration and refreshes metrics."""
    request_seconds: float = Field(default=30.0, gt=0)
    """Timeout of each Kubernetes API request the operator makes itself."""
    liveness_endpoint: str = "http://0.0.0.0:8080/healthz"
    """kopf's liveness endpoint (``""``: none)."""
    metrics_listen: str = ""
    """host:port of the operator's Prometheus ``/metrics`` (``""``: none; the chart sets ``[::]:9090``)."""
    log_level: str = "INFO"
    """Python logging level name."""
    verbose_kopf: bool = False
    """Let kopf log at DEBUG (handler and patch details; never Secret contents, which it does not see)."""
