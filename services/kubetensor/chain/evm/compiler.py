"""Compiles ``Settlements.sol`` into ``Settlements.json`` reproducibly, with the pinned solc-js.

Called by hand after editing the contract (``python -m kubetensor.chain.evm.compiler``, which rewrites
the artifact; ``--check`` only compares) and by the reproducibility test, which recompiles and fails if
the committed artifact differs. The sidecar never compiles: it deploys the committed bytecode.

Reproducible means: the same source bytes, the same compiler build and the same standard-JSON settings
(``SETTINGS`` below, fixed here) give the same bytes. The compiler is the npm package ``solc`` (solc-js,
the official compiler built to WebAssembly) at exactly the version of the source's ``pragma solidity``
line, which ``tools/npm/solc/package.json`` pins too; ``tools/npm-tools.sh`` (``make tools``) installs it
into ``<cache>/npm/solc-<version>/`` and it runs under node. The artifact records the compiler build,
the settings and the source's sha256 next to the ABI and the bytecode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubetensor.chain.evm.artifact import ARTIFACT_PATH, CONTRACT_NAME, SOURCE_NAME, SOURCE_PATH
from kubetensor.core.paths import cache_root

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    # paris: no PUSH0 or later opcodes, so the bytecode runs on every EVM chain still in use.
    "evmVersion": "paris",
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {
        SOURCE_NAME: {CONTRACT_NAME: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
    },
}
"""solc standard-JSON settings; changing any of them changes the bytecode."""

_PRAGMA = re.compile(r"^pragma solidity (\d+\.\d+\.\d+);$", re.MULTILINE)
# Reads a standard-JSON input on stdin and writes solc's standard-JSON output (argv[1]: the package).
_NODE_SCRIPT = (
    "const solc = require(process.argv[1]); let input = '';"
    "process.stdin.setEncoding('utf8'); process.stdin.on('data', d => { input += d; });"
    "process.stdin.on('end', () => { process.stdout.write(JSON.stringify("
    "{version: solc.version(), output: JSON.parse(solc.compile(input))})); });"
)


class CompileError(Exception):
    """The compiler is missing, failed, or reported an error."""


def pinned_version(source: str) -> str:
    """The exact compiler version of the source's ``pragma solidity X.Y.Z;`` line."""
    match = _PRAGMA.search(source)
    if match is None:
        raise CompileError(f"{SOURCE_NAME}: no exact 'pragma solidity X.Y.Z;' line (the compiler pin)")
    return match.group(1)


def solc_package(version: str) -> Path:
    """Where ``tools/npm-tools.sh`` installs solc-js ``version`` (CompileError if it is not there)."""
    package = cache_root() / "npm" / f"solc-{version}" / "node_modules" / "solc"
    if not (package / "package.json").is_file():
        raise CompileError(
            f"solc-js {version} is not installed at {package}: run `make tools` (tools/npm-tools.sh)"
        )
    return package


def standard_input(source: str) -> dict[str, Any]:
    """The standard-JSON input that compiles ``source``."""
    return {"language": "Solidity", "sources": {SOURCE_NAME: {"content": source}}, "settings": SETTINGS}


def compile_artifact(source: str, *, timeout: float = 300.0) -> dict[str, Any]:
    """Compile ``source`` with the pinned solc-js; the artifact ``Settlements.json`` holds."""
    version = pinned_version(source)
    package = solc_package(version)
    node = shutil.which("node")
    if node is None:
        raise CompileError("node is not on PATH (solc-js runs under node)")
    try:
        done = subprocess.run(
            [node, "-e", _NODE_SCRIPT, str(package)],
            input=json.dumps(standard_input(source)),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CompileError(f"solc-js {version} did not finish within {timeout:.0f}s") from None
    if done.returncode != 0:
        raise CompileError(f"solc-js {version} exited with {done.returncode}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    build: str = result["version"]
    output = result["output"]
    # Warnings fail the build too: the committed contract compiles clean.
    errors = [e for e in output.get("errors", []) if e.get("severity") in ("error", "warning")]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    if not build.startswith(version + "+"):
        raise CompileError(f"the compiler at {package} is {build}, the source pins {version}")
    contract = output["contracts"][SOURCE_NAME][CONTRACT_NAME]
    return {
        "contractName": CONTRACT_NAME,
        "sourceName": SOURCE_NAME,
        "sourceSha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "compiler": {"package": "solc", "packageVersion": version, "build": build},
        "settings": SETTINGS,
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
    }


def render(artifact: dict[str, Any]) -> str:
    """The artifact as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubetensor.chain.evm.compiler", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed artifact, write nothing"
    )
    args = parser.parse_args(argv)
    try:
        text = render(compile_artifact(SOURCE_PATH.read_text(encoding="utf-8")))
    except CompileError as error:
        print(f"compile failed: {error}", file=sys.stderr)
        return 2
    committed = ARTIFACT_PATH.read_text(encoding="utf-8") if ARTIFACT_PATH.exists() else ""
    if args.check:
        if text != committed:
            print(f"{ARTIFACT_PATH} is not what {SOURCE_PATH.name} compiles to (rerun without --check)")
            return 1
        print(f"{ARTIFACT_PATH.name} is up to date")
        return 0
    ARTIFACT_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {ARTIFACT_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
