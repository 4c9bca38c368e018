"""The committed generated code matches protos/ (someone who edits a .proto must run `make proto`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "tools" / "gen_protos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    fresh = load_generator().generate(tmp_path)
    committed_dir = ROOT / "services" / "kubetensor" / "v1"
    fresh_names = {p.name for p in fresh}
    committed_names = {p.name for p in committed_dir.iterdir() if p.is_file()}
    assert fresh_names == committed_names, "run `make proto`: generated file set differs"
    stale = [p.name for p in fresh if p.read_bytes() != (committed_dir / p.name).read_bytes()]
    assert not stale, f"run `make proto`: stale generated files {stale}"


def test_messages_round_trip() -> None:
    from kubetensor.v1 import common_pb2, task_pb2

    envelope = task_pb2.RoundEnvelope(
        round_id=b"\x03" * 16, netuid=1, task_type="addition", prompt="47+85=", max_tokens=5, leaf_count=1
    )
    original = task_pb2.Task(
        envelope=envelope.SerializeToString(),
        leaf=task_pb2.TaskLeaf(task_id="t-1", nonce=7).SerializeToString(),
        proof=[b"\x04" * 32],
        signature=common_pb2.Signature(public_key=b"\x01" * 32, signature=b"\x02" * 64),
    )
    decoded = task_pb2.Task.FromString(original.SerializeToString())
    assert decoded == original
    assert decoded.signature.public_key == b"\x01" * 32
    assert task_pb2.RoundEnvelope.FromString(decoded.envelope) == envelope
