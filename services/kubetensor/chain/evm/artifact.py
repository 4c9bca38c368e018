"""The compiled Settlements contract the sidecar deploys: ABI and bytecode from ``Settlements.json``.

Read by ``contract`` (deploy, call, check the code at a configured address) and written only by
``compiler`` (``python -m kubetensor.chain.evm.compiler``). The JSON file is committed next to the
Solidity source it was compiled from; a test recompiles the source and fails if they disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CONTRACT_NAME = "Settlements"
SOURCE_NAME = "Settlements.sol"
SOURCE_PATH = Path(__file__).with_name(SOURCE_NAME)
ARTIFACT_PATH = Path(__file__).with_name("Settlements.json")


@dataclass(frozen=True)
class Artifact:
    """What the compiler produced for the contract."""

    abi: list[dict[str, Any]]
    bytecode: bytes
    """Creation code (constructor included): what a deployment sends."""
    deployed_bytecode: bytes
    """Runtime code: what ``eth_getCode`` returns at a deployed contract's address."""
    compiler: str
    """The solc build that compiled it, e.g. ``0.8.37+commit.f401782d.Emscripten.clang``."""
    source_sha256: str


@cache
def load() -> Artifact:
    """The committed artifact (read once per process)."""
    raw = json.loads(ARTIFACT_PATH.read_text(encoding="utf-8"))
    return Artifact(
        abi=raw["abi"],
        bytecode=bytes.fromhex(raw["bytecode"].removeprefix("0x")),
        deployed_bytecode=bytes.fromhex(raw["deployedBytecode"].removeprefix("0x")),
        compiler=raw["compiler"]["build"],
        source_sha256=raw["sourceSha256"],
    )
