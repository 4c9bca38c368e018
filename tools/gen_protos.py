"""Generates the Python modules for protos/kubetensor/v1/*.proto (``make proto``).

Output goes to ``services/kubetensor/v1/`` (messages, gRPC stubs and mypy stubs), never edited by
hand. ``tests/unit/test_protos.py`` runs ``generate()`` into a temporary folder and fails when the
committed files differ, i.e. when someone changed a .proto without running ``make proto``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "kubetensor" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (grpcio-tools) with the Python, gRPC and mypy plugins into ``out_dir``."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    bindir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    # mypy-protobuf's plugins are console scripts beside the interpreter (or on PATH).
    for name in ("protoc-gen-mypy", "protoc-gen-mypy_grpc"):
        if (bindir / name).exists():
            args.insert(1, f"--plugin={name}={bindir / name}")
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    package = out_dir / "kubetensor" / "v1"
    (package / "__init__.py").write_text(
        '"""Generated from protos/kubetensor/v1 by `make proto`. Do not edit."""\n'
    )
    return sorted(p for p in package.iterdir() if p.is_file())


if __name__ == "__main__":
    written = generate(ROOT / "services")
    print(f"generated {len(written)} files in services/kubetensor/v1")
