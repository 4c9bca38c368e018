"""Pure pieces of the sandbox: node manifests, tool lookup, PKI, state files."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from kubetensor.sandbox import pki
from kubetensor.sandbox.controlplane import ControlPlaneState, NodePool, node_manifest
from kubetensor.sandbox.errors import SandboxStateError, ToolNotFoundError
from kubetensor.sandbox.tools import Tools, pinned_versions


def test_gpu_node_has_capacity_taint_and_labels() -> None:
    node = node_manifest(NodePool(prefix="g", count=1, gpus=4), 0)
    assert node["metadata"]["name"] == "g-0"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "4"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_cpu_node_has_no_gpu_and_no_taint() -> None:
    node = node_manifest(NodePool(prefix="c", count=1), 2)
    assert node["metadata"]["name"] == "c-2"
    assert "nvidia.com/gpu" not in node["status"]["capacity"]
    assert "taints" not in node["spec"]


def test_missing_tool_error_names_binary_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_CACHE", str(tmp_path))
    tools = Tools(bin_dir_override=None, versions={"ETCD_VERSION": "v9.9.9"})
    with pytest.raises(ToolNotFoundError) as info:
        tools.path("etcd")
    assert "etcd not found" in str(info.value)
    assert str(tmp_path / "bin" / "etcd-v9.9.9" / "etcd") in str(info.value)
    assert "make tools" in str(info.value)


def test_versions_file_pins_every_tool() -> None:
    versions = pinned_versions()
    for key in ("KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION", "NATS_SERVER_VERSION"):
        assert versions[key].startswith("v"), key
    assert versions["HELM_VERSION"].startswith("v3.")


def test_pki_issues_client_certs_with_user_and_group(tmp_path: Path) -> None:
    made = pki.create(tmp_path, clients={"admin": "system:masters", "system:kube-scheduler": None})
    cert = x509.load_pem_x509_certificate(made.clients["admin"].cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    ca = x509.load_pem_x509_certificate(made.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert (made.ca_key.stat().st_mode & 0o777) == 0o600


def test_state_load_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SandboxStateError, match=r"state\.json missing"):
        ControlPlaneState.load(tmp_path)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(SandboxStateError, match="not a control plane state file"):
        ControlPlaneState.load(tmp_path)
