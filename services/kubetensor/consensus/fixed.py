"""Fixed-point arithmetic exactly as Bittensor's chain does it (substrate-fixed v0.6.0), on raw integers.

Called by ``kubetensor.consensus.yuma`` (the epoch) and ``kubetensor.consensus.replay``; the unit tests
pin its rounding down. A fixed-point number is carried as its raw integer ``raw = value * 2**frac``:
I32F32 has 32 fractional bits (``ONE = 2**32``), I64F64 has 64.

The rules below are those of ``substrate_fixed::arith`` (``mul_dir``/``div_dir`` widen to the next integer
size, multiply or divide, and narrow back):

* ``a * b`` is ``(raw_a * raw_b) >> frac``: an arithmetic shift, so it rounds toward minus infinity.
* ``a / b`` is ``(raw_a << frac) / raw_b`` with Rust integer division, which truncates toward zero (the
  same as flooring for the non-negative values of the epoch).
* ``safe_div`` (``safe_math``) is ``checked_div(..).unwrap_or_default()``: 0 when ``b == 0`` or on overflow.
* ``saturating_*`` clamp at the bounds of the type; ``saturating_to_num::<u16|u64>`` floors, then clamps.
* ``exp`` is ``substrate_fixed::transcendental::exp`` (a 30-term Taylor series on I32F32 with checked
  operations), and ``exp_safe`` is subtensor's ``math.rs::exp_safe`` that clamps its input to [-20, 20].

Two flavours are provided: scalar functions on Python ``int`` (exact by construction, any size), and
``*_array`` functions on ``numpy.int64`` arrays used by the epoch for speed. The array functions split
their operands into 16-bit limbs so that no intermediate leaves int64; each states the operand range it
is exact for, and the epoch only calls them inside those ranges (values in the epoch are proportions,
at most a few units, i.e. raw values below 2**36).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FRAC_BITS = 32
ONE = 1 << FRAC_BITS
HALF = 1 << (FRAC_BITS - 1)
U16_MAX = 65_535
U64_MAX = (1 << 64) - 1

I32F32_MIN = -(1 << 63)
I32F32_MAX = (1 << 63) - 1
I64F64_MIN = -(1 << 127)
I64F64_MAX = (1 << 127) - 1

# substrate_fixed::consts::E is a U2F126; transcendental.rs keeps 23 fractional bits of it
# (`E.to_bits() >> 103`, an I9F23), and `exp(1)` returns that constant widened to I32F32.
_E_U2F126_BITS = 0xADF8_5458_A2BB_4A9A_AFDC_5620_273D_3CF1
E_RAW = (_E_U2F126_BITS >> 103) << (FRAC_BITS - 23)
EXP_SAFE_LIMIT = 20 * ONE

_MASK16 = (1 << 16) - 1
_MASK32 = (1 << 32) - 1

Int64Array = npt.NDArray[np.int64]


# ---------------------------------------------------------------------------------------------------------
# Scalar helpers (Python int, I32F32 unless the name says I64F64)
# ---------------------------------------------------------------------------------------------------------


def saturate(raw: int) -> int:
    """Clamp a raw I32F32 value to the bounds of the type."""
    return max(I32F32_MIN, min(I32F32_MAX, raw))


def from_int(value: int) -> int:
    """``I32F32::saturating_from_num(value)`` for an integer."""
    return saturate(value << FRAC_BITS)


def to_float(raw: int) -> float:
    """The value of a raw I32F32 as a float (exact for |value| < 2**21)."""
    return raw / ONE


def _trunc_div(num: int, den: int) -> int:
    """Rust's integer division: the quotient truncated toward zero."""
    quotient = abs(num) // abs(den)
    return quotient if (num >= 0) == (den > 0) else -quotient


def checked_mul(a: int, b: int) -> int | None:
    """``I32F32::checked_mul``: floor of the product, ``None`` when it leaves the type."""
    product = (a * b) >> FRAC_BITS
    return product if I32F32_MIN <= product <= I32F32_MAX else None


def mul(a: int, b: int) -> int:
    """``I32F32::saturating_mul``: floor of the product, clamped to the type."""
    return saturate((a * b) >> FRAC_BITS)


def checked_div(a: int, b: int) -> int | None:
    """``I32F32::checked_div``: ``(a << 32) / b`` truncated toward zero; ``None`` on b == 0 or overflow."""
    if b == 0:
        return None
    quotient = _trunc_div(a << FRAC_BITS, b)
    return quotient if I32F32_MIN <= quotient <= I32F32_MAX else None


