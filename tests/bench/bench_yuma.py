"""Benchmark of one Yuma epoch: kubetensor's chain-exact implementation against plain float64 numpy.

Run by hand or by ``make bench`` as ``python tests/bench/bench_yuma.py --out results.json``; imported by
``tests/bench/test_bench_yuma_smoke.py``, which runs it at a tiny size and checks the JSON shape.

For each case (n uids = validators + miners, each validator weighting a random half of the miners) it
first runs a few epochs so that bonds exist, then times the same epoch repeatedly with both
implementations in the same process:

* ``kubetensor``: ``kubetensor.consensus.yuma.run_epoch`` (I32F32 integer arithmetic, bit-exact with
  the chain), from its public inputs (sparse weight and bond rows) to its result;
* ``float64_reference``: ``reference_epoch`` below, the same steps in float64 on dense arrays (no
  fixed point, no sparse presence bookkeeping), the fastest straightforward numpy version.

The JSON holds, per case, the median and minimum seconds of each and their ratio (kubetensor / float64),
plus the largest dividend difference between the two as a sanity check. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

try:
    from kubetensor.consensus.yuma import EpochInputs, EpochParams, run_epoch
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "services"))
    from kubetensor.consensus.yuma import EpochInputs, EpochParams, run_epoch

FloatArray = npt.NDArray[np.float64]

DEFAULT_SIZES = ((64, 192), (256, 768))
VARIANTS: dict[str, EpochParams] = {
    "yuma2": EpochParams(),
    "yuma3": EpochParams(yuma3_on=True),
    "yuma3_liquid": EpochParams(
        yuma3_on=True, liquid_alpha_on=True, alpha_low=6_553, alpha_high=19_660, bonds_penalty=0
    ),
}
TEMPO = 360
WARMUP_EPOCHS = 3


@dataclass(frozen=True)
class Scenario:
    """Random but reproducible subnet: stakes, last updates and the validators' u16 weight rows."""

    validators: int
    miners: int
    stake_rao: tuple[int, ...]
    weights: tuple[tuple[tuple[int, int], ...], ...]
    dense_weights: FloatArray

    @property
    def n(self) -> int:
        return self.validators + self.miners


