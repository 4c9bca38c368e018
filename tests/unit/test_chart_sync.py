"""The chart's copies stay in step with their sources (``make chart``): its CRDs are byte-identical to
``manifests/crds/``, its RBAC rules are ``manifests/rbac/``'s, and ``manifests/install/kubetensor.yaml``
is the chart rendered with default values by the pinned helm."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import yaml

from tests.chart_support import CHART, ROOT, documents, helm_path, one, render

CRDS = ROOT / "manifests" / "crds"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_tool", ROOT / "tools" / "chart.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_crds_are_byte_identical_to_manifests_crds() -> None:
    source = {p.name: p.read_bytes() for p in CRDS.glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert source, "no CRDs in manifests/crds"
    assert set(chart) == set(source), "run `make chart`: the chart's CRD files differ from manifests/crds/"
    drifted = sorted(name for name in source if chart[name] != source[name])
    assert not drifted, f"run `make chart`: the chart's copies of {drifted} differ from manifests/crds/"


def test_sync_copies_changed_crds_and_removes_stale_ones(tmp_path: Path) -> None:
    tool = load_tool()
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    (source / "a.yaml").write_text("kind: A\n")
    (source / "b.yaml").write_text("kind: B\n")
    (target / "a.yaml").write_text("kind: A-edited-by-hand\n")
    (target / "b.yaml").write_text("kind: B\n")
    (target / "gone.yaml").write_text("kind: Gone\n")
    changed = tool.sync_crds(source, target)
    assert sorted(p.name for p in changed) == ["a.yaml", "gone.yaml"]
    assert sorted(p.name for p in target.iterdir()) == ["a.yaml", "b.yaml"]
    assert (target / "a.yaml").read_text() == "kind: A\n"
    assert tool.sync_crds(source, target) == []


def test_install_yaml_is_the_chart_rendered_with_default_values() -> None:
    tool = load_tool()
    fresh = tool.render_install(helm_path())
    committed = (ROOT / "manifests" / "install" / "kubetensor.yaml").read_text()
    assert committed == fresh, "run `make chart`: manifests/install/kubetensor.yaml is stale"


def test_install_yaml_holds_the_namespace_the_crds_and_the_operator() -> None:
    objects = list(documents(ROOT / "manifests" / "install" / "kubetensor.yaml"))
    kinds = [o["kind"] for o in objects]
    assert kinds[0] == "Namespace"
    assert objects[0]["metadata"]["name"] == "kubetensor-system"
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert crds == {"subnets.kubetensor.io", "miners.kubetensor.io", "validators.kubetensor.io"}
    # CRDs before anything that could use them; everything namespaced lives in the namespace.
    assert max(i for i, k in enumerate(kinds) if k == "CustomResourceDefinition") < kinds.index("Deployment")
    for o in objects:
        if o["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"]["namespace"] == "kubetensor-system", o["metadata"]["name"]


def test_chart_rbac_rules_are_manifests_rbac_rules() -> None:
    plain = list(yaml.safe_load_all((ROOT / "manifests" / "rbac" / "operator.yaml").read_text()))
    expected = one(plain, "ClusterRole")["rules"]
    rendered = render()
    assert one(rendered, "ClusterRole")["rules"] == expected
    # The default release reproduces manifests/rbac/ exactly: same names, same subject.
    assert one(rendered, "ClusterRoleBinding")["subjects"] == one(plain, "ClusterRoleBinding")["subjects"]
    assert one(rendered, "ClusterRole")["metadata"]["name"] == one(plain, "ClusterRole")["metadata"]["name"]
