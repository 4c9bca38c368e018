"""Unit tests for kubetensor.consensus.yuma beyond the reference vectors.

The vectors never set a subnet owner and rarely hit exact stake boundaries; these tests cover the
owner rules, the stake threshold, permit ties, the first-epoch fallback, input validation, and check the
sort-based consensus against a literal port of the chain's quick-select on random and boundary inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from kubetensor.consensus import fixed
from kubetensor.consensus.fixed import ONE
from kubetensor.consensus.yuma import EpochInputs, EpochParams, run_epoch, weighted_median_columns

TAO = 10**9


def _chain_weighted_median(stake: list[int], score: list[int], *, minority: int) -> int:
    """Literal port of subtensor math.rs ``weighted_median`` (the iterative mid-pivot quick-select)."""
    partition = list(range(len(stake)))
    partition_lo, partition_hi = 0, sum(stake)
    for _ in range(len(stake) + 1):
        if not partition:
            return 0
        if len(partition) == 1:
            return score[partition[0]]
        pivot = score[partition[len(partition) // 2]]
        lo_stake = hi_stake = 0
        lower: list[int] = []
        upper: list[int] = []
        for idx in partition:
            if score[idx] == pivot:
                continue
            if score[idx] < pivot:
                lo_stake += stake[idx]
                lower.append(idx)
            else:
                hi_stake += stake[idx]
                upper.append(idx)
        if minority < partition_lo + lo_stake and lower:
            partition, partition_hi = lower, partition_lo + lo_stake
        elif partition_hi - hi_stake <= minority and upper:
            partition, partition_lo = upper, partition_hi - hi_stake
        else:
            return pivot
    return 0


def _check_median(stake: list[int], scores: list[list[int]], *, minority: int) -> None:
    got = weighted_median_columns(
        np.array(stake, dtype=np.int64), np.array(scores, dtype=np.int64), minority=minority
    )
    for column in range(len(scores[0])):
        expected = _chain_weighted_median(stake, [row[column] for row in scores], minority=minority)
        assert got[column] == expected, f"column {column}: stake={stake} minority={minority}"


def test_weighted_median_matches_chain_quickselect_on_random_inputs() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        rows = int(rng.integers(1, 12))
        stake = rng.integers(0, ONE // rows, size=rows).tolist()
        # Few distinct scores, so ties are common.
        scores = (rng.integers(0, 5, size=(rows, 6)) * (ONE // 4)).tolist()
        minority = int(rng.integers(-ONE // 4, sum(stake) + ONE // 4))
        _check_median(stake, scores, minority=minority)


def test_weighted_median_matches_chain_quickselect_at_exact_boundaries() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        rows = int(rng.integers(2, 9))
        stake = rng.integers(1, 1000, size=rows).tolist()
        scores = rng.integers(0, 4, size=(rows, 5)).tolist()
        # Minority equal to (and one off) every partial stake sum: the cases where >= vs > matters.
        prefix = np.cumsum(sorted(stake)).tolist()
        for boundary in [0, *prefix]:
            for minority in (boundary - 1, boundary, boundary + 1):
                _check_median(stake, scores, minority=minority)


def _inputs(
    *,
    stake: list[int],
    weights: list[list[tuple[int, int]]],
    permits: list[bool],
    block: int = 10_000,
) -> EpochInputs:
    n = len(stake)
    return EpochInputs(
        current_block=block,
        last_mechanism_step_block=block - 360,
        stake_rao=tuple(stake),
        last_update=tuple([block - 1] * n),
        block_at_registration=tuple([0] * n),
        weights=tuple(tuple(row) for row in weights),
        bonds=tuple(() for _ in range(n)),
        validator_permit=tuple(permits),
    )


def test_owner_keeps_self_weight_permit_and_threshold_exemption() -> None:
    inputs = _inputs(
        stake=[TAO // 2, 10 * TAO, 0],
        weights=[[(0, 65_535)], [(2, 65_535)], []],
        permits=[False, True, False],
    )
    params = EpochParams(owner_uid=0, stake_threshold=TAO)
    result = run_epoch(inputs, params)
    assert result.stake[0] > 0, "owner is exempt from the stake threshold"
    assert bool(result.validator_permit_used[0])
    assert bool(result.new_validator_permit[0])
    assert result.weights.rows()[0] == [(0, ONE)], "owner self-weight survives the diagonal mask"


def test_self_weight_is_masked_for_other_validators() -> None:
    inputs = _inputs(
        stake=[TAO, TAO, 0], weights=[[(0, 65_535)], [(2, 65_535)], []], permits=[True, True, False]
    )
    result = run_epoch(inputs, EpochParams())
    assert result.weights.rows()[0] == []
    assert result.weights.rows()[1] == [(2, ONE)]


def test_stake_below_threshold_counts_as_zero() -> None:
    inputs = _inputs(stake=[TAO // 2, 3 * TAO, 0], weights=[[], [], []], permits=[True, True, False])
    result = run_epoch(inputs, EpochParams(stake_threshold=TAO))
    assert result.stake.tolist() == [0, ONE, 0]
    assert result.new_validator_permit.tolist() == [False, True, False]


def test_permit_tie_at_the_cutoff_drops_the_lower_uid() -> None:
    inputs = _inputs(stake=[TAO, TAO, TAO, 0], weights=[[], [], [], []], permits=[True] * 4)
    result = run_epoch(inputs, EpochParams(max_allowed_validators=2))
    assert result.new_validator_permit.tolist() == [False, True, True, False]


def test_first_epoch_without_permits_pays_validators_by_stake() -> None:
    inputs = _inputs(
        stake=[TAO, 3 * TAO, 0],
        weights=[[(2, 65_535)], [(2, 65_535)], []],
        permits=[False, False, False],
    )
    result = run_epoch(inputs, EpochParams(rao_emission=1_000))
    assert result.emission_fallback_to_stake
    assert result.server_emission == (0, 0, 0)
    assert result.validator_emission == (250, 750, 0)
    assert result.new_validator_permit.tolist() == [True, True, False]


def test_bonds_are_cleared_when_a_validator_loses_its_permit() -> None:
    weights = [[(2, 65_535)], [(2, 65_535)], []]
    first = run_epoch(
        _inputs(stake=[TAO, 3 * TAO, 0], weights=weights, permits=[True, True, False]), EpochParams()
    )
    assert first.bonds_storage_rows()[0], "uid 0 holds bonds after the first epoch"
    second_inputs = EpochInputs(
        current_block=10_360,
        last_mechanism_step_block=10_000,
        stake_rao=(TAO, 3 * TAO, 0),
        last_update=(10_359, 10_359, 0),
        block_at_registration=(0, 0, 0),
        weights=tuple(tuple(row) for row in weights),
        bonds=first.bonds_storage_rows(),
        validator_permit=(True, True, False),
    )
    second = run_epoch(second_inputs, EpochParams(max_allowed_validators=1))
    assert second.new_validator_permit.tolist() == [False, True, False]
    assert second.bonds_storage_rows()[0] == ()
    assert second.bonds_storage_rows()[1] != ()


def test_inputs_reject_a_vector_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="last_update: expected 2 entries"):
        EpochInputs(
            current_block=1,
            last_mechanism_step_block=0,
            stake_rao=(1, 2),
            last_update=(0,),
            block_at_registration=(0, 0),
            weights=((), ()),
            bonds=((), ()),
            validator_permit=(True, True),
        )


def test_run_epoch_rejects_duplicate_and_out_of_range_uids() -> None:
    with pytest.raises(ValueError, match=r"weights\[0\]: duplicate uid"):
        run_epoch(_inputs(stake=[1, 1], weights=[[(1, 5), (1, 6)], []], permits=[True, True]), EpochParams())
    with pytest.raises(ValueError, match=r"weights\[1\]: uid out of range"):
        run_epoch(_inputs(stake=[1, 1], weights=[[], [(2, 5)]], permits=[True, True]), EpochParams())


@pytest.mark.parametrize(
    ("field", "value"),
    [("kappa", 65_536), ("bonds_penalty", -1), ("alpha_sigmoid_steepness", 40_000), ("yuma3_on", 1)],
)
def test_params_reject_values_outside_chain_types(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        EpochParams(**{field: value})  # type: ignore[arg-type]


def test_consensus_with_equal_split_takes_the_higher_score() -> None:
    # kappa = 32767/65535 is just below one half, so with a 50/50 stake split the higher weight wins.
    inputs = _inputs(
        stake=[TAO, TAO, 0, 0],
        weights=[[(2, 65_535), (3, 0)], [(2, 0), (3, 65_535)], [], []],
        permits=[True, True, False, False],
    )
    result = run_epoch(inputs, EpochParams())
    assert result.consensus.tolist() == [0, 0, ONE, ONE]
    assert fixed.fixed_proportion_to_u16(int(result.consensus[2])) == 65_535
