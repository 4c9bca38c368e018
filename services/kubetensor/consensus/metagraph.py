"""One subnet's metagraph and the chain rules that change it: registration, pruning, weights, epochs.

Called by ``kubetensor.consensus.service`` (which persists every new value through ``store``) and by
the unit tests. Pure: no I/O, no clock; the caller passes the current block. Values are immutable:
every operation returns a new ``Metagraph`` (unchanged neurons are shared, which is how the store finds
what to write) or raises a ``kubetensor.consensus.errors`` error and changes nothing.

The rules are subtensor's (``subnets/registration.rs``, ``subnets/uids.rs``, ``subnets/weights.rs`` at
the commit ``yuma-spec.md`` names; §6 and §10 there):

* Registration appends uid ``n`` while ``n < max_allowed_uids``; when full, it replaces the uid
  ``neuron_to_prune`` picks: the non-immune uid with the smallest ``Emission``, ties broken by the
  earliest registration block and then the lowest uid; when no more than ``min_non_immune_uids`` uids
  are non-immune it picks among the immune ones by the same rule. A uid is immune while
  ``block - registered_at < immunity_period``. The replaced uid is cleared (``clear_neuron``): its own
  weights and bonds row go, weights *to* it become explicit zeros, its outputs reset, its permit is
  false and ``last_update`` is the registration block.
* Deregistration (kubetensor's own: the chain has no voluntary deregistration) frees the uid the way
  pruning does before it hands the uid over: ``clear_neuron`` (its weights and bonds row go, weights
  *to* it become explicit zeros) and, in addition, every bond held *to* it is dropped. The uid stays in
  ``neurons`` as a vacancy (``Neuron.vacancy``: no hotkey, ``registered_at_block`` the block it was
  freed at) so no other uid moves; the next registration takes the lowest vacant uid before it appends
  or prunes. A vacancy holds no stake, sets no weights, may not be weighted, earns nothing and is
  absent from settlements and from ``GetMetagraph``.
* ``set_weights`` checks, in the chain's order: at most ``n`` entries, the hotkey is registered, its
  stake reaches the stake threshold, the rate limit (``block - last_update >= weights_rate_limit``, or
  ``last_update == 0``), a validator permit unless the row is a self-weight only, no duplicate uids,
  every uid exists and is not vacant, ``len >= min(registered, min_allowed_weights)`` unless
  self-weight (``registered``: uids that are not vacant), and after the max-upscale to u16
  (``vec_u16_max_upscale_to_u16``) the normalized maximum is at most ``max_weights_limit / 65535``
  unless self-weight. Rows are stored max-upscaled and sorted by uid (the
  SDK submits sorted rows and ``yuma.run_epoch`` assumes them).
* An epoch reads ``epoch_inputs`` and ``after_epoch`` stores what it wrote: bonds, the next epoch's
  permits, and incentive, dividends, validator trust, consensus (raw I32F32) and emission (rao) per uid.

Not modelled: the subnet owner (owner-immortal hotkeys, owner uid in the epoch), burn/PoW registration
costs and per-block/interval registration limits, weight version keys and commit-reveal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from kubetensor.consensus import fixed
from kubetensor.consensus.errors import (
    AlreadyRegisteredError,
    InvalidWeightsError,
    NotRegisteredError,
    NoValidatorPermitError,
    RateLimitedError,
    StakeTooLowError,
    SubnetFullError,
)
from kubetensor.consensus.fixed import U16_MAX
from kubetensor.consensus.yuma import EpochInputs, EpochResult
from kubetensor.core import canonical

WeightRow = tuple[tuple[int, int], ...]
"""A sparse chain row: ``(uid, u16)`` pairs sorted by uid."""

VACANT = ""
"""The hotkey (and coldkey) of a vacant uid: one freed by a deregistration and not yet taken again."""

_I64_MAX = (1 << 63) - 1


def _check_int(name: str, value: int, *, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class SubnetRules:
    """The hyperparameters the registration and weight rules read (chain defaults)."""

    max_allowed_uids: int = 256
    """``MaxAllowedUids``: uid slots in the subnet."""
    immunity_period: int = 4_096
    """``ImmunityPeriod`` in blocks: a new uid cannot be pruned for this long."""
    min_non_immune_uids: int = 10
    """``MinNonImmuneUids``: prune among immune uids while no more than this many are non-immune."""
    min_allowed_weights: int = 1_024
    """``MinAllowedWeights``: a weight row needs ``min(n, this)`` entries (self-weights excepted)."""
    max_weights_limit: int = U16_MAX
    """``MaxWeightsLimit`` (u16): largest normalized weight, this / 65535 (65535 disables the check)."""
    weights_rate_limit: int = 100
    """``WeightsSetRateLimit`` in blocks between two weight sets of one uid."""
    stake_threshold: int = 0
    """``StakeThreshold`` in rao: less stake may not set weights."""

    def __post_init__(self) -> None:
        for name in ("max_allowed_uids", "min_non_immune_uids", "min_allowed_weights", "max_weights_limit"):
            _check_int(name, getattr(self, name), low=0, high=U16_MAX)
        for name in ("immunity_period", "weights_rate_limit", "stake_threshold"):
            _check_int(name, getattr(self, name), low=0, high=_I64_MAX)


@dataclass(frozen=True)
class Neuron:
    """One uid of the subnet: who holds it, what it set, what the last epoch gave it."""

    uid: int
    hotkey: str
    """Hex ed25519 public key of the hotkey holding the uid."""
    coldkey: str
    """Hex ed25519 public key of the owning coldkey."""
    registered_at_block: int
    """``BlockAtRegistration``."""
    last_update_block: int
    """``LastUpdate``: block of the last weight set (the registration block until then)."""
    stake_rao: int = 0
    """Stake weight in rao, from the ``StakeSource`` (at registration and before every epoch)."""
    validator_permit: bool = False
    """``ValidatorPermit`` written by the last epoch (false until an epoch grants it)."""
    weights: WeightRow = ()
    """``Weights`` row: max-upscaled u16 values, sorted by uid."""
    bonds: WeightRow = ()
    """``Bonds`` row written by the last epoch (u16)."""
    incentive: int = 0
    """Raw I32F32 incentive share of the last epoch (value = raw / 2**32)."""
    dividends: int = 0
    """Raw I32F32 dividend share of the last epoch."""
    validator_trust: int = 0
    """Raw I32F32 validator trust of the last epoch."""
    consensus: int = 0
    """Raw I32F32 consensus weight of the last epoch."""
    emission_rao: int = 0
    """``Emission``: rao the last epoch gave this uid (incentive plus dividends; pruning reads it)."""

    @classmethod
    def vacancy(cls, uid: int, *, block: int) -> Neuron:
        """The vacant ``uid``, freed at ``block`` (everything else zero; it is stored as just that)."""
        return cls(uid=uid, hotkey=VACANT, coldkey=VACANT, registered_at_block=block, last_update_block=block)

    @property
    def vacant(self) -> bool:
        """True for a uid freed by a deregistration and not yet taken again."""
        return self.hotkey == VACANT

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        """This neuron as a canonical-encoding value (every field, by name)."""
        return {
            "uid": self.uid,
            "hotkey": self.hotkey,
            "coldkey": self.coldkey,
            "registered_at_block": self.registered_at_block,
            "last_update_block": self.last_update_block,
            "stake_rao": self.stake_rao,
            "validator_permit": self.validator_permit,
            "weights": [list(pair) for pair in self.weights],
            "bonds": [list(pair) for pair in self.bonds],
            "incentive": self.incentive,
            "dividends": self.dividends,
            "validator_trust": self.validator_trust,
            "consensus": self.consensus,
            "emission_rao": self.emission_rao,
        }


def is_self_weight(uid: int, uids: Sequence[int]) -> bool:
    """subtensor ``is_self_weight``: exactly one entry, and it is the caller's own uid."""
    return len(uids) == 1 and uids[0] == uid


