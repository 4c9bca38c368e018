"""Replay of a Yuma reference-vector file through ``kubetensor.consensus.yuma``.

Called by the ``kubetensor yuma replay FILE --variant V`` command (cli.py) and by the vector tests.
``run_replay`` reads only the chain inputs and the variant's parameters from the file, runs every epoch
with ``run_epoch``, and carries ``Bonds`` and validator permits forward from its own outputs (never
from the file's results), so a file's results can be compared with what this implementation computes.

Two file forms are understood:

* ``yuma-vectors/v1`` (an object with ``schema``): the inputs are ``inputs.chain`` (``init_permits``,
  ``tempo``, and per epoch ``current_block``, ``last_mechanism_step_block``, ``stake_rao``,
  ``last_update``, ``block_at_registration``, ``weights_u16``) and the parameters are
  ``results.<variant>.params``; the variants are the ``chain_*`` keys of ``results``.
* the subtensor-tests form (``subtensor_tests.json``): a list of replayed unit tests, each with its own
  ``params``, ``n``, ``init_permits`` and ``epochs`` (where the stake field is ``stake``, booleans may be
  0/1 and ``owner_uid`` may be absent). The variant is the test name (``test_bonds``, ...).

Weight rows are given as submitted to ``set_weights``; the replay stores them as the chain does
(``vec_u16_max_upscale_to_u16``) and sorts each row by uid. A malformed file raises ``VectorFileError``
whose message starts with the JSON path of the offending field.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kubetensor.consensus import fixed
from kubetensor.consensus.yuma import (
    EpochInputs,
    EpochParams,
    EpochResult,
    SparseMatrix,
    SparseRows,
    run_epoch,
)

SCHEMA_V1 = "yuma-vectors/v1"
_U64_MAX = (1 << 64) - 1
_PARAM_RANGES: dict[str, tuple[int, int]] = {
    "kappa": (0, fixed.U16_MAX),
    "bonds_penalty": (0, fixed.U16_MAX),
    "bonds_moving_average": (0, _U64_MAX),
    "alpha_low": (0, fixed.U16_MAX),
    "alpha_high": (0, fixed.U16_MAX),
    "alpha_sigmoid_steepness": (-(1 << 15), (1 << 15) - 1),
    "max_allowed_validators": (0, fixed.U16_MAX),
    "activity_cutoff": (0, _U64_MAX),
    "stake_threshold": (0, _U64_MAX),
    "rao_emission": (0, _U64_MAX),
}
_PARAM_FLAGS = ("yuma3_on", "liquid_alpha_on")


class VectorFileError(ValueError):
    """A vector file is unreadable or malformed; the message names the field by its JSON path."""


@dataclass(frozen=True)
class _Epoch:
    current_block: int
    last_mechanism_step_block: int
    stake_rao: tuple[int, ...]
    last_update: tuple[int, ...]
    block_at_registration: tuple[int, ...]
    weights_u16: SparseRows


@dataclass(frozen=True)
class _Scenario:
    n: int
    init_permits: tuple[bool, ...]
    epochs: tuple[_Epoch, ...]
    params: EpochParams


# ---------------------------------------------------------------------------------------------------------
# Validation helpers: each names the JSON path of what it checks.
# ---------------------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def _field(obj: Any, key: str, *, path: str) -> Any:
    if not isinstance(obj, dict):
        raise VectorFileError(f"{path}: expected an object, got {_describe(obj)}")
    if key not in obj:
        raise VectorFileError(f"{_join(path, key)}: required field is missing")
    return obj[key]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _int(value: Any, path: str, *, low: int = 0, high: int = _U64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise VectorFileError(f"{path}: expected an integer, got {_describe(value)}")
    if not low <= value <= high:
        raise VectorFileError(f"{path}: expected an integer in [{low}, {high}], got {value}")
    return value


def _flag(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise VectorFileError(f"{path}: expected a boolean (or 0/1), got {_describe(value)}")


def _list(value: Any, path: str, *, length: int, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise VectorFileError(f"{path}: expected a list of {length} {what}, got {_describe(value)}")
    if len(value) != length:
        raise VectorFileError(f"{path}: expected a list of {length} {what}, got {len(value)}")
    return value


def _int_list(value: Any, path: str, *, length: int) -> tuple[int, ...]:
    items = _list(value, path, length=length, what="integers")
    return tuple(_int(item, f"{path}[{i}]") for i, item in enumerate(items))


def _bool_list(value: Any, path: str, *, length: int) -> tuple[bool, ...]:
    items = _list(value, path, length=length, what="booleans")
    return tuple(_flag(item, f"{path}[{i}]") for i, item in enumerate(items))


def _weight_rows(value: Any, path: str, *, n: int) -> SparseRows:
    rows = _list(value, path, length=n, what="weight rows")
    parsed: list[tuple[tuple[int, int], ...]] = []
    for i, row in enumerate(rows):
        row_path = f"{path}[{i}]"
        if not isinstance(row, list):
            raise VectorFileError(f"{row_path}: expected a list of [uid, u16] pairs, got {_describe(row)}")
        pairs: dict[int, int] = {}
        for k, pair in enumerate(row):
            pair_path = f"{row_path}[{k}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise VectorFileError(f"{pair_path}: expected a [uid, u16] pair, got {_describe(pair)}")
            uid = _int(pair[0], f"{pair_path}[0]", high=n - 1)
            weight = _int(pair[1], f"{pair_path}[1]", high=fixed.U16_MAX)
            if uid in pairs:
                raise VectorFileError(f"{pair_path}[0]: duplicate uid {uid} in the row")
            pairs[uid] = weight
        parsed.append(tuple(sorted(pairs.items())))
    return tuple(parsed)


def _parse_params(raw: Any, path: str, *, fallback_tempo: int | None) -> EpochParams:
    if not isinstance(raw, dict):
        raise VectorFileError(f"{path}: expected an object, got {_describe(raw)}")
    values: dict[str, Any] = {}
    for name, (low, high) in _PARAM_RANGES.items():
        values[name] = _int(_field(raw, name, path=path), _join(path, name), low=low, high=high)
    for name in _PARAM_FLAGS:
        values[name] = _flag(_field(raw, name, path=path), _join(path, name))
    if "tempo" in raw or fallback_tempo is None:
        values["tempo"] = _int(_field(raw, "tempo", path=path), _join(path, "tempo"))
    else:
        values["tempo"] = fallback_tempo
    owner = raw.get("owner_uid")
    values["owner_uid"] = None if owner is None else _int(owner, _join(path, "owner_uid"), high=fixed.U16_MAX)
    return EpochParams(**values)


def _parse_epochs(raw: Any, path: str, *, n: int, stake_key: str) -> tuple[_Epoch, ...]:
    if not isinstance(raw, list) or not raw:
        raise VectorFileError(f"{path}: expected a non-empty list of epochs, got {_describe(raw)}")
    epochs: list[_Epoch] = []
    for k, item in enumerate(raw):
        ep_path = f"{path}[{k}]"

        epochs.append(
            _Epoch(
                current_block=_int(_field(item, "current_block", path=ep_path), f"{ep_path}.current_block"),
                last_mechanism_step_block=_int(
                    _field(item, "last_mechanism_step_block", path=ep_path),
                    f"{ep_path}.last_mechanism_step_block",
                ),
                stake_rao=_int_list(
                    _field(item, stake_key, path=ep_path), f"{ep_path}.{stake_key}", length=n
                ),
                last_update=_int_list(
                    _field(item, "last_update", path=ep_path), f"{ep_path}.last_update", length=n
                ),
                block_at_registration=_int_list(
                    _field(item, "block_at_registration", path=ep_path),
                    f"{ep_path}.block_at_registration",
                    length=n,
                ),
                weights_u16=_weight_rows(
                    _field(item, "weights_u16", path=ep_path), f"{ep_path}.weights_u16", n=n
                ),
            )
        )
    return tuple(epochs)


def _chain_variants(results: Any) -> list[str]:
    if not isinstance(results, dict):
        return []
    return sorted(name for name, body in results.items() if isinstance(body, dict) and "params" in body)


def _parse_v1(doc: dict[str, Any], variant: str) -> _Scenario:
    chain = _field(_field(doc, "inputs", path=""), "chain", path="inputs")
    results = _field(doc, "results", path="")
    if not isinstance(results, dict) or variant not in results:
        available = ", ".join(_chain_variants(results)) or "none"
        raise VectorFileError(f"results.{variant}: no such variant in the file (chain variants: {available})")
    init_raw = _field(chain, "init_permits", path="inputs.chain")
    if not isinstance(init_raw, list) or not init_raw:
        raise VectorFileError(
            f"inputs.chain.init_permits: expected a non-empty list of booleans, got {_describe(init_raw)}"
        )
    n = len(init_raw)
    init_permits = _bool_list(init_raw, "inputs.chain.init_permits", length=n)
    chain_tempo = chain.get("tempo") if isinstance(chain, dict) else None
    fallback = None if chain_tempo is None else _int(chain_tempo, "inputs.chain.tempo")
    params = _parse_params(
        _field(results[variant], "params", path=f"results.{variant}"),
        f"results.{variant}.params",
        fallback_tempo=fallback,
    )
    epochs = _parse_epochs(
        _field(chain, "epochs", path="inputs.chain"), "inputs.chain.epochs", n=n, stake_key="stake_rao"
    )
    return _Scenario(n=n, init_permits=init_permits, epochs=epochs, params=params)


def _parse_subtensor_tests(doc: list[Any], variant: str) -> _Scenario:
    names: list[str] = []
    for index, test in enumerate(doc):
        name = _field(test, "test", path=f"[{index}]")
        if not isinstance(name, str):
            raise VectorFileError(f"[{index}].test: expected a string, got {_describe(name)}")
        names.append(name)
        if name != variant:
            continue
        path = f"[{index}]"
        n = _int(_field(test, "n", path=path), f"{path}.n", low=1, high=fixed.U16_MAX + 1)
        init_permits = _bool_list(_field(test, "init_permits", path=path), f"{path}.init_permits", length=n)
        params = _parse_params(_field(test, "params", path=path), f"{path}.params", fallback_tempo=None)
        epochs = _parse_epochs(_field(test, "epochs", path=path), f"{path}.epochs", n=n, stake_key="stake")
        return _Scenario(n=n, init_permits=init_permits, epochs=epochs, params=params)
    raise VectorFileError(
        f"[*].test: no test named {variant!r} in the file (tests: {', '.join(names) or 'none'})"
    )


def load_document(path: pathlib.Path) -> Any:
    """Read and decode a vector file; unreadable or non-JSON files raise ``VectorFileError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VectorFileError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VectorFileError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc


