"""Finds the pinned tool binaries that ``tools/build.sh`` (``make tools``) builds.

Binaries live in ``<cache>/bin/<name>-<version>/<binary>``; the versions come from the one file that
pins them, ``tools/versions.env``. ``KT_TOOLS_BIN`` (a folder holding every binary) overrides the
lookup, for installs that bring their own binaries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubetensor.core.paths import cache_root, repo_root
from kubetensor.sandbox.errors import ToolNotFoundError

# binary name -> (key in versions.env, folder name in the cache)
_BINARIES: dict[str, tuple[str, str]] = {
    "kube-apiserver": ("KUBERNETES_VERSION", "kubernetes"),
    "kube-controller-manager": ("KUBERNETES_VERSION", "kubernetes"),
    "kube-scheduler": ("KUBERNETES_VERSION", "kubernetes"),
    "kubectl": ("KUBERNETES_VERSION", "kubernetes"),
    "etcd": ("ETCD_VERSION", "etcd"),
    "kwok": ("KWOK_VERSION", "kwok"),
    "helm": ("HELM_VERSION", "helm"),
    "nats-server": ("NATS_SERVER_VERSION", "nats-server"),
    "jaeger": ("JAEGER_VERSION", "jaeger"),
}


def pinned_versions(path: Path | None = None) -> dict[str, str]:
    """Parse ``tools/versions.env`` (``KEY=VALUE`` lines; ``#`` comments)."""
    if path is None:
        root = repo_root()
        if root is None:
            return {}
        path = root / "tools" / "versions.env"
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the binaries the local servers need."""

    bin_dir_override: Path | None
    versions: dict[str, str]

    @classmethod
    def discover(cls) -> Tools:
        override = os.environ.get("KT_TOOLS_BIN")
        return cls(Path(override) if override else None, pinned_versions())

    def path(self, binary: str) -> Path:
        """The path of ``binary``; raises ToolNotFoundError naming where it looked."""
        searched: list[str] = []
        if self.bin_dir_override is not None:
            candidate = self.bin_dir_override / binary
            searched.append(str(candidate))
            if os.access(candidate, os.X_OK):
                return candidate
        key, folder = _BINARIES[binary]
        version = self.versions.get(key)
        if version:
            candidate = cache_root() / "bin" / f"{folder}-{version}" / binary
            searched.append(str(candidate))
            if os.access(candidate, os.X_OK):
                return candidate
        raise ToolNotFoundError(binary, searched)
