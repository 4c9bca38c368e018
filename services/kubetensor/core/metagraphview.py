"""A read-only view of a subnet's metagraph, as the miner, the validator and the devnet read it.

``from_response`` turns the consensus service's ``GetMetagraphResponse`` into frozen values without
importing generated code (the response is read through the ``MetagraphMessage`` protocol), so the
domain services that need "who holds a permit" or "which uids are miners" never touch protobufs.
Called by each service's consensus adapter (``miner.permits``, ``validator.consensus``) and the devnet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


class NeuronMessage(Protocol):
    """The fields of ``kubetensor.v1.Neuron`` this view reads."""

    @property
    def uid(self) -> int: ...
    @property
    def hotkey(self) -> str: ...
    @property
    def validator_permit(self) -> bool: ...
    @property
    def stake_rao(self) -> int: ...
    @property
    def incentive(self) -> float: ...
    @property
    def dividends(self) -> float: ...
    @property
    def validator_trust(self) -> float: ...
    @property
    def emission_rao(self) -> int: ...
    @property
    def last_update_block(self) -> int: ...


class MetagraphMessage(Protocol):
    """The fields of ``kubetensor.v1.GetMetagraphResponse`` this view reads."""

    @property
    def netuid(self) -> int: ...
    @property
    def block(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    @property
    def neurons(self) -> Iterable[NeuronMessage]: ...


@dataclass(frozen=True)
class NeuronView:
    """One uid as the last epoch left it."""

    uid: int
    hotkey: str
    validator_permit: bool
    stake_rao: int
    incentive: float
    dividends: float
    validator_trust: float
    emission_rao: int
    last_update_block: int = 0


@dataclass(frozen=True)
class MetagraphView:
    """A subnet's uids at ``block``; ``epoch`` is the number of the last settled epoch (0: none)."""

    netuid: int
    block: int
    epoch: int
    neurons: tuple[NeuronView, ...]
    _by_hotkey: dict[str, NeuronView] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_hotkey", {neuron.hotkey: neuron for neuron in self.neurons})

    def neuron(self, hotkey: str) -> NeuronView | None:
        """The neuron ``hotkey`` holds, or None when it is not registered."""
        return self._by_hotkey.get(hotkey)

    def has_permit(self, hotkey: str) -> bool:
        """True when ``hotkey`` is registered and holds a validator permit."""
        neuron = self._by_hotkey.get(hotkey)
        return neuron is not None and neuron.validator_permit


def from_response(response: MetagraphMessage) -> MetagraphView:
    """The view of a ``GetMetagraphResponse``."""
    return MetagraphView(
        netuid=response.netuid,
        block=response.block,
        epoch=response.epoch,
        neurons=tuple(
            NeuronView(
                uid=n.uid,
                hotkey=n.hotkey,
                validator_permit=n.validator_permit,
                stake_rao=n.stake_rao,
                incentive=n.incentive,
                dividends=n.dividends,
                validator_trust=n.validator_trust,
                emission_rao=n.emission_rao,
                last_update_block=n.last_update_block,
            )
            for n in response.neurons
        ),
    )