def list_variants(document: Any) -> list[str]:
    """The variants ``run_replay`` accepts for a decoded file: chain variants, or test names."""
    if isinstance(document, list):
        return [
            test["test"] for test in document if isinstance(test, dict) and isinstance(test.get("test"), str)
        ]
    if isinstance(document, dict):
        return _chain_variants(document.get("results"))
    return []


def _parse(document: Any, variant: str) -> _Scenario:
    if isinstance(document, list):
        return _parse_subtensor_tests(document, variant)
    if not isinstance(document, dict):
        raise VectorFileError(f"(root): expected an object or a list, got {_describe(document)}")
    schema = _field(document, "schema", path="")
    if schema != SCHEMA_V1:
        raise VectorFileError(f"schema: expected {SCHEMA_V1!r}, got {schema!r}")
    return _parse_v1(document, variant)


# ---------------------------------------------------------------------------------------------------------
# Output in the vectors' own formats
# ---------------------------------------------------------------------------------------------------------


def _floats(raw: npt.NDArray[np.int64]) -> list[float]:
    values: list[float] = (raw.astype(np.float64) / fixed.ONE).tolist()
    return values


def _ints(values: npt.NDArray[np.int64] | Sequence[int]) -> list[int]:
    return [int(v) for v in (values.tolist() if isinstance(values, np.ndarray) else values)]


