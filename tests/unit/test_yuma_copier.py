"""Yuma 3 makes weight copying unprofitable: a validator that copies another's weights one epoch late
earns smaller dividends than the validator it copies, at equal stake.

The scenario is written in the vectors' chain form and replayed with ``run_replay``, as a user would.
Validator A (uid 0) sets honest weights whose peak moves across the miners every epoch; validator B
(uid 1, same stake) submits A's weights of the previous epoch. A control run where B copies with no
lag shows the comparison is not vacuous: then the two earn exactly the same.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import pytest
from kubetensor.consensus.replay import run_replay

MINERS = 6
EPOCHS = 16
FINAL_EPOCHS = 6
TAO = 10**9


def _honest_weights(epoch: int) -> list[int]:
    """A bump over the miners that moves by 0.6 miner per epoch, max-scaled to u16 as the SDK does."""
    centre = (epoch * 0.6) % MINERS
    raw = [math.exp(-(((j - centre) % MINERS) ** 2) / 1.5) + 0.02 for j in range(MINERS)]
    top = max(raw)
    return [round(x / top * 65_535) for x in raw]


def _scenario(*, lag: int, honest_stake_tao: int) -> dict[str, Any]:
    validators = 3
    n = validators + MINERS
    epochs = []
    for t in range(EPOCHS):
        block = 10_000 + 360 * t
        honest = [[validators + j, w] for j, w in enumerate(_honest_weights(t))]
        copied = [[validators + j, w] for j, w in enumerate(_honest_weights(max(t - lag, 0)))]
        third = honest if honest_stake_tao else []
        epochs.append(
            {
                "current_block": block,
                "last_mechanism_step_block": 0 if t == 0 else block - 360,
                "stake_rao": [1_000 * TAO, 1_000 * TAO, honest_stake_tao * TAO] + [0] * MINERS,
                "last_update": [block - 1] * validators + [0] * MINERS,
                "block_at_registration": [0] * n,
                "weights_u16": [honest, copied, third] + [[] for _ in range(MINERS)],
            }
        )
    params = {
        "kappa": 32_767,
        "bonds_penalty": 65_535,
        "bonds_moving_average": 900_000,
        "yuma3_on": True,
        "liquid_alpha_on": False,
        "alpha_low": 45_875,
        "alpha_high": 58_982,
        "alpha_sigmoid_steepness": 1_000,
        "max_allowed_validators": 128,
        "activity_cutoff": 5_000,
        "tempo": 360,
        "stake_threshold": 0,
        "rao_emission": 295_200_000_000,
        "owner_uid": None,
    }
    return {
        "schema": "yuma-vectors/v1",
        "scenario": {"name": "copier", "n_validators": validators, "n_miners": MINERS},
        "inputs": {
            "chain": {
                "tempo": 360,
                "init_permits": [True] * validators + [False] * MINERS,
                "epochs": epochs,
            }
        },
        "results": {"chain_yuma3": {"params": params}},
    }


def _dividend_gaps(tmp_path: pathlib.Path, *, lag: int, honest_stake_tao: int) -> list[float]:
    path = tmp_path / f"copier_lag{lag}.json"
    path.write_text(json.dumps(_scenario(lag=lag, honest_stake_tao=honest_stake_tao)), encoding="utf-8")
    epochs = run_replay(path, "chain_yuma3")["epochs"]
    return [epoch["dividends"][0] - epoch["dividends"][1] for epoch in epochs]


@pytest.mark.parametrize("honest_stake_tao", [0, 3_000], ids=["two-validators", "honest-majority"])
def test_copier_earns_less_than_original_under_yuma3(tmp_path: pathlib.Path, honest_stake_tao: int) -> None:
    gaps = _dividend_gaps(tmp_path, lag=1, honest_stake_tao=honest_stake_tao)
    final = gaps[-FINAL_EPOCHS:]
    assert all(gap > 0 for gap in final), f"A - B dividends over the final epochs: {final}"
    assert sum(final) / len(final) > 0.01


@pytest.mark.parametrize("honest_stake_tao", [0, 3_000], ids=["two-validators", "honest-majority"])
def test_copier_earns_the_same_when_copying_without_lag(
    tmp_path: pathlib.Path, honest_stake_tao: int
) -> None:
    gaps = _dividend_gaps(tmp_path, lag=0, honest_stake_tao=honest_stake_tao)
    assert gaps == [0.0] * EPOCHS
