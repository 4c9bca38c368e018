"""Malformed vector files raise VectorFileError naming the offending field by its JSON path.

Each test corrupts one field of a real vector file (a copy under tmp_path) and checks the message.
"""

from __future__ import annotations

import copy
import functools
import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
from kubetensor.consensus.replay import VectorFileError, run_replay

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "data" / "yuma-vectors"
MASKS = VECTORS / "chain_masks_6v4m.json"
SUBTENSOR_TESTS = VECTORS / "subtensor_tests.json"


@functools.cache
def _load(path: pathlib.Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _replay_corrupted(
    tmp_path: pathlib.Path, source: pathlib.Path, *, corrupt: Callable[[Any], None], variant: str
) -> VectorFileError:
    document = copy.deepcopy(_load(source))
    corrupt(document)
    path = tmp_path / source.name
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(VectorFileError) as excinfo:
        run_replay(path, variant)
    return excinfo.value


def _epoch(doc: Any, k: int) -> dict[str, Any]:
    epoch: dict[str, Any] = doc["inputs"]["chain"]["epochs"][k]
    return epoch


def test_vector_file_error_is_a_value_error() -> None:
    assert issubclass(VectorFileError, ValueError)


def test_missing_epoch_field_names_its_path(tmp_path: pathlib.Path) -> None:
    error = _replay_corrupted(
        tmp_path, MASKS, corrupt=lambda d: _epoch(d, 2).pop("stake_rao"), variant="chain_yuma2"
    )
    assert str(error) == "inputs.chain.epochs[2].stake_rao: required field is missing"


def test_wrong_length_names_the_field_and_both_lengths(tmp_path: pathlib.Path) -> None:
    error = _replay_corrupted(
        tmp_path, MASKS, corrupt=lambda d: _epoch(d, 2)["stake_rao"].pop(), variant="chain_yuma2"
    )
    assert str(error) == "inputs.chain.epochs[2].stake_rao: expected a list of 10 integers, got 9"


def test_wrong_type_in_a_list_names_the_element(tmp_path: pathlib.Path) -> None:
    def corrupt(doc: Any) -> None:
        _epoch(doc, 1)["last_update"][3] = "10359"

    error = _replay_corrupted(tmp_path, MASKS, corrupt=corrupt, variant="chain_yuma3")
    assert str(error) == "inputs.chain.epochs[1].last_update[3]: expected an integer, got a string"


def test_float_where_an_integer_is_required_is_rejected(tmp_path: pathlib.Path) -> None:
    def corrupt(doc: Any) -> None:
        _epoch(doc, 0)["stake_rao"][0] = 1.5

    error = _replay_corrupted(tmp_path, MASKS, corrupt=corrupt, variant="chain_yuma3")
    assert str(error).startswith("inputs.chain.epochs[0].stake_rao[0]: expected an integer")


def test_missing_param_names_the_variant_path(tmp_path: pathlib.Path) -> None:
    error = _replay_corrupted(
        tmp_path,
        MASKS,
        corrupt=lambda d: d["results"]["chain_yuma3"]["params"].pop("kappa"),
        variant="chain_yuma3",
    )
    assert str(error) == "results.chain_yuma3.params.kappa: required field is missing"


def test_param_out_of_range_names_the_field(tmp_path: pathlib.Path) -> None:
    def corrupt(doc: Any) -> None:
        doc["results"]["chain_yuma2"]["params"]["bonds_penalty"] = 70_000

    error = _replay_corrupted(tmp_path, MASKS, corrupt=corrupt, variant="chain_yuma2")
    assert (
        str(error) == "results.chain_yuma2.params.bonds_penalty: expected an integer in [0, 65535], got 70000"
    )


def test_weight_pair_with_uid_out_of_range_is_rejected(tmp_path: pathlib.Path) -> None:
    def corrupt(doc: Any) -> None:
        _epoch(doc, 0)["weights_u16"][1][0] = [10, 65_535]

    error = _replay_corrupted(tmp_path, MASKS, corrupt=corrupt, variant="chain_yuma2")
    assert str(error) == "inputs.chain.epochs[0].weights_u16[1][0][0]: expected an integer in [0, 9], got 10"


def test_weight_entry_that_is_not_a_pair_is_rejected(tmp_path: pathlib.Path) -> None:
    def corrupt(doc: Any) -> None:
        _epoch(doc, 0)["weights_u16"][0][1] = [7]

    error = _replay_corrupted(tmp_path, MASKS, corrupt=corrupt, variant="chain_yuma2")
    assert (
        str(error) == "inputs.chain.epochs[0].weights_u16[0][1]: expected a [uid, u16] pair, got a list of 1"
    )


def test_duplicate_uid_in_a_weight_row_is_rejected(tmp_path: pathlib.Path) -> None:
    def corrupt(doc: Any) -> None:
        _epoch(doc, 0)["weights_u16"][0][1][0] = 6

    error = _replay_corrupted(tmp_path, MASKS, corrupt=corrupt, variant="chain_yuma2")
    assert str(error) == "inputs.chain.epochs[0].weights_u16[0][1][0]: duplicate uid 6 in the row"


def test_unknown_variant_lists_the_available_ones(tmp_path: pathlib.Path) -> None:
    error = _replay_corrupted(tmp_path, MASKS, corrupt=lambda d: None, variant="chain_yuma4")
    assert str(error).startswith(
        "results.chain_yuma4: no such variant in the file (chain variants: chain_yuma2"
    )


def test_sim_variant_is_rejected_for_lack_of_chain_params(tmp_path: pathlib.Path) -> None:
    basic = VECTORS / "basic_3v3m.json"
    error = _replay_corrupted(tmp_path, basic, corrupt=lambda d: None, variant="sim_yuma2")
    assert str(error) == "results.sim_yuma2.params: required field is missing"


def test_wrong_schema_is_rejected(tmp_path: pathlib.Path) -> None:
    def corrupt(doc: Any) -> None:
        doc["schema"] = "yuma-vectors/v0"

    error = _replay_corrupted(tmp_path, MASKS, corrupt=corrupt, variant="chain_yuma2")
    assert str(error) == "schema: expected 'yuma-vectors/v1', got 'yuma-vectors/v0'"


def test_init_permits_of_wrong_type_is_rejected(tmp_path: pathlib.Path) -> None:
    def corrupt(doc: Any) -> None:
        doc["inputs"]["chain"]["init_permits"][4] = "yes"

    error = _replay_corrupted(tmp_path, MASKS, corrupt=corrupt, variant="chain_yuma2")
    assert str(error) == "inputs.chain.init_permits[4]: expected a boolean (or 0/1), got a string"


def test_subtensor_form_errors_name_the_test_index(tmp_path: pathlib.Path) -> None:
    def corrupt(doc: Any) -> None:
        doc[1]["epochs"][3]["stake"] = [8, 1, 1, 0]

    error = _replay_corrupted(
        tmp_path, SUBTENSOR_TESTS, corrupt=corrupt, variant="test_yuma_3_kappa_moves_first"
    )
    assert str(error) == "[1].epochs[3].stake: expected a list of 5 integers, got 4"


def test_subtensor_form_unknown_test_lists_the_tests(tmp_path: pathlib.Path) -> None:
    error = _replay_corrupted(tmp_path, SUBTENSOR_TESTS, corrupt=lambda d: None, variant="test_nothing")
    assert "no test named 'test_nothing'" in str(error)
    assert "test_bonds" in str(error)


def test_invalid_json_reports_the_position(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"schema": "yuma-vectors/v1", ', encoding="utf-8")
    with pytest.raises(VectorFileError, match=r"broken\.json: not valid JSON \(line 1"):
        run_replay(path, "chain_yuma2")


def test_missing_file_is_reported(tmp_path: pathlib.Path) -> None:
    with pytest.raises(VectorFileError, match="cannot read the file"):
        run_replay(tmp_path / "absent.json", "chain_yuma2")