def safe_div(a: int, b: int) -> int:
    """``safe_math::SafeDiv`` on I32F32: the quotient, or 0 when ``b == 0`` (or it overflows)."""
    quotient = checked_div(a, b)
    return 0 if quotient is None else quotient


def saturating_div(a: int, b: int) -> int:
    """``I32F32::saturating_div``: the quotient clamped to the type (``b`` must not be 0)."""
    if b == 0:
        raise ZeroDivisionError("saturating_div by zero")
    return saturate(_trunc_div(a << FRAC_BITS, b))


def i64f64_safe_div(a: int, b: int) -> int:
    """``safe_div`` on raw I64F64 values (64 fractional bits)."""
    if b == 0:
        return 0
    quotient = _trunc_div(a << 64, b)
    return quotient if I64F64_MIN <= quotient <= I64F64_MAX else 0


def i64f64_to_i32f32(raw64: int) -> int:
    """``I32F32::saturating_from_num(I64F64)``: drop 32 fractional bits (floor), clamp."""
    return saturate(raw64 >> 32)


def to_u16(raw: int) -> int:
    """``saturating_to_num::<u16>()``: floor to an integer, clamp to [0, 65535]."""
    return max(0, min(U16_MAX, raw >> FRAC_BITS))


def to_u64(raw: int) -> int:
    """``saturating_to_num::<u64>()`` of an I32F32 or I96F32 (32 fractional bits)."""
    return max(0, min(U64_MAX, raw >> FRAC_BITS))


def fixed_proportion_to_u16(raw: int) -> int:
    """subtensor ``fixed_proportion_to_u16``: ``floor(x * 65535)`` clamped to u16."""
    return to_u16(mul(raw, from_int(U16_MAX)))


def u16_proportion_to_fixed(value: int) -> int:
    """subtensor ``u16_proportion_to_fixed``: ``value / 65535`` as I32F32 (floor)."""
    return safe_div(from_int(value), from_int(U16_MAX))


def round_half_away(raw: int) -> int:
    """``I32F32::round``: to the nearest integer, ties away from zero (result is raw I32F32)."""
    if raw >= 0:
        return ((raw + HALF) >> FRAC_BITS) << FRAC_BITS
    return -(((-raw + HALF) >> FRAC_BITS) << FRAC_BITS)


def emission_rao(share_raw: int, rao: int) -> int:
    """``(I96F32::from(share) * I96F32::from(rao)).saturating_to_num::<u64>()``: floor, clamp to u64."""
    return max(0, min(U64_MAX, (share_raw * rao) >> FRAC_BITS))


def vec_max_upscale_to_u16(values: Sequence[int]) -> list[int]:
    """subtensor ``vec_max_upscale_to_u16`` on raw I32F32 values: scale so the max becomes 65535, round.

    Follows the chain's two branches: above 32768 it multiplies by ``65535 / max`` (which keeps the
    product inside I32F32), otherwise it divides ``x * 65535`` by the max.
    """
    if not values:
        return []
    u16_max = from_int(U16_MAX)
    top = max(values)
    if top == 0:
        return [to_u16(mul(v, u16_max)) for v in values]
    if top > from_int(32_768):
        factor = safe_div(u16_max, top)
        return [to_u16(round_half_away(mul(v, factor))) for v in values]
    return [to_u16(round_half_away(safe_div(mul(v, u16_max), top))) for v in values]


def vec_u16_max_upscale_to_u16(values: Sequence[int]) -> list[int]:
    """subtensor ``vec_u16_max_upscale_to_u16``: what ``set_weights`` stores for a row of u16 weights."""
    return vec_max_upscale_to_u16([from_int(v) for v in values])


def exp(raw: int) -> int | None:
    """``substrate_fixed::transcendental::exp`` for I32F32; ``None`` where the chain returns ``Err``."""
    if raw == 0:
        return ONE
    if raw == ONE:
        return E_RAW
    negative = raw < 0
    operand = -raw if negative else raw
    result = operand + ONE
    term = operand
    for i in range(2, FRAC_BITS):
        product = checked_mul(term, operand)
        if product is None:
            return None
        quotient = checked_div(product, from_int(i))
        if quotient is None:
            return None
        term = quotient
        result += term
        if result > I32F32_MAX:
            return None
    if negative:
        return checked_div(ONE, result)
    return result