def _float_rows(matrix: SparseMatrix) -> list[list[list[float]]]:
    return [[[j, v / fixed.ONE] for j, v in row] for row in matrix.rows()]


def _u16_rows(rows: SparseRows | list[list[tuple[int, int]]]) -> list[list[list[int]]]:
    return [[[j, v] for j, v in row] for row in rows]


def _epoch_output(result: EpochResult, *, stored_weights: SparseRows, bonds_in: SparseRows) -> dict[str, Any]:
    return {
        "current_block": result.current_block,
        "last_tempo": result.last_tempo,
        "active": result.active.tolist(),
        "stake": _floats(result.stake),
        "validator_permit_used": result.validator_permit_used.tolist(),
        "new_validator_permit": result.new_validator_permit.tolist(),
        "active_stake": _floats(result.active_stake),
        "stored_weights_u16": _u16_rows(stored_weights),
        "weights": _float_rows(result.weights),
        "consensus": _floats(result.consensus),
        "clipped_weights": _float_rows(result.clipped_weights),
        "validator_trust": _floats(result.validator_trust),
        "incentive": _floats(result.incentive),
        "legacy_rank": _floats(result.legacy_rank),
        "legacy_trust": _floats(result.legacy_trust),
        "legacy_pruning_score_u16": _ints(result.legacy_pruning_score_u16),
        "weights_for_bonds": _float_rows(result.weights_for_bonds),
        "bonds_storage_in_u16": _u16_rows(bonds_in),
        "bonds_in": _float_rows(result.bonds_in),
        "ema_bonds": _float_rows(result.ema_bonds),
        "ema_bonds_col_normalized": _float_rows(result.ema_bonds_col_normalized),
        "bonds_storage_out_u16": _u16_rows(result.bonds_storage_out.rows()),
        "liquid_alphas": None
        if result.liquid_alphas is None
        else [_floats(row) for row in result.liquid_alphas],
        "dividends": _floats(result.dividends),
        "emission_fallback_to_stake": result.emission_fallback_to_stake,
        "normalized_server_emission": _floats(result.normalized_server_emission),
        "normalized_validator_emission": _floats(result.normalized_validator_emission),
        "normalized_combined_emission": _floats(result.normalized_combined_emission),
        "server_emission": list(result.server_emission),
        "validator_emission": list(result.validator_emission),
        "combined_emission": list(result.combined_emission),
        "stake_weight_u16": _ints(result.stake_weight_u16),
        "consensus_u16": _ints(result.consensus_u16),
        "incentive_u16": _ints(result.incentive_u16),
        "dividends_u16": _ints(result.dividends_u16),
        "validator_trust_u16": _ints(result.validator_trust_u16),
        "legacy_rank_u16": _ints(result.legacy_rank_u16),
        "legacy_trust_u16": _ints(result.legacy_trust_u16),
    }