def make_scenario(*, validators: int, miners: int, density: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    n = validators + miners
    rows: list[tuple[tuple[int, int], ...]] = []
    dense = np.zeros((n, n))
    for _ in range(validators):
        cols = np.nonzero(rng.random(miners) < density)[0] + validators
        if cols.size == 0:
            cols = np.array([validators])
        vals = rng.integers(1, 65_536, size=cols.size)
        vals[int(np.argmax(vals))] = 65_535  # set_weights stores rows max-upscaled
        rows.append(tuple(zip(cols.tolist(), vals.tolist(), strict=True)))
        dense[len(rows) - 1, cols] = vals
    rows.extend(() for _ in range(miners))
    stake = [int(s) for s in rng.integers(10**9, 10**13, size=validators)] + [0] * miners
    return Scenario(validators, miners, tuple(stake), tuple(rows), dense)


def _inputs(scenario: Scenario, *, epoch: int, bonds: Any, permits: tuple[bool, ...]) -> EpochInputs:
    block = 10_000 + TEMPO * epoch
    n = scenario.n
    return EpochInputs(
        current_block=block,
        last_mechanism_step_block=0 if epoch == 0 else block - TEMPO,
        stake_rao=scenario.stake_rao,
        last_update=tuple([block - 1] * scenario.validators + [0] * scenario.miners),
        block_at_registration=tuple([0] * n),
        weights=scenario.weights,
        bonds=bonds,
        validator_permit=permits,
    )


# ---------------------------------------------------------------------------------------------------------
# float64 reference: the same steps as the chain epoch, in plain numpy floating point
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceState:
    bonds_u16: FloatArray
    permits: npt.NDArray[np.bool_]


def _normalize(x: FloatArray) -> FloatArray:
    total = x.sum()
    return x / total if total != 0 else x


def _col_normalize(x: FloatArray) -> FloatArray:
    sums = x.sum(axis=0)
    result: FloatArray = np.divide(x, sums, out=np.zeros_like(x), where=sums != 0)
    return result


def reference_epoch(
    scenario: Scenario, state: ReferenceState, *, params: EpochParams, block: int
) -> tuple[FloatArray, ReferenceState]:
    """One epoch in float64; returns (dividends, next state). Masks that never fire here are kept."""
    n = scenario.n
    last_update = np.array([block - 1] * scenario.validators + [0] * scenario.miners, dtype=np.float64)
    inactive = last_update + params.activity_cutoff < block
    stake_raw = np.array(scenario.stake_rao, dtype=np.float64)
    stake = _normalize(np.where(stake_raw < params.stake_threshold, 0.0, stake_raw))
    permit = state.permits
    order = np.argsort(stake, kind="stable")
    new_permit = stake != 0
    if n >= params.max_allowed_validators:
        new_permit[order[: n - params.max_allowed_validators]] = False
    active_stake = _normalize(np.where(inactive | ~permit, 0.0, stake))

    w = np.where(permit[:, None], scenario.dense_weights, 0.0)
    np.fill_diagonal(w, 0.0)
    w = _normalize_rows(w)

    kappa = params.kappa / 65_535
    voters = np.nonzero(active_stake > 0)[0]
    use_stake = _normalize(active_stake[voters])
    scores = w[voters]
    srt = np.argsort(scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, srt, axis=0)
    above = np.cumsum(use_stake[srt], axis=0) > use_stake.sum() - kappa
    idx = np.where(above.any(axis=0), above.argmax(axis=0), len(voters) - 1)
    consensus = sorted_scores[idx, np.arange(n)]

    clipped = np.minimum(w, consensus[None, :])
    incentive = _normalize(active_stake @ clipped)
    beta = params.bonds_penalty / 65_535
    wfb = w + beta * (clipped - w)
    alpha = 1.0 - params.bonds_moving_average / 1_000_000
    if params.yuma3_on:
        bonds = state.bonds_u16 / 65_535
        if params.liquid_alpha_on and (consensus != 0).any():
            low, high = params.alpha_low / 65_535, params.alpha_high / 65_535
            diff = np.where(wfb >= bonds, np.clip(wfb - consensus, 0, 1), np.clip(bonds - wfb, 0, 1))
            sig = 1.0 / (1.0 + np.exp(np.clip(params.alpha_sigmoid_steepness / -100 * (diff - 0.5), -20, 20)))
            alphas = np.clip(low + sig * (high - low), low, high)
            ema = np.where(wfb > 0, np.minimum((1 - alphas) * bonds + alphas * wfb, 1.0), 0.0)
        else:
            ema = alpha * wfb + (1 - alpha) * bonds
        dividends = _normalize(active_stake * (_col_normalize(ema) @ incentive))
        stored = np.floor(ema * 65_535)
    else:
        bonds = _col_normalize(state.bonds_u16)
        delta = _col_normalize(wfb * active_stake[:, None])
        ema = _col_normalize(alpha * delta + (1 - alpha) * bonds)
        dividends = _normalize(ema @ incentive)
        col_max = ema.max(axis=0)
        stored = np.floor(np.divide(ema, col_max, out=np.zeros_like(ema), where=col_max != 0) * 65_535)
    stored = np.where(new_permit[:, None], stored, np.where(permit[:, None], 0.0, state.bonds_u16))
    return dividends, ReferenceState(stored, new_permit)


def _normalize_rows(w: FloatArray) -> FloatArray:
    sums = w.sum(axis=1, keepdims=True)
    result: FloatArray = np.divide(w, sums, out=np.zeros_like(w), where=sums > 0)
    return result


# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------


def _summary(samples: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(samples), "min_s": min(samples)}


def bench_case(
    *, validators: int, miners: int, variant: str, density: float, repeats: int, seed: int
) -> dict[str, Any]:
    params = replace(VARIANTS[variant], max_allowed_validators=validators)
    scenario = make_scenario(validators=validators, miners=miners, density=density, seed=seed)
    n = scenario.n
    permits = tuple([True] * validators + [False] * miners)
    bonds: Any = tuple(() for _ in range(n))
    ref_state = ReferenceState(np.zeros((n, n)), np.array(permits))
    for epoch in range(WARMUP_EPOCHS):
        result = run_epoch(_inputs(scenario, epoch=epoch, bonds=bonds, permits=permits), params)
        bonds = result.bonds_storage_rows()
        permits = tuple(bool(p) for p in result.new_validator_permit.tolist())
        _, ref_state = reference_epoch(scenario, ref_state, params=params, block=10_000 + TEMPO * epoch)

    inputs = _inputs(scenario, epoch=WARMUP_EPOCHS, bonds=bonds, permits=permits)
    block = inputs.current_block
    exact_times: list[float] = []
    ref_times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run_epoch(inputs, params)
        exact_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref_dividends, _ = reference_epoch(scenario, ref_state, params=params, block=block)
        ref_times.append(time.perf_counter() - start)

    exact = _summary(exact_times)
    reference = _summary(ref_times)
    exact_dividends = result.dividends.astype(np.float64) / 2**32
    return {
        "name": f"n{n}_{variant}",
        "n": n,
        "validators": validators,
        "miners": miners,
        "density": density,
        "variant": variant,
        "repeats": repeats,
        "kubetensor": exact,
        "float64_reference": reference,
        "ratio_median": exact["median_s"] / reference["median_s"],
        "ratio_min": exact["min_s"] / reference["min_s"],
        "max_abs_dividend_diff": float(np.max(np.abs(exact_dividends - ref_dividends))),
    }


def run_benchmark(
    *,
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES,
    variants: tuple[str, ...] = tuple(VARIANTS),
    density: float = 0.5,
    repeats: int = 7,
    seed: int = 1,
) -> dict[str, Any]:
    cases = [
        bench_case(validators=v, miners=m, variant=name, density=density, repeats=repeats, seed=seed)
        for v, m in sizes
        for name in variants
    ]
    return {
        "benchmark": "yuma_epoch",
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "cases": cases,
    }


def _parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    sizes = []
    for part in text.split(","):
        validators, miners = part.split(":")
        sizes.append((int(validators), int(miners)))
    return tuple(sizes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="where to write the JSON results")
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=DEFAULT_SIZES,
        help="validators:miners pairs, e.g. 64:192,256:768",
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {', '.join(VARIANTS)}")
    parser.add_argument(
        "--density", type=float, default=0.5, help="fraction of miners each validator weights"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case and implementation")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    results = run_benchmark(
        sizes=args.sizes, variants=variants, density=args.density, repeats=args.repeats, seed=args.seed
    )
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for case in results["cases"]:
        exact_ms = case["kubetensor"]["median_s"] * 1e3
        reference_ms = case["float64_reference"]["median_s"] * 1e3
        print(
            f"{case['name']:>18}: kubetensor {exact_ms:8.2f} ms, float64 {reference_ms:8.2f} ms, "
            f"ratio {case['ratio_median']:.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