def exp_safe(raw: int) -> int:
    """subtensor ``math.rs::exp_safe``: ``exp`` of the input clamped to [-20, 20]."""
    clamped = max(-EXP_SAFE_LIMIT, min(EXP_SAFE_LIMIT, raw))
    value = exp(clamped)
    if value is None:
        # Unreachable inside [-20, 20] (exp(20) < 2**29); kept to mirror the chain's fallback.
        return 0 if clamped <= 0 else I32F32_MAX
    return value


# ---------------------------------------------------------------------------------------------------------
# numpy int64 helpers (raw I32F32 arrays)
# ---------------------------------------------------------------------------------------------------------


def mul_array(a: Int64Array | int, b: Int64Array | int) -> Int64Array:
    """Elementwise ``saturating_mul`` (floor) of raw I32F32 arrays, without leaving int64.

    Exact when ``|a * b| < 2**78`` and ``|b| < 2**46`` (any signs): ``a`` is split into a high part and a
    16-bit low limb, and ``floor(x / 2**32) == floor(floor(x / 2**16) / 2**16)``.
    """
    left = np.asarray(a, dtype=np.int64)
    right = np.asarray(b, dtype=np.int64)
    high = left >> 16
    low = left & _MASK16
    result: Int64Array = (high * right + ((low * right) >> 16)) >> 16
    return result


def safe_div_array(a: Int64Array | int, b: Int64Array | int) -> Int64Array:
    """Elementwise ``safe_div`` (floor) of non-negative raw I32F32 arrays; 0 where ``b == 0``.

    Exact for ``0 <= a < 2**47``, ``0 <= b < 2**47`` with a quotient inside I32F32: ``a * 2**32 / b`` is
    done as two 16-bit long-division steps, so no intermediate exceeds ``b * 2**16``.
    """
    num = np.asarray(a, dtype=np.int64)
    den = np.asarray(b, dtype=np.int64)
    zero = den == 0
    safe_den = np.where(zero, 1, den)
    shifted = num << 16
    q_high = shifted // safe_den
    rem = shifted - q_high * safe_den
    quotient = (q_high << 16) + ((rem << 16) // safe_den)
    result: Int64Array = np.where(zero, 0, quotient).astype(np.int64)
    return result


def div_two_pow_64_array(den: Int64Array) -> Int64Array:
    """``floor(2**64 / den)`` for ``den >= 2**32``: the raw of ``I32F32::ONE / x`` for ``x >= 1``."""
    den_u = den.astype(np.uint64)
    quotient = np.uint64(U64_MAX) // den_u
    # (2**64 - 1) // d equals 2**64 // d except when d divides 2**64, i.e. d is a power of two.
    power_of_two = (den_u & (den_u - np.uint64(1))) == 0
    result: Int64Array = (quotient + power_of_two.astype(np.uint64)).astype(np.int64)
    return result


def _mul_wide_nonneg(term: Int64Array, operand: Int64Array) -> Int64Array:
    """``floor(term * operand / 2**32)`` for ``0 <= term < 2**63``, ``0 <= operand < 2**47`` when it fits."""
    t_high = term >> 32
    t_low = term & _MASK32
    o_high = operand >> 16
    o_low = operand & _MASK16
    result: Int64Array = t_high * operand + ((t_low * o_high + ((t_low * o_low) >> 16)) >> 16)
    return result


def exp_safe_array(raw: Int64Array) -> Int64Array:
    """Elementwise ``exp_safe`` on raw I32F32 values, bit-identical to the scalar ``exp_safe``.

    Inside [-20, 20] no step of the chain's series overflows I32F32 (its largest term, 20**20/20!, and
    its sum, e**20, stay below 2**31), so the series runs unchecked on int64 with a widened multiply.
    """
    clamped = np.clip(np.asarray(raw, dtype=np.int64), -EXP_SAFE_LIMIT, EXP_SAFE_LIMIT)
    negative = clamped < 0
    operand = np.abs(clamped)
    result = operand + ONE
    term = operand.copy()
    for i in range(2, FRAC_BITS):
        term = _mul_wide_nonneg(term, operand) // i
        result = result + term
    if negative.any():
        result = np.where(negative, div_two_pow_64_array(np.where(negative, result, ONE)), result)
    result = np.where(clamped == 0, ONE, result)
    out: Int64Array = np.where(clamped == ONE, E_RAW, result).astype(np.int64)
    return out


def fixed_proportion_to_u16_array(raw: Int64Array) -> Int64Array:
    """Elementwise ``fixed_proportion_to_u16`` for ``0 <= raw < 2**47``."""
    result: Int64Array = np.clip((np.asarray(raw, dtype=np.int64) * U16_MAX) >> FRAC_BITS, 0, U16_MAX)
    return result
