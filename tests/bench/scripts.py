"""Loading a benchmark script (``tests/bench/bench_<name>.py``, run as a file by ``make bench``) as a
module, for its smoke test."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

FOLDER = pathlib.Path(__file__).resolve().parent


def load_bench(name: str) -> ModuleType:
    """``bench_<name>.py`` of this folder as the module ``bench_<name>`` (loaded once per process)."""
    module_name = f"bench_{name}"
    spec = importlib.util.spec_from_file_location(module_name, FOLDER / f"{module_name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(module_name, module)
    spec.loader.exec_module(module)
    return module
