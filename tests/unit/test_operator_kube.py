"""Credentials and paths of ``kubetensor_operator.kube`` (no API server needed)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from kubetensor_operator import kube
from kubetensor_operator.errors import KubeConfigError


def write_kubeconfig(path: Path, user: dict[str, str]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443/",
                    "certificate-authority-data": base64.b64encode(b"CA").decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_token_kubeconfig_loads_and_keeps_the_token_out_of_repr(tmp_path: Path) -> None:
    credentials = kube.load_credentials(write_kubeconfig(tmp_path / "kc", {"token": "s3cr3t"}))
    assert credentials.server == "https://127.0.0.1:6443"
    assert credentials.ca_data == b"CA"
    assert credentials.current_token() == "s3cr3t"
    assert credentials.namespace == "team"
    assert "s3cr3t" not in repr(credentials)
    info = kube.connection_info(credentials)
    assert (info.scheme, info.token) == ("Bearer", "s3cr3t")


def test_client_certificate_files_are_read_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "c.crt").write_bytes(b"CERT")
    (tmp_path / "c.key").write_bytes(b"KEY")
    credentials = kube.load_credentials(
        write_kubeconfig(tmp_path / "kc", {"client-certificate": "c.crt", "client-key": "c.key"})
    )
    assert (credentials.cert_data, credentials.key_data) == (b"CERT", b"KEY")


def test_exec_credentials_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"exec": "aws"})
    with pytest.raises(KubeConfigError, match="exec and auth-provider credentials are not supported"):
        kube.load_credentials(path)


def test_a_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="cannot read kubeconfig"):
        kube.load_credentials(tmp_path / "absent")


def test_paths_of_core_grouped_cluster_scoped_and_subresources() -> None:
    assert kube.SECRETS.path("ns", "s") == "/api/v1/namespaces/ns/secrets/s"
    assert (
        kube.MINERS.path("ns", "m", "status") == "/apis/kubetensor.io/v1alpha1/namespaces/ns/miners/m/status"
    )
    assert kube.CRDS.path(None, "x") == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x"
    assert kube.resource_for({"apiVersion": "apps/v1", "kind": "Deployment"}) is kube.DEPLOYMENTS
    with pytest.raises(ValueError, match="does not handle"):
        kube.resource_for({"apiVersion": "v1", "kind": "Pod"})
