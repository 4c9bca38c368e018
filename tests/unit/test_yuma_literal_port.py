"""run_epoch against a literal, line-by-line port of subtensor's sparse epoch on random scenarios.

The reference vectors exercise the default paths; this test reaches the rest (bonds penalty strictly
between 0 and 1, owner uids, stake thresholds, inactive and re-registered uids, explicit zero weights,
self-weights, negative sigmoid steepness, liquid alpha with a bonds penalty, odd kappas) by comparing
the vectorized integer implementation with a slow scalar port of ``epoch_mechanism`` and ``math.rs``
written directly from the Rust code on Python ints. Both carry their own bonds and permits forward.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from kubetensor.consensus import fixed
from kubetensor.consensus.fixed import HALF, ONE, U16_MAX
from kubetensor.consensus.yuma import EpochInputs, EpochParams, run_epoch

Rows = list[list[tuple[int, int]]]


def _normalize(x: list[int]) -> list[int]:
    total = sum(x)
    return list(x) if total == 0 else [fixed.safe_div(v, total) for v in x]


def _col_normalize(rows: Rows, n: int) -> Rows:
    sums = [0] * n
    for row in rows:
        for j, v in row:
            sums[j] += v
    return [[(j, v if sums[j] == 0 else fixed.safe_div(v, sums[j])) for j, v in row] for row in rows]


def _weighted_median(stake: list[int], score: list[int], *, minority: int, hi: int) -> int:
    partition, lo = list(range(len(stake))), 0
    while True:
        if not partition:
            return 0
        if len(partition) == 1:
            return score[partition[0]]
        pivot = score[partition[len(partition) // 2]]
        lower = [i for i in partition if score[i] < pivot]
        upper = [i for i in partition if score[i] > pivot]
        lo_stake = sum(stake[i] for i in lower)
        hi_stake = sum(stake[i] for i in upper)
        if minority < lo + lo_stake and lower:
            partition, hi = lower, lo + lo_stake
        elif hi - hi_stake <= minority and upper:
            partition, lo = upper, hi - hi_stake
        else:
            return pivot


def _mat_ema_sparse(new: Rows, old: Rows, *, alpha: int, n: int) -> Rows:
    out = []
    for new_row, old_row in zip(new, old, strict=True):
        acc = [0] * n
        for j, v in new_row:
            acc[j] += fixed.mul(alpha, v)
        for j, v in old_row:
            acc[j] += fixed.mul(ONE - alpha, v)
        out.append([(j, v) for j, v in enumerate(acc) if v > 0])
    return out


def _alpha_sigmoid(params: EpochParams, *, c: int, w: int, b: int) -> int:
    low = fixed.safe_div(fixed.from_int(params.alpha_low), fixed.from_int(U16_MAX))
    high = fixed.safe_div(fixed.from_int(params.alpha_high), fixed.from_int(U16_MAX))
    steepness = fixed.from_int(params.alpha_sigmoid_steepness)
    diff_buy = min(max(w - c, 0), ONE)
    diff_sell = min(max(b - w, 0), ONE)
    diff = diff_buy if w >= b else diff_sell
    slope = fixed.saturating_div(steepness, fixed.from_int(-100))
    sigmoid = fixed.saturating_div(ONE, ONE + fixed.exp_safe(fixed.mul(slope, diff - HALF)))
    alpha = low + fixed.mul(sigmoid, high - low)
    return max(min(alpha, high), low)


def chain_epoch(inputs: EpochInputs, params: EpochParams) -> dict[str, Any]:
    """Literal port of ``Pallet::epoch_mechanism`` (sparse) on Python ints."""
    n = inputs.n
    block = inputs.current_block
    owner = params.owner_uid if params.owner_uid is not None and params.owner_uid < n else None
    inactive = [u + params.activity_cutoff < block for u in inputs.last_update]
    reg = inputs.block_at_registration

    filtered = [
        0 if uid != owner and s < params.stake_threshold else s for uid, s in enumerate(inputs.stake_rao)
    ]
    total = sum(filtered)
    stake = [fixed.i64f64_to_i32f32(fixed.i64f64_safe_div(s << 64, total << 64)) for s in filtered]
    permits = list(inputs.validator_permit)
    new_permits = [s != 0 for s in stake]
    if n >= params.max_allowed_validators:
        for uid in sorted(range(n), key=lambda i: stake[i])[: n - params.max_allowed_validators]:
            new_permits[uid] = False
    if owner is not None:
        permits[owner] = True
        new_permits[owner] = True
    active_stake = _normalize([0 if inactive[i] or not permits[i] else s for i, s in enumerate(stake)])

    weights: Rows = [[(j, fixed.from_int(w)) for j, w in row if j < n] for row in inputs.weights]
    weights = [[] if not permits[i] else row for i, row in enumerate(weights)]
    weights = [
        [(j, v) for j, v in row if i != j or (i == owner and j == owner)] for i, row in enumerate(weights)
    ]
    weights = [
        [(j, v) for j, v in row if not inputs.last_update[i] <= reg[j]] for i, row in enumerate(weights)
    ]
    weights = [
        [(j, fixed.safe_div(v, sum(x for _, x in row))) for j, v in row]
        if sum(x for _, x in row) > 0
        else row
        for row in weights
    ]

    kappa = fixed.safe_div(fixed.from_int(params.kappa), fixed.from_int(U16_MAX))
    use_stake = _normalize([s for s in active_stake if s > 0])
    minority = sum(use_stake) - kappa
    voter_rows = [dict(weights[i]) for i in range(n) if active_stake[i] > 0]
    consensus = [
        _weighted_median(
            use_stake, [row.get(c, 0) for row in voter_rows], minority=minority, hi=sum(use_stake)
        )
        for c in range(n)
    ]
    clipped: Rows = [
        [(j, min(v, consensus[j])) for j, v in row if not (consensus[j] < v and consensus[j] <= 0)]
        for row in weights
    ]
    validator_trust = [sum(v for _, v in row) for row in clipped]
    ranks = [0] * n
    for i, row in enumerate(clipped):
        for j, v in row:
            ranks[j] += fixed.mul(active_stake[i], v)
    incentive = _normalize(ranks)

    beta = fixed.safe_div(fixed.from_int(params.bonds_penalty), fixed.from_int(U16_MAX))
    if beta == 0:
        wfb = weights
    elif beta == ONE:
        wfb = clipped
    else:
        wfb = []
        for row1, row2 in zip(weights, clipped, strict=True):
            d1, d2 = dict(row1), dict(row2)
            interp = [d1.get(j, 0) + fixed.mul(beta, d2.get(j, 0) - d1.get(j, 0)) for j in range(n)]
            wfb.append([(j, v) for j, v in enumerate(interp) if v > 0])

    lms = inputs.last_mechanism_step_block
    last_tempo = max(block - params.tempo, 0) if lms == 0 else lms + 1
    bma = fixed.i64f64_to_i32f32(fixed.i64f64_safe_div(params.bonds_moving_average << 64, 1_000_000 << 64))
    alpha = ONE - bma
    if params.yuma3_on:
        bonds = [[(j, fixed.u16_proportion_to_fixed(b)) for j, b in row] for row in inputs.bonds]
        bonds = [[(j, v) for j, v in row if not last_tempo <= reg[j]] for row in bonds]
        if params.liquid_alpha_on and any(c != 0 for c in consensus):
            ema = []
            for w_row, b_row in zip(wfb, bonds, strict=True):
                wd, bd = dict(w_row), dict(b_row)
                alphas = [
                    _alpha_sigmoid(params, c=consensus[j], w=wd.get(j, 0), b=bd.get(j, 0)) for j in range(n)
                ]
                decayed = [0] * n
                for j, v in b_row:
                    decayed[j] = fixed.mul(ONE - alphas[j], v)
                out = []
                for j, v in w_row:
                    val = min(decayed[j] + max(fixed.mul(alphas[j], v), 0), ONE)
                    if val > 0:
                        out.append((j, val))
                ema.append(out)
        else:
            ema = _mat_ema_sparse(wfb, bonds, alpha=alpha, n=n)
        ema_norm = _col_normalize(ema, n)
        per_validator = [sum(fixed.mul(v, incentive[j]) for j, v in row) for row in ema_norm]
        dividends = _normalize([fixed.mul(t, a) for t, a in zip(per_validator, active_stake, strict=True)])
        stored = ema
    else:
        bonds = [[(j, fixed.from_int(b)) for j, b in row] for row in inputs.bonds]
        bonds = _col_normalize([[(j, v) for j, v in row if not last_tempo <= reg[j]] for row in bonds], n)
        delta = _col_normalize(
            [[(j, fixed.mul(v, active_stake[i])) for j, v in row] for i, row in enumerate(wfb)], n
        )
        ema = _col_normalize(_mat_ema_sparse(delta, bonds, alpha=alpha, n=n), n)
        dividends = _normalize([sum(fixed.mul(incentive[j], v) for j, v in row) for row in ema])
        col_max = [0] * n
        for row in ema:
            for j, v in row:
                col_max[j] = max(col_max[j], v)
        stored = [
            [(j, v if col_max[j] == 0 else fixed.safe_div(v, col_max[j])) for j, v in row] for row in ema
        ]

    bonds_out = []
    for i in range(n):
        if new_permits[i]:
            bonds_out.append([(j, fixed.fixed_proportion_to_u16(v)) for j, v in stored[i]])
        elif permits[i]:
            bonds_out.append([])
        else:
            bonds_out.append(list(inputs.bonds[i]))

    combined = [a + b for a, b in zip(incentive, dividends, strict=True)]
    emission_sum = sum(combined)
    server = [fixed.safe_div(x, emission_sum) for x in incentive] if emission_sum else list(incentive)
    validator = [fixed.safe_div(x, emission_sum) for x in dividends] if emission_sum else list(dividends)
    combined_share = _normalize(combined)
    if emission_sum == 0:
        source = stake if sum(active_stake) == 0 else active_stake
        validator, combined_share = list(source), list(source)
    return {
        "consensus": consensus,
        "validator_trust": validator_trust,
        "incentive": incentive,
        "dividends": dividends,
        "new_validator_permit": new_permits,
        "bonds_storage": bonds_out,
        "server_emission": [fixed.emission_rao(x, params.rao_emission) for x in server],
        "validator_emission": [fixed.emission_rao(x, params.rao_emission) for x in validator],
        "combined_emission": [fixed.emission_rao(x, params.rao_emission) for x in combined_share],
    }


def _random_params(rng: np.random.Generator, n: int) -> EpochParams:
    low = int(rng.integers(1_638, 40_000))
    return EpochParams(
        kappa=int(rng.choice([32_767, int(rng.integers(0, U16_MAX + 1))])),
        bonds_penalty=int(rng.choice([0, U16_MAX, int(rng.integers(1, U16_MAX))])),
        bonds_moving_average=int(rng.choice([900_000, 975_000, int(rng.integers(0, 1_000_001))])),
        yuma3_on=bool(rng.integers(0, 2)),
        liquid_alpha_on=bool(rng.integers(0, 2)),
        alpha_low=low,
        alpha_high=int(rng.integers(low, U16_MAX + 1)),
        alpha_sigmoid_steepness=int(rng.choice([1_000, int(rng.integers(-3_000, 3_001))])),
        max_allowed_validators=int(rng.integers(1, n + 2)),
        activity_cutoff=int(rng.choice([5_000, 500])),
        tempo=360,
        stake_threshold=int(rng.choice([0, 10**9])),
        rao_emission=int(rng.integers(1, 10**12)),
        owner_uid=None if rng.random() < 0.5 else int(rng.integers(0, n)),
    )


def _random_weights(rng: np.random.Generator, n: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    rows: list[tuple[tuple[int, int], ...]] = []
    for _ in range(n):
        if rng.random() < 0.3:
            rows.append(())
            continue
        cols = sorted(int(c) for c in np.nonzero(rng.random(n) < 0.6)[0])
        values = [int(rng.choice([0, int(rng.integers(1, U16_MAX + 1))], p=[0.15, 0.85])) for _ in cols]
        stored = fixed.vec_u16_max_upscale_to_u16(values)
        rows.append(tuple(zip(cols, stored, strict=True)))
    return tuple(rows)


def _compare(got: Any, want: dict[str, Any], *, where: str) -> None:
    assert got.consensus.tolist() == want["consensus"], f"{where}: consensus"
    assert got.validator_trust.tolist() == want["validator_trust"], f"{where}: validator_trust"
    assert got.incentive.tolist() == want["incentive"], f"{where}: incentive"
    assert got.dividends.tolist() == want["dividends"], f"{where}: dividends"
    assert got.new_validator_permit.tolist() == want["new_validator_permit"], f"{where}: permits"
    assert [list(r) for r in got.bonds_storage_rows()] == want["bonds_storage"], f"{where}: bonds"
    for name in ("server_emission", "validator_emission", "combined_emission"):
        assert list(getattr(got, name)) == want[name], f"{where}: {name}"


@pytest.mark.parametrize("seed", range(100))
def test_run_epoch_matches_literal_chain_port_on_random_scenarios(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 11))
    params = _random_params(rng, n)
    stake = tuple(int(rng.choice([0, int(rng.integers(1, 10**12))], p=[0.25, 0.75])) for _ in range(n))
    registered = [0] * n
    permits = tuple(bool(b) for b in rng.integers(0, 2, size=n))
    bonds_port: Any = tuple(() for _ in range(n))
    bonds_ours: Any = bonds_port
    permits_port, permits_ours = permits, permits
    for epoch in range(5):
        block = 10_000 + 360 * epoch
        if epoch and rng.random() < 0.3:
            registered[int(rng.integers(0, n))] = block - int(rng.integers(1, 400))
        last_update = tuple(
            block - 1 if rng.random() < 0.8 else int(rng.integers(0, block)) for _ in range(n)
        )
        base = EpochInputs(
            current_block=block,
            last_mechanism_step_block=0 if epoch == 0 else block - 360,
            stake_rao=stake,
            last_update=last_update,
            block_at_registration=tuple(registered),
            weights=_random_weights(rng, n),
            bonds=bonds_ours,
            validator_permit=permits_ours,
        )
        ours = run_epoch(base, params)
        port = chain_epoch(replace(base, bonds=bonds_port, validator_permit=permits_port), params)
        _compare(ours, port, where=f"seed {seed} epoch {epoch} ({params})")
        bonds_ours = ours.bonds_storage_rows()
        permits_ours = tuple(bool(p) for p in ours.new_validator_permit.tolist())
        bonds_port = tuple(tuple(row) for row in port["bonds_storage"])
        permits_port = tuple(port["new_validator_permit"])
