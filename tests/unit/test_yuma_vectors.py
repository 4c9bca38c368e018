"""Replays every reference-vector file in tests/data/yuma-vectors and compares it field by field.

The ``chain_*`` results come from subtensor's own epoch code; ``subtensor_tests.json`` replays the
chain's unit tests with their expected values. Each file x variant x field is one test, so a failure
names what differs, in which epoch and at which uid. Tolerances (from the issue): floats 1e-9 absolute
and integers exact for chain_yuma2/chain_yuma3/chain_yuma3_bp0; for liquid alpha floats 1e-6 and
integers within one u16 step (or 1e-6 relative for rao).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import pathlib
from typing import Any

import pytest
from kubetensor.consensus.replay import list_variants, run_replay

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "data" / "yuma-vectors"
SUBTENSOR_TESTS = VECTORS / "subtensor_tests.json"
V1_FILES = sorted(p for p in VECTORS.glob("*.json") if p.name not in {"index.json", SUBTENSOR_TESTS.name})

# Fields the replay must produce (the list) and every other field the vectors carry that the
# replay reproduces. Only the convenience view ``vm`` (a V x M re-slicing of the fields) is not replayed.
REQUIRED_FIELDS = (
    "active",
    "stake",
    "new_validator_permit",
    "consensus",
    "validator_trust",
    "incentive",
    "ema_bonds",
    "bonds_storage_out_u16",
    "dividends",
    "normalized_server_emission",
    "normalized_validator_emission",
    "server_emission",
    "validator_emission",
    "combined_emission",
    "consensus_u16",
    "incentive_u16",
    "dividends_u16",
    "validator_trust_u16",
)
NOT_REPLAYED = frozenset({"vm"})
RAO_FIELDS = frozenset({"server_emission", "validator_emission", "combined_emission"})
EXACT_FIELDS = frozenset(
    {
        "current_block",
        "last_tempo",
        "active",
        "validator_permit_used",
        "new_validator_permit",
        "emission_fallback_to_stake",
        "stored_weights_u16",
        "bonds_storage_in_u16",
    }
)


@functools.cache
def _document(path: pathlib.Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@functools.cache
def _replayed(path: pathlib.Path, variant: str) -> dict[str, Any]:
    return run_replay(path, variant)


def _is_liquid(params: dict[str, Any]) -> bool:
    return bool(params["liquid_alpha_on"])


def _tolerance(field: str, *, liquid: bool) -> tuple[float, float]:
    """(absolute, relative) tolerance for a field; integers are compared with these too."""
    if field in EXACT_FIELDS:
        return 0.0, 0.0
    is_int = field.endswith("_u16") or field in RAO_FIELDS
    if not liquid:
        return (0.0, 0.0) if is_int else (1e-9, 0.0)
    if field in RAO_FIELDS:
        return 0.0, 1e-6
    return (1.0, 0.0) if is_int else (1e-6, 0.0)


def _differences(got: Any, want: Any, *, where: str, abs_tol: float, rel_tol: float) -> list[str]:
    """Every place ``got`` differs from ``want`` (same nesting of lists; numbers within tolerance)."""
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            size = len(got) if isinstance(got, list) else type(got).__name__
            return [f"{where}: expected {len(want)} items, got {size}"]
        out: list[str] = []
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            out.extend(_differences(g, w, where=f"{where}[{i}]", abs_tol=abs_tol, rel_tol=rel_tol))
        return out
    if isinstance(want, bool) or want is None or isinstance(got, bool) or got is None:
        return [] if got == want else [f"{where}: expected {want!r}, got {got!r}"]
    if math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol) or abs(got - want) <= abs_tol:
        return []
    return [f"{where}: expected {want!r}, got {got!r} (diff {got - want:.3e})"]


def _sparse_support(rows: Any) -> list[list[int]] | None:
    """Column sets of a sparse-rows matrix, so presence is compared exactly even when values are not."""
    if not (isinstance(rows, list) and rows and all(isinstance(r, list) for r in rows)):
        return None
    if not all(isinstance(e, list) and len(e) == 2 for r in rows for e in r):
        return None
    return [[e[0] for e in r] for r in rows]


def _compare_field(
    got_epochs: list[dict[str, Any]], want_epochs: list[dict[str, Any]], *, field: str, liquid: bool
) -> None:
    assert len(got_epochs) == len(want_epochs), "number of epochs differs"
    abs_tol, rel_tol = _tolerance(field, liquid=liquid)
    problems: list[str] = []
    for k, (got, want) in enumerate(zip(got_epochs, want_epochs, strict=True)):
        assert field in got, f"epoch {k}: the replay does not produce {field!r}"
        want_support = _sparse_support(want[field])
        if want_support is not None and _sparse_support(got[field]) != want_support:
            problems.append(f"epoch {k}: sparse entries differ: {got[field]!r} != {want[field]!r}")
            continue
        problems.extend(
            _differences(got[field], want[field], where=f"epoch {k}", abs_tol=abs_tol, rel_tol=rel_tol)
        )
    assert not problems, f"{field}: {len(problems)} difference(s):\n" + "\n".join(problems[:20])


def _v1_cases() -> list[Any]:
    cases: list[Any] = []
    for path in V1_FILES:
        doc = _document(path)
        for variant in sorted(v for v in doc["results"] if v.startswith("chain_")):
            fields = [f for f in doc["results"][variant]["epochs"][0] if f not in NOT_REPLAYED]
            cases.extend(
                pytest.param(path, variant, field, id=f"{path.stem}-{variant}-{field}") for field in fields
            )
    return cases


def _subtensor_cases() -> list[Any]:
    cases: list[Any] = []
    for test in _document(SUBTENSOR_TESTS):
        fields = [f for f in test["harness_output"][0] if f not in NOT_REPLAYED]
        cases.extend(pytest.param(test["test"], field, id=f"{test['test']}-{field}") for field in fields)
    return cases


@pytest.mark.parametrize(("path", "variant", "field"), _v1_cases())
def test_replay_matches_chain_vectors_per_field(path: pathlib.Path, variant: str, *, field: str) -> None:
    doc = _document(path)
    want = doc["results"][variant]["epochs"]
    got = _replayed(path, variant)["epochs"]
    _compare_field(got, want, field=field, liquid=_is_liquid(doc["results"][variant]["params"]))


@pytest.mark.parametrize(("test_name", "field"), _subtensor_cases())
def test_replay_matches_subtensor_harness_per_field(test_name: str, field: str) -> None:
    test = next(t for t in _document(SUBTENSOR_TESTS) if t["test"] == test_name)
    got = _replayed(SUBTENSOR_TESTS, test_name)["epochs"]
    _compare_field(got, test["harness_output"], field=field, liquid=_is_liquid(test["params"]))


@pytest.mark.parametrize("test_name", [t["test"] for t in _document(SUBTENSOR_TESTS)])
def test_replay_meets_subtensor_test_expectations(test_name: str) -> None:
    test = next(t for t in _document(SUBTENSOR_TESTS) if t["test"] == test_name)
    epochs = _replayed(SUBTENSOR_TESTS, test_name)["epochs"]
    assert test["checks"], "the test carries no expectations"
    for check in test["checks"]:
        epoch = epochs[check["epoch_index"]]
        if "expected_bonds_u16" in check:
            column = check["column_uid"]
            bonds = [dict(map(tuple, row)).get(column) for row in epoch["bonds_storage_out_u16"]]
            expected = check["expected_bonds_u16"]
            assert bonds[: len(expected)] == expected, f"epoch {check['epoch_index']} bonds to uid {column}"
        elif "expected_dividends" in check:
            expected = check["expected_dividends"]
            got = epoch["dividends"][: len(expected)]
            assert got == pytest.approx(expected, abs=check["tolerance"]), f"epoch {check['epoch_index']}"
        else:
            assert epoch["combined_emission"] == check["expected"], f"epoch {check['epoch_index']} emission"


def test_replay_outputs_required_fields_for_every_file() -> None:
    for path in [*V1_FILES, SUBTENSOR_TESTS]:
        for variant in list_variants(_document(path)):
            for k, epoch in enumerate(_replayed(path, variant)["epochs"]):
                missing = [f for f in REQUIRED_FIELDS if f not in epoch]
                assert not missing, f"{path.name} {variant} epoch {k}: missing {missing}"


def test_replay_covers_every_chain_variant_in_the_index() -> None:
    index = json.loads((VECTORS / "index.json").read_text(encoding="utf-8"))
    indexed = {(VECTORS / e["file"], v) for e in index for v in e["variants"] if v.startswith("chain_")}
    replayed = {(p, v) for p in V1_FILES for v in list_variants(_document(p))}
    assert indexed <= replayed
    assert all(path.exists() for path, _ in indexed)


def test_replay_carries_state_from_its_own_outputs() -> None:
    path = next(p for p in V1_FILES if p.stem.startswith("chain_masks"))
    epochs = _replayed(path, "chain_yuma3")["epochs"]
    for previous, current in itertools.pairwise(epochs):
        assert current["bonds_storage_in_u16"] == previous["bonds_storage_out_u16"]
        assert current["validator_permit_used"] == previous["new_validator_permit"]
