"""Unit tests for kubetensor.consensus.fixed: the chain's fixed-point rounding, pinned down.

Scalar helpers are checked against exact rational arithmetic and the chain's documented quirks; the
numpy helpers the epoch uses are checked to be bit-identical to the scalar ones over their ranges.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from kubetensor.consensus import fixed
from kubetensor.consensus.fixed import E_RAW, ONE, U16_MAX
from kubetensor.consensus.yuma import EpochParams, liquid_alpha

RNG_SEED = 20_240_601


def _floor(x: Fraction) -> int:
    return math.floor(x)


def test_mul_is_floor_of_raw_product_for_random_operands() -> None:
    rng = np.random.default_rng(RNG_SEED)
    for a, b in rng.integers(-(1 << 36), 1 << 36, size=(500, 2)).tolist():
        assert fixed.mul(a, b) == _floor(Fraction(a * b, ONE))


def test_mul_rounds_toward_minus_infinity_for_negative_products() -> None:
    assert fixed.mul(1, 1) == 0
    assert fixed.mul(-1, 1) == -1
    assert fixed.mul(-ONE // 2, 3) == -2


def test_mul_saturates_at_type_bounds() -> None:
    big = fixed.from_int(1 << 30)
    assert fixed.mul(big, big) == fixed.I32F32_MAX
    assert fixed.mul(-big, big) == fixed.I32F32_MIN
    assert fixed.checked_mul(big, big) is None


def test_checked_div_truncates_toward_zero_like_rust() -> None:
    assert fixed.checked_div(ONE, 3 * ONE) == (1 << 32) // 3
    assert fixed.checked_div(-ONE, 3 * ONE) == -((1 << 32) // 3)
    assert fixed.checked_div(fixed.from_int(1000), fixed.from_int(-100)) == fixed.from_int(-10)
    assert fixed.saturating_div(fixed.from_int(1234), fixed.from_int(-100)) == -((1234 << 32) // 100)


def test_safe_div_returns_zero_when_divisor_is_zero() -> None:
    assert fixed.safe_div(ONE, 0) == 0
    assert fixed.i64f64_safe_div(1 << 64, 0) == 0


def test_safe_div_returns_zero_when_quotient_overflows() -> None:
    assert fixed.safe_div(fixed.from_int(1 << 30), 1) == 0


def test_safe_div_floors_non_negative_quotients() -> None:
    rng = np.random.default_rng(RNG_SEED)
    for a, b in rng.integers(0, 1 << 40, size=(500, 2)).tolist():
        if b and a < b << 20:
            assert fixed.safe_div(a, b) == _floor(Fraction(a * ONE, b))


def test_i64f64_normalization_floors_twice() -> None:
    # Stake 1 of 10: I64F64 floor(2**64 / 10), then I32F32 drops 32 bits: floor(2**32 / 10).
    share = fixed.i64f64_to_i32f32(fixed.i64f64_safe_div(1 << 64, 10 << 64))
    assert share == (1 << 32) // 10
    assert share / ONE == pytest.approx(0.09999999986030161, abs=0)


def test_fixed_proportion_to_u16_floors_and_saturates() -> None:
    assert fixed.fixed_proportion_to_u16(ONE) == U16_MAX
    assert fixed.fixed_proportion_to_u16(ONE - 1) == U16_MAX - 1
    assert fixed.fixed_proportion_to_u16(2 * ONE) == U16_MAX
    assert fixed.fixed_proportion_to_u16(-ONE) == 0
    assert fixed.fixed_proportion_to_u16(ONE // 2) == 32_767


def test_u16_round_trip_loses_one_step_except_at_the_ends() -> None:
    # The chain re-reads u16 bonds as floor(v * 2**32 / 65535) and stores floor(x * 65535): every value
    # strictly between 0 and 65535 comes back one step lower.
    round_trip = [fixed.fixed_proportion_to_u16(fixed.u16_proportion_to_fixed(v)) for v in range(U16_MAX + 1)]
    assert round_trip[0] == 0
    assert round_trip[U16_MAX] == U16_MAX
    assert all(round_trip[v] == v - 1 for v in range(1, U16_MAX))


def test_u16_proportion_to_fixed_floors() -> None:
    assert fixed.u16_proportion_to_fixed(U16_MAX) == ONE
    assert fixed.u16_proportion_to_fixed(32_767) == (32_767 << 32) // U16_MAX


def test_round_half_away_from_zero() -> None:
    assert fixed.round_half_away(ONE + ONE // 2) == 2 * ONE
    assert fixed.round_half_away(ONE + ONE // 2 - 1) == ONE
    assert fixed.round_half_away(-(ONE + ONE // 2)) == -2 * ONE


def test_max_upscale_rounds_half_away_from_zero() -> None:
    assert fixed.vec_u16_max_upscale_to_u16([0, 1, 2, 3, 4]) == [0, 16_384, 32_768, 49_151, 65_535]
    assert fixed.vec_u16_max_upscale_to_u16([2, 1]) == [65_535, 32_768]


def test_max_upscale_above_32768_floors_the_factor_first() -> None:
    # 20000 * 65535 / 40000 = 32767.5 exactly, but the chain multiplies by floor(65535 / 40000) first, so
    # the product lands just below .5 and rounds down.
    assert fixed.vec_u16_max_upscale_to_u16([40_000, 20_000, 1]) == [65_535, 32_767, 2]


def test_max_upscale_of_zeros_and_empty() -> None:
    assert fixed.vec_u16_max_upscale_to_u16([0, 0]) == [0, 0]
    assert fixed.vec_u16_max_upscale_to_u16([]) == []


def test_emission_rao_floors_share_times_amount() -> None:
    assert fixed.emission_rao((1 << 32) // 10, 1_000_000_000) == 99_999_999
    assert fixed.emission_rao(ONE, 295_200_000_000) == 295_200_000_000


def test_exp_of_zero_and_one_are_the_chain_constants() -> None:
    assert fixed.exp(0) == ONE
    # substrate-fixed returns e truncated to 23 fractional bits for exp(1).
    assert E_RAW == 22_802_600 << 9
    assert fixed.exp(ONE) == E_RAW


def test_exp_matches_float_exp_where_the_series_converges() -> None:
    # x == 1 is special-cased by the chain (23-bit e, tested above); everything else runs the series.
    for k in [k for k in range(-50, 51) if k != 10]:
        x = k * ONE // 10
        value = fixed.exp(x)
        assert value is not None
        assert value / ONE == pytest.approx(math.exp(x / ONE), rel=1e-8, abs=1e-9)


def test_exp_of_negative_is_reciprocal_of_positive() -> None:
    for x in (ONE // 3, 2 * ONE + 12_345, 7 * ONE):
        positive = fixed.exp(x)
        assert positive is not None
        assert fixed.exp(-x) == (1 << 64) // positive


def test_exp_series_is_truncated_like_the_chain_at_large_inputs() -> None:
    # 30 terms do not converge at x = 20; the chain's value is ~0.8% below e**20 and we keep it.
    value = fixed.exp(20 * ONE)
    assert value is not None
    assert value / ONE == pytest.approx(481_239_357.674, rel=1e-9)
    assert value / ONE < math.exp(20) * 0.995


def test_exp_safe_clamps_input_to_plus_minus_twenty() -> None:
    assert fixed.exp_safe(25 * ONE) == fixed.exp_safe(20 * ONE)
    assert fixed.exp_safe(-25 * ONE) == fixed.exp_safe(-20 * ONE)
    assert fixed.exp_safe(fixed.I32F32_MIN) == fixed.exp_safe(-20 * ONE)


def test_exp_safe_array_is_bit_identical_to_scalar() -> None:
    rng = np.random.default_rng(RNG_SEED)
    values = np.concatenate(
        [
            rng.integers(-22 * ONE, 22 * ONE, size=400),
            np.array([0, 1, -1, ONE, -ONE, 20 * ONE, -20 * ONE, ONE // 2, -(ONE // 2)], dtype=np.int64),
        ]
    )
    got = fixed.exp_safe_array(values).tolist()
    assert got == [fixed.exp_safe(v) for v in values.tolist()]


def test_mul_array_is_bit_identical_to_scalar_for_signed_operands() -> None:
    rng = np.random.default_rng(RNG_SEED)
    a = rng.integers(-(1 << 36), 1 << 36, size=1000)
    b = rng.integers(-(1 << 40), 1 << 40, size=1000)
    assert fixed.mul_array(a, b).tolist() == [
        fixed.mul(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)
    ]


def test_safe_div_array_is_bit_identical_to_scalar() -> None:
    rng = np.random.default_rng(RNG_SEED)
    den = rng.integers(0, 1 << 42, size=1000)
    den[::7] = 0
    num = (rng.random(1000) * den).astype(np.int64)
    expected = [fixed.safe_div(x, y) for x, y in zip(num.tolist(), den.tolist(), strict=True)]
    assert fixed.safe_div_array(num, den).tolist() == expected


def test_div_two_pow_64_array_handles_powers_of_two() -> None:
    den = np.array([ONE, 2 * ONE, 3 * ONE, (1 << 40) + 1, 1 << 62], dtype=np.int64)
    assert fixed.div_two_pow_64_array(den).tolist() == [(1 << 64) // d for d in den.tolist()]


def test_fixed_proportion_to_u16_array_matches_scalar() -> None:
    values = np.array([-5, 0, 1, ONE // 2, ONE - 1, ONE, 3 * ONE], dtype=np.int64)
    assert fixed.fixed_proportion_to_u16_array(values).tolist() == [
        fixed.fixed_proportion_to_u16(v) for v in values.tolist()
    ]


def test_liquid_alpha_at_zero_diff_matches_the_chain() -> None:
    # Value the chain computed for combined_diff = 0 with AlphaValues (6553, 19660) and steepness 1000
    # (tests/data/yuma-vectors/*.json, results.chain_yuma3_liquid, liquid_alphas).
    params = EpochParams(alpha_low=6_553, alpha_high=19_660, alpha_sigmoid_steepness=1_000)
    alpha = liquid_alpha(np.array([0], dtype=np.int64), params)
    assert alpha.tolist() == [round(0.10133094037882984 * ONE)]