def _max_weight_limited(values: Sequence[int], limit: int) -> bool:
    """subtensor ``check_vec_max_limited``: the max of the normalized row is at most ``limit / 65535``."""
    if not values:
        return True
    total = fixed.from_int(sum(values))
    normalized_max = max(fixed.safe_div(fixed.from_int(v), total) for v in values) if total else 0
    return normalized_max <= fixed.safe_div(fixed.from_int(limit), fixed.from_int(U16_MAX))


@dataclass(frozen=True)
class Metagraph:
    """A subnet's uids in uid order, plus the epoch bookkeeping the next epoch reads."""

    netuid: int
    neurons: tuple[Neuron, ...] = ()
    last_epoch_block: int = 0
    """``LastMechansimStepBlock``: block of the last epoch, 0 before the first."""
    epoch: int = 0
    """Number of the last settled epoch (epochs are numbered from 1; 0: none yet)."""
    _by_hotkey: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for index, neuron in enumerate(self.neurons):
            if neuron.uid != index:
                raise ValueError(f"neurons[{index}]: uid {neuron.uid} out of order")
        registered = [neuron for neuron in self.neurons if not neuron.vacant]
        by_hotkey = {neuron.hotkey: neuron.uid for neuron in registered}
        if len(by_hotkey) != len(registered):
            raise ValueError("neurons: a hotkey holds two uids")
        object.__setattr__(self, "_by_hotkey", by_hotkey)

    @property
    def n(self) -> int:
        """``SubnetworkN``: number of uids, vacant ones included."""
        return len(self.neurons)

    @cached_property
    def registered(self) -> tuple[Neuron, ...]:
        """The uids a hotkey holds (every uid but the vacant ones), in uid order."""
        return tuple(neuron for neuron in self.neurons if not neuron.vacant)

    def uid_of(self, hotkey: str) -> int | None:
        """The uid ``hotkey`` holds, or None (also for ``VACANT``)."""
        return self._by_hotkey.get(hotkey)

    def neuron_of(self, hotkey: str) -> Neuron:
        """The neuron ``hotkey`` holds; NotRegisteredError if none."""
        uid = self.uid_of(hotkey)
        if uid is None:
            raise NotRegisteredError(hotkey, netuid=self.netuid)
        return self.neurons[uid]

    # -- registration and pruning ---------------------------------------------------------------------

    @staticmethod
    def is_immune(neuron: Neuron, *, block: int, rules: SubnetRules) -> bool:
        """subtensor ``get_neuron_is_immune``: registered fewer than ``immunity_period`` blocks ago."""
        return max(block - neuron.registered_at_block, 0) < rules.immunity_period

    def neuron_to_prune(self, *, block: int, rules: SubnetRules) -> int | None:
        """subtensor ``get_neuron_to_prune``: the uid a registration into a full subnet replaces."""
        best_free: tuple[int, int, int] | None = None
        best_immune: tuple[int, int, int] | None = None
        free_count = 0
        for neuron in self.registered:
            key = (neuron.emission_rao, neuron.registered_at_block, neuron.uid)
            if self.is_immune(neuron, block=block, rules=rules):
                best_immune = key if best_immune is None else min(best_immune, key)
            else:
                free_count += 1
                best_free = key if best_free is None else min(best_free, key)
        if best_free is not None and free_count > rules.min_non_immune_uids:
            return best_free[2]
        return None if best_immune is None else best_immune[2]

    def register(
        self, *, hotkey: str, coldkey: str, block: int, stake_rao: int, rules: SubnetRules
    ) -> tuple[Metagraph, int]:
        """Register ``hotkey`` at ``block``: take the lowest vacant uid, else append one, else replace the
        pruned one. Returns (new, uid)."""
        _check_int("stake_rao", stake_rao, low=0, high=_I64_MAX)
        if hotkey == VACANT:
            raise ValueError("hotkey: expected a hotkey, got the empty string")
        existing = self.uid_of(hotkey)
        if existing is not None:
            raise AlreadyRegisteredError(hotkey, uid=existing)
        vacant = next((neuron.uid for neuron in self.neurons if neuron.vacant), None)
        if vacant is not None:
            uid = vacant
            neurons = self._cleared(uid)
        elif self.n < rules.max_allowed_uids:
            uid = self.n
            neurons = self.neurons
        else:
            pruned = self.neuron_to_prune(block=block, rules=rules) if rules.max_allowed_uids else None
            if pruned is None:
                raise SubnetFullError(self.netuid, max_allowed_uids=rules.max_allowed_uids)
            uid = pruned
            neurons = self._cleared(uid)
        fresh = Neuron(
            uid=uid,
            hotkey=hotkey,
            coldkey=coldkey,
            registered_at_block=block,
            last_update_block=block,
            stake_rao=stake_rao,
        )
        return replace(self, neurons=(*neurons[:uid], fresh, *neurons[uid + 1 :])), uid

    def deregister(self, *, hotkey: str, block: int) -> tuple[Metagraph, int]:
        """Free the uid ``hotkey`` holds at ``block`` (see the module doc). Returns (new, freed uid);
        NotRegisteredError when ``hotkey`` holds none."""
        uid = self.neuron_of(hotkey).uid
        neurons: list[Neuron] = []
        for neuron in self._cleared(uid):
            if neuron.uid == uid:
                neuron = Neuron.vacancy(uid, block=block)
            elif any(target == uid for target, _ in neuron.bonds):
                neuron = replace(neuron, bonds=tuple(pair for pair in neuron.bonds if pair[0] != uid))
            neurons.append(neuron)
        return replace(self, neurons=tuple(neurons)), uid

    def _cleared(self, uid: int) -> tuple[Neuron, ...]:
        """The neurons after ``clear_neuron(uid)`` of every *other* uid's state: weights to it become 0."""
        out: list[Neuron] = []
        for neuron in self.neurons:
            if neuron.uid != uid and any(target == uid for target, _ in neuron.weights):
                zeroed = tuple((target, 0 if target == uid else w) for target, w in neuron.weights)
                neuron = replace(neuron, weights=zeroed)
            out.append(neuron)
        return tuple(out)

    # -- weights --------------------------------------------------------------------------------------

    def set_weights(
        self, *, hotkey: str, weights: Sequence[tuple[int, int]], block: int, rules: SubnetRules
    ) -> Metagraph:
        """Apply subtensor's ``set_weights`` for ``hotkey`` at ``block`` (see the module doc)."""
        uids = [uid for uid, _ in weights]
        values = [value for _, value in weights]
        if len(uids) > self.n:
            raise InvalidWeightsError(
                "weights", f"at most one entry per uid ({self.n} uids), got {len(uids)} entries"
            )
        neuron = self.neuron_of(hotkey)
        if neuron.stake_rao < rules.stake_threshold:
            raise StakeTooLowError(hotkey, stake_rao=neuron.stake_rao, threshold_rao=rules.stake_threshold)
        last = neuron.last_update_block
        if last != 0 and max(block - last, 0) < rules.weights_rate_limit:
            raise RateLimitedError(hotkey, last_update=last, block=block, rate_limit=rules.weights_rate_limit)
        self_weight = is_self_weight(neuron.uid, uids)
        if not self_weight and not neuron.validator_permit:
            raise NoValidatorPermitError(hotkey, uid=neuron.uid)
        seen: set[int] = set()
        for index, uid in enumerate(uids):
            if uid in seen:
                raise InvalidWeightsError(f"weights[{index}].uid", f"uid {uid} appears more than once")
            seen.add(uid)
        for index, uid in enumerate(uids):
            if uid >= self.n:
                raise InvalidWeightsError(
                    f"weights[{index}].uid", f"uid {uid} does not exist (the subnet has uids 0..{self.n - 1})"
                )
            if self.neurons[uid].vacant:
                raise InvalidWeightsError(
                    f"weights[{index}].uid",
                    f"uid {uid} is vacant (deregistered at block {self.neurons[uid].registered_at_block})",
                )
        needed = min(len(self.registered), rules.min_allowed_weights)
        if not self_weight and len(uids) < needed:
            raise InvalidWeightsError("weights", f"expected at least {needed} entries, got {len(uids)}")
        upscaled = fixed.vec_u16_max_upscale_to_u16(values)
        limited = self_weight or rules.max_weights_limit == U16_MAX
        if not limited and not _max_weight_limited(upscaled, rules.max_weights_limit):
            raise InvalidWeightsError(
                "weights", f"the largest normalized weight exceeds the limit {rules.max_weights_limit}/65535"
            )
        row = tuple(sorted(zip(uids, upscaled, strict=True)))
        updated = replace(neuron, weights=row, last_update_block=block)
        return replace(self, neurons=(*self.neurons[: neuron.uid], updated, *self.neurons[neuron.uid + 1 :]))

    # -- stake and epochs -----------------------------------------------------------------------------

    def with_stakes(self, stakes: Mapping[str, int]) -> Metagraph:
        """The metagraph with each neuron's stake from ``stakes`` (hotkey -> rao; missing means 0)."""
        neurons = []
        for neuron in self.neurons:
            if neuron.vacant:
                neurons.append(neuron)
                continue
            stake = stakes.get(neuron.hotkey, 0)
            _check_int(f"stake of {neuron.hotkey[:16]}...", stake, low=0, high=_I64_MAX)
            neurons.append(neuron if stake == neuron.stake_rao else replace(neuron, stake_rao=stake))
        return replace(self, neurons=tuple(neurons))

    def epoch_inputs(self, *, block: int) -> EpochInputs:
        """The chain storage an epoch at ``block`` reads."""
        return EpochInputs(
            current_block=block,
            last_mechanism_step_block=self.last_epoch_block,
            stake_rao=tuple(neuron.stake_rao for neuron in self.neurons),
            last_update=tuple(neuron.last_update_block for neuron in self.neurons),
            block_at_registration=tuple(neuron.registered_at_block for neuron in self.neurons),
            weights=tuple(neuron.weights for neuron in self.neurons),
            bonds=tuple(neuron.bonds for neuron in self.neurons),
            validator_permit=tuple(neuron.validator_permit for neuron in self.neurons),
        )

    def after_epoch(self, result: EpochResult, *, block: int) -> Metagraph:
        """The metagraph after the epoch that produced ``result`` ran at ``block`` (its epoch number +1).

        A vacancy stays exactly a vacancy: it held nothing, so the epoch gave it nothing."""
        if result.n != self.n or result.current_block != block:
            raise ValueError(f"the epoch result is for n={result.n} at block {result.current_block}")
        bonds = result.bonds_storage_rows()
        permits: list[bool] = result.new_validator_permit.tolist()
        incentive: list[int] = result.incentive.tolist()
        dividends: list[int] = result.dividends.tolist()
        trust: list[int] = result.validator_trust.tolist()
        consensus_: list[int] = result.consensus.tolist()
        neurons = tuple(
            neuron
            if neuron.vacant
            else replace(
                neuron,
                validator_permit=bool(permits[uid]),
                bonds=tuple(sorted(bonds[uid])),
                incentive=int(incentive[uid]),
                dividends=int(dividends[uid]),
                validator_trust=int(trust[uid]),
                consensus=int(consensus_[uid]),
                emission_rao=result.combined_emission[uid],
            )
            for uid, neuron in enumerate(self.neurons)
        )
        return replace(self, neurons=neurons, last_epoch_block=block, epoch=self.epoch + 1)

    # -- digests --------------------------------------------------------------------------------------

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        """The whole metagraph as a canonical-encoding value."""
        return {
            "netuid": self.netuid,
            "epoch": self.epoch,
            "last_epoch_block": self.last_epoch_block,
            "neurons": [neuron.to_canonical() for neuron in self.neurons],
        }

    @cached_property
    def digest(self) -> str:
        """Hex sha256 of the canonical encoding of the metagraph."""
        return canonical.digest(self.to_canonical())

    @cached_property
    def weights_digest(self) -> str:
        """Hex sha256 of the canonical encoding of the weight matrix (one row of pairs per uid)."""
        return canonical.digest([[list(pair) for pair in neuron.weights] for neuron in self.neurons])
