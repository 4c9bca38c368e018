"""Where kubetensor keeps its machine-wide caches (tool binaries, models, virtualenvs, sandboxes).

Everything lives under one cache root outside any clone, so CI runs and later sessions reuse what an
earlier run built. ``KT_CACHE`` overrides the root (tests point it at a temporary folder when they
need isolation).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache root: ``$KT_CACHE`` or ``~/.cache/kubetensor``."""
    override = os.environ.get("KT_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "kubetensor"


def repo_root() -> Path | None:
    """The source checkout this package runs from, if any (found by its ``tools/versions.env``)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "tools" / "versions.env").is_file() and (parent / "pyproject.toml").is_file():
            return parent
    return None
