"""Fixtures of the operator's e2e tests: a consensus process, the operator as a real background
process (running as its least-privilege service account, tracing into the session's Jaeger) and a
fresh namespace per test."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from kubetensor.sandbox.controlplane import ControlPlane
from kubetensor.sandbox.jaeger import JaegerServer
from kubetensor_operator import runner

from tests.operator_support import ConsensusProcess, OperatorHandle, kubectl

SESSION_OPERATOR = pytest.StashKey[OperatorHandle]()
"""The session's cluster-wide operator, once a test has started it (a test that must be the only
operator in the cluster stops it for a while)."""


@pytest.fixture(scope="session")
def operator_consensus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = ConsensusProcess(tmp_path_factory.mktemp("operator-consensus"))
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="session")
def operator(
    kube_cluster: ControlPlane,
    operator_consensus: str,
    jaeger: JaegerServer,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[OperatorHandle]:
    # The operator traces into the session's Jaeger (test_operator_tracing reads its reconcile spans).
    handle = OperatorHandle(
        directory=tmp_path_factory.mktemp("operator"),
        kubeconfig=kube_cluster.kubeconfig,
        consensus_address=operator_consensus,
        otlp_endpoint=jaeger.otlp_http_endpoint,
    )
    handle.start()
    pytestconfig.stash[SESSION_OPERATOR] = handle
    try:
        yield handle
    finally:
        del pytestconfig.stash[SESSION_OPERATOR]
        handle.stop()
        assert not runner.running(handle.directory), "the operator process outlived its fixture"


@pytest.fixture
def namespace(
    kube_cluster: ControlPlane, operator: OperatorHandle, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A namespace of its own for one test, deleted afterwards (the operator releases what is in it)."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    created = kubectl(kube_cluster, "create", "namespace", name)
    assert created.returncode == 0, created.stderr
    try:
        yield name
    finally:
        kubectl(kube_cluster, "delete", "namespace", name, "--wait=false")


@pytest.fixture
def cluster_wide_operator_paused(pytestconfig: pytest.Config) -> Iterator[None]:
    """The session's cluster-wide operator stopped for one test (when a test started it), then started
    again: a test that runs an operator of its own must be the only one acting on its resources."""
    handle = pytestconfig.stash.get(SESSION_OPERATOR, None)
    paused = handle is not None and runner.running(handle.directory)
    if handle is not None and paused:
        handle.stop()
    try:
        yield
    finally:
        if handle is not None and paused:
            handle.start(install=False)
