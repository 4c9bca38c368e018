"""Helpers of the Helm chart tests: the pinned helm binary, rendering with values, picking objects.

helm runs with a scratch HOME (no user settings or plugins) and, against a cluster, an explicit
kubeconfig; a failing command raises ``HelmError`` with helm's stderr (which names a bad value's field).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubetensor.sandbox.tools import Tools

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kubetensor"
CI_VALUES = CHART / "ci"

Manifest = dict[str, Any]


class HelmError(Exception):
    """A helm command failed; ``stderr`` is what it said."""

    def __init__(self, args: Sequence[str], stderr: str) -> None:
        self.stderr = stderr
        super().__init__(f"helm {' '.join(args)} failed:\n{stderr}")


def helm_path() -> Path:
    return Tools.discover().path("helm")


def helm(*args: str, kubeconfig: Path | None = None, timeout: float = 300) -> str:
    """Run the pinned helm; its stdout (``HelmError`` when it fails)."""
    with tempfile.TemporaryDirectory(prefix="kt-helm-home-") as home:
        env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        done = subprocess.run(
            [str(helm_path()), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    if done.returncode != 0:
        raise HelmError(args, done.stderr)
    return done.stdout


def values_file(directory: Path, values: Manifest, name: str = "values.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(values))
    return path


def render(
    *value_files: Path,
    release: str = "kubetensor",
    namespace: str = "kubetensor-system",
    include_crds: bool = False,
    api_versions: Sequence[str] = (),
) -> list[Manifest]:
    """``helm template`` of the chart with ``value_files`` (in order), parsed. ``api_versions`` are what
    the pretend cluster serves besides Kubernetes' own (``monitoring.coreos.com/v1/ServiceMonitor``)."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in value_files:
        args += ["--values", str(path)]
    if include_crds:
        args.append("--include-crds")
    for api in api_versions:
        args += ["--api-versions", api]
    return [doc for doc in yaml.safe_load_all(helm(*args)) if doc]


def render_values(tmp_path: Path, values: Manifest, **kwargs: Any) -> list[Manifest]:
    return render(values_file(tmp_path, values), **kwargs)


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [o for o in of_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    )
    return found[0]


def operator_container(objects: list[Manifest]) -> Manifest:
    deployment = one(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def env_values(container: Manifest) -> dict[str, str]:
    """A container's plain ``name: value`` variables (duplicates fail: they break server-side apply)."""
    names = [e["name"] for e in container.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate variables: {names}"
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def documents(path: Path) -> Iterator[Manifest]:
    yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)