def replay_document(document: Any, variant: str) -> dict[str, Any]:
    """``run_replay`` on an already decoded file (``load_document``)."""
    scenario = _parse(document, variant)
    permits = scenario.init_permits
    bonds: SparseRows = tuple(() for _ in range(scenario.n))
    outputs: list[dict[str, Any]] = []
    for epoch in scenario.epochs:
        stored: SparseRows = tuple(
            tuple(
                zip([j for j, _ in row], fixed.vec_u16_max_upscale_to_u16([w for _, w in row]), strict=True)
            )
            for row in epoch.weights_u16
        )
        inputs = EpochInputs(
            current_block=epoch.current_block,
            last_mechanism_step_block=epoch.last_mechanism_step_block,
            stake_rao=epoch.stake_rao,
            last_update=epoch.last_update,
            block_at_registration=epoch.block_at_registration,
            weights=stored,
            bonds=bonds,
            validator_permit=permits,
        )
        result = run_epoch(inputs, scenario.params)
        outputs.append(_epoch_output(result, stored_weights=stored, bonds_in=bonds))
        bonds = result.bonds_storage_rows()
        permits = tuple(bool(p) for p in result.new_validator_permit.tolist())
    return {"variant": variant, "epochs": outputs}


def run_replay(path: pathlib.Path, variant: str) -> dict[str, Any]:
    """Replay every epoch of the file at ``path`` under ``variant``; see the module docstring."""
    return replay_document(load_document(path), variant)
