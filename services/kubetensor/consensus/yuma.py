"""One Yuma Consensus epoch exactly as Bittensor's chain runs it (``Pallet::epoch_mechanism``).

Called by kubetensor's chain service once per tempo, by ``kubetensor.consensus.replay`` (the
``kubetensor yuma replay`` command) and by the tests and the benchmark. The module is pure: no I/O, no
clock, no global state. ``run_epoch(inputs, params)`` takes the chain storage an epoch reads
(``EpochInputs``) and the subnet hyperparameters (``EpochParams``) and returns everything the epoch
computes and writes (``EpochResult``), including the ``Bonds`` storage and the permits that the caller
feeds into the next epoch.

How the chain's numbers are reproduced bit for bit
--------------------------------------------------
The chain computes in substrate-fixed ``I32F32`` (``I64F64`` for the stake, ``I96F32`` for rao amounts).
Every quantity here is carried as the same raw integer (``raw = value * 2**32``) and every operation is
the chain's operation on that integer, from ``kubetensor.consensus.fixed``: products floor
(``(a*b) >> 32``), quotients floor (``(a << 32) // b``), ``safe_div`` returns 0 for a zero divisor, u16
conversions floor and saturate, and liquid alpha uses a port of substrate-fixed's ``exp`` series. No
floating point is involved, so there is no tolerance to tune: results are the chain's integers.

Speed comes from numpy int64 arrays. Sparse chain matrices (``Vec<Vec<(u16, I32F32)>>``) are held as a
dense value matrix plus a presence mask, because presence matters (an explicit zero weight keeps a
bond column alive under liquid alpha; a clipped weight is dropped only when consensus is 0), for the
rows that can hold entries only (permitted uids with weights, uids with stored bonds; miners' rows are
always empty). Products
and quotients go through ``fixed.mul_array``/``fixed.safe_div_array``, which split operands into 16-bit
limbs so that no intermediate leaves int64 for the ranges the epoch produces (proportions, raw < 2**36).
Sums are exact integer sums, so their order does not matter, unlike floating point. Values that can be
large (stake in rao, emission in rao) are handled as Python ints. The stake-weighted median, a
quick-select on chain, is computed by sorting each column: with exact integer partial sums the
quick-select returns the smallest score ``v`` whose stake ``S(score <= v)`` exceeds ``sum - kappa``
(or the largest score when none does), which the sort finds directly.

Deliberate limits: the commit-reveal column mask (``CommitRevealWeightsEnabled``: weights committed
before a uid re-registered) is not modelled, there is one mechanism per subnet, and stake is an integer
amount of rao. Sparse rows are treated as sorted by uid (the chain's liquid-alpha lookup walks rows in
uid order and would miss an entry that is out of order; SDK-submitted rows are sorted).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kubetensor.consensus import fixed
from kubetensor.consensus.fixed import ONE, U16_MAX

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
SparseRows = tuple[tuple[tuple[int, int], ...], ...]
"""Chain-storage form of a sparse matrix: per uid, ``(uid, u16)`` pairs."""

_U64_MAX = (1 << 64) - 1
_I16_MIN, _I16_MAX = -(1 << 15), (1 << 15) - 1


def _check_range(name: str, value: int, *, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class EpochParams:
    """Subnet hyperparameters in the chain's raw units (defaults: the runtime's defaults)."""

    kappa: int = 32_767
    """``Kappa`` (u16): consensus majority, kappa / 65535."""
    bonds_penalty: int = 65_535
    """``BondsPenalty`` (u16): beta / 65535; 65535 makes bonds use clipped weights."""
    bonds_moving_average: int = 900_000
    """``BondsMovingAverage`` (parts per million): EMA alpha = 1 - bma / 1e6."""
    yuma3_on: bool = False
    """``Yuma3On``: relative bonds (Yuma 3) instead of the classic column-normalized EMA."""
    liquid_alpha_on: bool = False
    """``LiquidAlphaOn``: per-bond alpha from a sigmoid (Yuma 3 only)."""
    alpha_low: int = 45_875
    """``AlphaValues.0`` (u16): lowest liquid alpha, alpha_low / 65535."""
    alpha_high: int = 58_982
    """``AlphaValues.1`` (u16): highest liquid alpha, alpha_high / 65535."""
    alpha_sigmoid_steepness: int = 1_000
    """``AlphaSigmoidSteepness`` (i16): sigmoid steepness times 100."""
    max_allowed_validators: int = 128
    """``MaxAllowedValidators`` (u16): top-k stake holders get a validator permit."""
    activity_cutoff: int = 5_000
    """Activity cutoff in blocks: a uid is inactive when ``last_update + cutoff < current_block``."""
    tempo: int = 360
    """``Tempo`` in blocks; used for the recently-registered bond mask of a subnet's first epoch."""
    stake_threshold: int = 0
    """``StakeThreshold`` in rao: smaller stakes count as 0 (the owner is exempt)."""
    rao_emission: int = 295_200_000_000
    """Alpha in rao this epoch distributes (the ``rao_emission`` argument of the epoch)."""
    owner_uid: int | None = None
    """Uid of ``SubnetOwnerHotkey`` when registered: permit forced, threshold-exempt, self-weight kept."""

    def __post_init__(self) -> None:
        for name in ("kappa", "bonds_penalty", "alpha_low", "alpha_high", "max_allowed_validators"):
            _check_range(name, getattr(self, name), low=0, high=U16_MAX)
        for name in ("bonds_moving_average", "activity_cutoff", "tempo", "stake_threshold", "rao_emission"):
            _check_range(name, getattr(self, name), low=0, high=_U64_MAX)
        _check_range("alpha_sigmoid_steepness", self.alpha_sigmoid_steepness, low=_I16_MIN, high=_I16_MAX)
        if self.owner_uid is not None:
            _check_range("owner_uid", self.owner_uid, low=0, high=U16_MAX)
        for name in ("yuma3_on", "liquid_alpha_on"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected a bool, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class EpochInputs:
    """The chain storage one epoch reads, uid-indexed (``n = len(stake_rao)``)."""

    current_block: int
    """Block the epoch runs in."""
    last_mechanism_step_block: int
    """``LastMechansimStepBlock``: block of the previous successful epoch, 0 if none."""
    stake_rao: tuple[int, ...]
    """Total stake weight per uid in rao (alpha plus weighted root TAO, inheritance applied)."""
    last_update: tuple[int, ...]
    """``LastUpdate``: block of each uid's last weight set."""
    block_at_registration: tuple[int, ...]
    """``BlockAtRegistration``: block each uid was last (re)registered."""
    weights: SparseRows
    """``Weights`` storage: per uid the ``(uid, u16)`` pairs as stored (after set_weights' max-upscale)."""
    bonds: SparseRows
    """``Bonds`` storage written by the previous epoch (``EpochResult.bonds_storage_rows()``)."""
    validator_permit: tuple[bool, ...]
    """``ValidatorPermit`` written by the previous epoch (``EpochResult.new_validator_permit``)."""

    @property
    def n(self) -> int:
        """Number of uids (``SubnetworkN``)."""
        return len(self.stake_rao)

    def __post_init__(self) -> None:
        n = len(self.stake_rao)
        for name in ("last_update", "block_at_registration", "weights", "bonds", "validator_permit"):
            length = len(getattr(self, name))
            if length != n:
                raise ValueError(f"{name}: expected {n} entries (one per uid), got {length}")
        for name in ("current_block", "last_mechanism_step_block"):
            _check_range(name, getattr(self, name), low=0, high=_U64_MAX)
        for name in ("stake_rao", "last_update", "block_at_registration"):
            for uid, value in enumerate(getattr(self, name)):
                _check_range(f"{name}[{uid}]", value, low=0, high=_U64_MAX)


@dataclass(frozen=True, eq=False)
class SparseMatrix:
    """An n x n chain sparse matrix, held densely for the rows that can hold entries.

    Row ``row_ids[k]`` has ``values[k, j]`` at the columns where ``mask[k, j]``; rows not in ``row_ids``
    are empty. ``values`` is raw I32F32 (value = raw / 2**32) for fixed-point matrices, plain u16 for
    storage.
    """

    n: int
    row_ids: Int64Array
    values: Int64Array
    mask: BoolArray

    def rows(self) -> list[list[tuple[int, int]]]:
        """Per row (all n of them), the present ``(column, value)`` pairs in column order."""
        out: list[list[tuple[int, int]]] = [[] for _ in range(self.n)]
        k_idx, col_idx = np.nonzero(self.mask)
        bounds = np.searchsorted(k_idx, np.arange(len(self.row_ids) + 1)).tolist()
        cols: list[int] = col_idx.tolist()
        vals: list[int] = self.values[k_idx, col_idx].tolist()
        for k, uid in enumerate(self.row_ids.tolist()):
            lo, hi = bounds[k], bounds[k + 1]
            out[uid] = list(zip(cols[lo:hi], vals[lo:hi], strict=True))
        return out

    def to_dense(self) -> tuple[Int64Array, BoolArray]:
        """The full n x n ``(values, mask)``, zero and absent outside ``row_ids``."""
        values = np.zeros((self.n, self.n), dtype=np.int64)
        mask = np.zeros((self.n, self.n), dtype=bool)
        values[self.row_ids] = self.values
        mask[self.row_ids] = self.mask
        return values, mask


@dataclass(frozen=True, eq=False)
class EpochResult:
    """Everything one epoch computes. Fixed-point vectors and matrices are raw I32F32 int64 arrays."""

    n: int
    current_block: int
    last_tempo: int
    """Block used by the recently-registered bond mask (``lms + 1``, or ``block - tempo`` if lms is 0)."""
    active: BoolArray
    stake: Int64Array
    """S: stake after the threshold, normalized (stored as ``StakeWeight``)."""
    validator_permit_used: BoolArray
    """Permits this epoch masked with (the previous epoch's, owner forced on)."""
    new_validator_permit: BoolArray
    """Permits written for the next epoch (top-k nonzero stake, owner forced on)."""
    active_stake: Int64Array
    weights: SparseMatrix
    """W: weights after the permit, diagonal and outdated masks, row-normalized."""
    consensus: Int64Array
    clipped_weights: SparseMatrix
    validator_trust: Int64Array
    incentive: Int64Array
    weights_for_bonds: SparseMatrix
    bonds_in: SparseMatrix
    """Previous bonds after the recently-registered mask (column-normalized in the classic path)."""
    liquid_alphas: Int64Array | None
    """Dense n x n liquid alpha when liquid alpha ran this epoch, else None."""
    ema_bonds: SparseMatrix
    """Bonds after the EMA: column max-upscaled (classic) or absolute (Yuma 3)."""
    ema_bonds_col_normalized: SparseMatrix
    """The column-normalized bonds the dividends are computed from."""
    bonds_storage_out: SparseMatrix
    """The ``Bonds`` storage after the epoch, u16 values (rows not written keep their old value)."""
    dividends: Int64Array
    emission_fallback_to_stake: bool
    normalized_server_emission: Int64Array
    normalized_validator_emission: Int64Array
    normalized_combined_emission: Int64Array
    server_emission: tuple[int, ...]
    """Rao per uid for serving (incentive share of ``rao_emission``)."""
    validator_emission: tuple[int, ...]
    """Rao per uid for validating (dividend share of ``rao_emission``)."""
    combined_emission: tuple[int, ...]
    """Rao per uid stored as ``Emission`` (used for pruning)."""
    legacy_rank: Int64Array
    """Normalized ranks (``Rank`` storage, removed from the chain 2025-10-29); equals incentive."""
    legacy_trust: Int64Array
    """Ranks over preranks (``Trust`` storage, removed 2025-10-29)."""
    legacy_pruning_score_u16: Int64Array
    """``PruningScores`` (removed 2025-10-29): combined emission share, max-upscaled to u16."""

    @property
    def stake_weight_u16(self) -> Int64Array:
        """``StakeWeight`` storage."""
        return fixed.fixed_proportion_to_u16_array(self.stake)

    @property
    def consensus_u16(self) -> Int64Array:
        """``Consensus`` storage."""
        return fixed.fixed_proportion_to_u16_array(self.consensus)

    @property
    def incentive_u16(self) -> Int64Array:
        """``Incentive`` storage."""
        return fixed.fixed_proportion_to_u16_array(self.incentive)

    @property
    def dividends_u16(self) -> Int64Array:
        """``Dividends`` storage."""
        return fixed.fixed_proportion_to_u16_array(self.dividends)

    @property
    def validator_trust_u16(self) -> Int64Array:
        """``ValidatorTrust`` storage."""
        return fixed.fixed_proportion_to_u16_array(self.validator_trust)

    @property
    def legacy_rank_u16(self) -> Int64Array:
        """``Rank`` storage before 2025-10-29."""
        return fixed.fixed_proportion_to_u16_array(self.legacy_rank)

    @property
    def legacy_trust_u16(self) -> Int64Array:
        """``Trust`` storage before 2025-10-29."""
        return fixed.fixed_proportion_to_u16_array(self.legacy_trust)

    def bonds_storage_rows(self) -> SparseRows:
        """``Bonds`` storage in chain form, to pass as ``EpochInputs.bonds`` of the next epoch."""
        return tuple(tuple(row) for row in self.bonds_storage_out.rows())


def _dense_u16(rows: SparseRows, row_ids: Int64Array, *, n: int, name: str) -> tuple[Int64Array, BoolArray]:
    """The chain sparse rows ``row_ids`` of u16 pairs as a dense (len(row_ids), n) value matrix and mask."""
    selected = [rows[uid] for uid in row_ids.tolist()]
    counts = [len(row) for row in selected]
    total = sum(counts)
    values = np.zeros((len(selected), n), dtype=np.int64)
    mask = np.zeros((len(selected), n), dtype=bool)
    if total == 0:
        return values, mask
    pairs = itertools.chain.from_iterable(selected)
    if sum(map(len, itertools.chain.from_iterable(selected))) != 2 * total:
        raise ValueError(f"{name}: every entry must be a (uid, u16) pair")
    flat = np.fromiter(itertools.chain.from_iterable(pairs), dtype=np.int64, count=2 * total).reshape(
        total, 2
    )
    cols = flat[:, 0]
    vals = flat[:, 1]
    k_idx = np.repeat(np.arange(len(selected), dtype=np.int64), counts)
    bad_col = (cols < 0) | (cols >= n)
    if bad_col.any():
        raise ValueError(f"{name}[{int(row_ids[k_idx[np.argmax(bad_col)]])}]: uid out of range [0, {n})")
    bad_val = (vals < 0) | (vals > U16_MAX)
    if bad_val.any():
        raise ValueError(
            f"{name}[{int(row_ids[k_idx[np.argmax(bad_val)]])}]: value out of range [0, {U16_MAX}]"
        )
    values[k_idx, cols] = vals
    mask[k_idx, cols] = True
    per_row = mask.sum(axis=1)
    if (per_row != np.array(counts)).any():
        raise ValueError(f"{name}[{int(row_ids[np.argmax(per_row != np.array(counts))])}]: duplicate uid")
    return values, mask


def _normalize(vector: Int64Array) -> Int64Array:
    """``inplace_normalize``: divide by the sum (floor), unchanged when the sum is 0."""
    total = int(vector.sum())
    if total == 0:
        return vector.copy()
    return fixed.safe_div_array(vector, total)


def _col_normalize(values: Int64Array, mask: BoolArray) -> Int64Array:
    """``inplace_col_normalize_sparse``: divide present entries by their column sum when it is not 0."""
    col_sum = np.where(mask, values, 0).sum(axis=0)
    result: Int64Array = np.where(mask, fixed.safe_div_array(values, col_sum[None, :]), 0)
    return result


def _is_topk_nonzero(vector: Int64Array, k: int) -> BoolArray:
    """``is_topk_nonzero``: nonzero entries, minus the n-k smallest by a stable ascending sort."""
    result: BoolArray = vector != 0
    n = vector.shape[0]
    if n < k:
        return result
    order = np.argsort(vector, kind="stable")
    result[order[: n - k]] = False
    return result


def weighted_median_columns(stake: Int64Array, scores: Int64Array, *, minority: int) -> Int64Array:
    """``weighted_median_col_sparse`` for all columns at once.

    ``stake`` (r,) holds the positive, re-normalized active stake of the r voting rows and ``scores`` (r, n)
    their weights (0 where absent). The chain's mid-pivot quick-select keeps exact integer partial sums,
    so it returns the smallest score ``v`` with ``S(score <= v) > minority``; if no score qualifies it
    ends on the largest score. Sorting each column and scanning the cumulative stake gives the same.
    """
    n_rows, n_cols = scores.shape
    if n_rows == 0:
        return np.zeros(n_cols, dtype=np.int64)
    order = np.argsort(scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    cumulative = np.cumsum(stake[order], axis=0)
    above = cumulative > minority
    index = np.where(above.any(axis=0), above.argmax(axis=0), n_rows - 1)
    result: Int64Array = sorted_scores[index, np.arange(n_cols)]
    return result


def liquid_alpha(combined_diff: Int64Array, params: EpochParams) -> Int64Array:
    """``liquid_alpha_sigmoid`` of the ``combined_diff`` values (raw I32F32), elementwise.

    alpha = clamp(low + sigmoid * (high - low), low, high) with
    sigmoid = 1 / (1 + exp_safe((steepness / -100) * (diff - 0.5))). alpha depends on the diff only, so it
    is evaluated once per distinct diff.
    """
    low = fixed.u16_proportion_to_fixed(params.alpha_low)
    high = fixed.u16_proportion_to_fixed(params.alpha_high)
    slope = fixed.saturating_div(fixed.from_int(params.alpha_sigmoid_steepness), fixed.from_int(-100))
    distinct, inverse = np.unique(combined_diff, return_inverse=True)
    exponent = fixed.mul_array(distinct - fixed.HALF, slope)
    sigmoid = fixed.div_two_pow_64_array(fixed.exp_safe_array(exponent) + ONE)
    alpha = np.clip(low + fixed.mul_array(sigmoid, high - low), None, high)
    alpha = np.maximum(alpha, low)
    result: Int64Array = alpha[inverse.reshape(combined_diff.shape)]
    return result


def _scatter(values: Int64Array, row_ids: Int64Array, *, n: int) -> Int64Array:
    """A per-row vector of the held rows as an n-vector (0 for the other uids)."""
    out = np.zeros(n, dtype=np.int64)
    out[row_ids] = values
    return out


def _emission(shares: Int64Array, rao: int) -> tuple[int, ...]:
    return tuple(fixed.emission_rao(share, rao) for share in shares.tolist())


def run_epoch(inputs: EpochInputs, params: EpochParams) -> EpochResult:
    """Run one epoch (``Pallet::epoch_mechanism``) over ``inputs`` with ``params``; see the module doc."""
    n = inputs.n
    current_block = inputs.current_block
    owner = params.owner_uid if params.owner_uid is not None and params.owner_uid < n else None

    # == Activity ==
    last_update = np.array(inputs.last_update, dtype=np.uint64).reshape(n)
    registered = np.array(inputs.block_at_registration, dtype=np.uint64).reshape(n)
    inactive: BoolArray = np.array(
        [min(u + params.activity_cutoff, _U64_MAX) < current_block for u in inputs.last_update], dtype=bool
    ).reshape(n)
    active: BoolArray = ~inactive

    # == Stake (I64F64, normalized, then I32F32) ==
    filtered = [
        0 if (uid != owner and s < params.stake_threshold) else s for uid, s in enumerate(inputs.stake_rao)
    ]
    stake_sum = sum(filtered)
    stake_list = [
        fixed.i64f64_to_i32f32(fixed.i64f64_safe_div(s << 64, stake_sum << 64) if stake_sum else s << 64)
        for s in filtered
    ]
    stake = np.array(stake_list, dtype=np.int64).reshape(n)

    # == Validator permits ==
    permit_used = np.array(inputs.validator_permit, dtype=bool).reshape(n)
    new_permit = _is_topk_nonzero(stake, params.max_allowed_validators)
    if owner is not None:
        permit_used[owner] = True
        new_permit[owner] = True

    # == Active stake ==
    active_stake = _normalize(np.where(inactive | ~permit_used, 0, stake))

    # Matrices are held for the rows that can hold entries: permitted uids with weights (other weight
    # rows are masked away) and uids with stored bonds. Every other row is empty in every matrix.
    has_weights = np.array([len(row) > 0 for row in inputs.weights], dtype=bool).reshape(n) & permit_used
    has_bonds = np.array([len(row) > 0 for row in inputs.bonds], dtype=bool).reshape(n)
    row_ids = np.nonzero(has_weights | has_bonds)[0].astype(np.int64)
    k_range = np.arange(row_ids.size)

    # == Weights: permit rows, diagonal (owner kept), outdated, row-normalize ==
    w_u16, w_mask = _dense_u16(inputs.weights, row_ids, n=n, name="weights")
    w_mask &= permit_used[row_ids][:, None]
    diagonal = w_mask[k_range, row_ids].copy()
    w_mask[k_range, row_ids] = False
    if owner is not None and has_weights[owner]:
        k_owner = int(np.searchsorted(row_ids, owner))
        w_mask[k_owner, owner] = diagonal[k_owner]
    w_mask &= ~(last_update[row_ids][:, None] <= registered[None, :])
    w_u16 = np.where(w_mask, w_u16, 0)
    row_sum = w_u16.sum(axis=1)
    # Weights are I32F32 integers (u16 << 32); the quotient (w << 64) / (sum << 32) is (w << 32) // sum.
    weights = np.where(row_sum[:, None] > 0, (w_u16 << 32) // np.maximum(row_sum, 1)[:, None], 0)

    # == Consensus: stake-weighted median per column over the rows with active stake ==
    kappa = fixed.safe_div(fixed.from_int(params.kappa), fixed.from_int(U16_MAX))
    voters = np.nonzero(active_stake > 0)[0]
    use_stake = _normalize(active_stake[voters])
    minority = int(use_stake.sum()) - kappa
    position = np.full(n, -1, dtype=np.int64)
    position[row_ids] = k_range
    voter_pos = position[voters]
    scores = np.zeros((voters.size, n), dtype=np.int64)
    scores[voter_pos >= 0] = weights[voter_pos[voter_pos >= 0]]
    consensus = weighted_median_columns(use_stake, scores, minority=minority)

    # == Clipping, validator trust ==
    threshold = consensus[None, :]
    over = weights > threshold
    clipped_mask = w_mask & ~(over & (threshold <= 0))
    clipped = np.where(clipped_mask, np.minimum(weights, threshold), 0)
    validator_trust = _scatter(clipped.sum(axis=1), row_ids, n=n)

    # == Ranks, incentive ==
    row_stake = active_stake[row_ids][:, None]
    ranks = fixed.mul_array(row_stake, clipped).sum(axis=0)
    preranks = fixed.mul_array(row_stake, weights).sum(axis=0)
    legacy_trust = fixed.safe_div_array(ranks, preranks)
    incentive = _normalize(ranks)

    # == Weights for bonds (bonds penalty) ==
    beta = fixed.safe_div(fixed.from_int(params.bonds_penalty), fixed.from_int(U16_MAX))
    if beta == 0:
        wfb, wfb_mask = weights, w_mask
    elif beta == ONE:
        wfb, wfb_mask = clipped, clipped_mask
    else:
        interp = weights + fixed.mul_array(clipped - weights, beta)
        wfb_mask = interp > 0
        wfb = np.where(wfb_mask, interp, 0)

    # == Bonds and dividends ==
    lms = inputs.last_mechanism_step_block
    last_tempo = max(current_block - params.tempo, 0) if lms == 0 else lms + 1
    recently_registered = np.uint64(last_tempo) <= registered
    b_u16_stored, b_mask_stored = _dense_u16(inputs.bonds, row_ids, n=n, name="bonds")
    b_mask = b_mask_stored & ~recently_registered[None, :]
    b_u16 = np.where(b_mask, b_u16_stored, 0)
    bma = fixed.i64f64_to_i32f32(fixed.i64f64_safe_div(params.bonds_moving_average << 64, 1_000_000 << 64))
    ema_alpha = ONE - bma
    liquid_alphas: Int64Array | None = None

    if params.yuma3_on:
        bonds_in = (b_u16 << 32) // U16_MAX
        if params.liquid_alpha_on and bool((consensus != 0).any()):
            diff_buy = np.clip(wfb - threshold, 0, ONE)
            diff_sell = np.clip(bonds_in - wfb, 0, ONE)
            alphas = liquid_alpha(np.where(wfb >= bonds_in, diff_buy, diff_sell), params)
            decayed = fixed.mul_array(ONE - alphas, bonds_in)
            increment = np.maximum(fixed.mul_array(alphas, wfb), 0)
            ema_val = np.minimum(decayed + increment, ONE)
            ema_mask = wfb_mask & (ema_val > 0)
            # Rows without weights or bonds have weight = bond = 0, so their diff is 0.
            liquid_alphas = np.broadcast_to(liquid_alpha(np.zeros(1, dtype=np.int64), params), (n, n)).copy()
            liquid_alphas[row_ids] = alphas
        else:
            ema_val = fixed.mul_array(ema_alpha, wfb) + fixed.mul_array(ONE - ema_alpha, bonds_in)
            ema_mask = ema_val > 0
        ema = np.where(ema_mask, ema_val, 0)
        ema_norm = _col_normalize(ema, ema_mask)
        bonds_per_validator = fixed.mul_array(ema_norm, incentive[None, :]).sum(axis=1)
        dividends = _normalize(
            _scatter(fixed.mul_array(bonds_per_validator, active_stake[row_ids]), row_ids, n=n)
        )
        ema_out = ema
    else:
        col_sum = b_u16.sum(axis=0)
        # Bonds are I32F32 integers (u16 << 32), so their column-normalized value is (b << 32) // sum.
        bonds_in = np.where(col_sum[None, :] > 0, (b_u16 << 32) // np.maximum(col_sum, 1)[None, :], 0)
        delta = _col_normalize(fixed.mul_array(wfb, row_stake), wfb_mask)
        acc = fixed.mul_array(ema_alpha, delta) + fixed.mul_array(ONE - ema_alpha, bonds_in)
        ema_mask = acc > 0
        ema_norm = _col_normalize(np.where(ema_mask, acc, 0), ema_mask)
        dividends = _normalize(
            _scatter(fixed.mul_array(ema_norm, incentive[None, :]).sum(axis=1), row_ids, n=n)
        )
        col_max = ema_norm.max(axis=0, initial=0)
        ema_out = np.where(ema_mask, fixed.safe_div_array(ema_norm, col_max[None, :]), 0)
    storage_rows = fixed.fixed_proportion_to_u16_array(ema_out)

    # Bonds storage: rows of validators keeping a permit are rewritten, rows of uids losing it are
    # cleared, and all other rows keep what was stored.
    keep = new_permit[row_ids][:, None]
    cleared = permit_used[row_ids][:, None]
    out_values = np.where(keep, storage_rows, np.where(cleared, 0, b_u16_stored))
    out_mask = np.where(keep, ema_mask, np.where(cleared, False, b_mask_stored))

    # == Emission ==
    combined = incentive + dividends
    emission_sum = int(combined.sum())
    normalized_server = fixed.safe_div_array(incentive, emission_sum) if emission_sum else incentive.copy()
    normalized_validator = fixed.safe_div_array(dividends, emission_sum) if emission_sum else dividends.copy()
    normalized_combined = _normalize(combined)
    fallback = emission_sum == 0
    if fallback:
        source = stake if int(active_stake.sum()) == 0 else active_stake
        normalized_validator = source.copy()
        normalized_combined = source.copy()

    rao = params.rao_emission
    return EpochResult(
        n=n,
        current_block=current_block,
        last_tempo=last_tempo,
        active=active,
        stake=stake,
        validator_permit_used=permit_used,
        new_validator_permit=new_permit,
        active_stake=active_stake,
        weights=SparseMatrix(n, row_ids, weights, w_mask),
        consensus=consensus,
        clipped_weights=SparseMatrix(n, row_ids, clipped, clipped_mask),
        validator_trust=validator_trust,
        incentive=incentive,
        weights_for_bonds=SparseMatrix(n, row_ids, wfb, wfb_mask),
        bonds_in=SparseMatrix(n, row_ids, bonds_in, b_mask),
        liquid_alphas=liquid_alphas,
        ema_bonds=SparseMatrix(n, row_ids, ema_out, ema_mask),
        ema_bonds_col_normalized=SparseMatrix(n, row_ids, ema_norm, ema_mask),
        bonds_storage_out=SparseMatrix(n, row_ids, out_values, out_mask),
        dividends=dividends,
        emission_fallback_to_stake=fallback,
        normalized_server_emission=normalized_server,
        normalized_validator_emission=normalized_validator,
        normalized_combined_emission=normalized_combined,
        server_emission=_emission(normalized_server, rao),
        validator_emission=_emission(normalized_validator, rao),
        combined_emission=_emission(normalized_combined, rao),
        legacy_rank=incentive,
        legacy_trust=legacy_trust,
        legacy_pruning_score_u16=np.array(
            fixed.vec_max_upscale_to_u16(normalized_combined.tolist()), dtype=np.int64
        ).reshape(n),
    )
