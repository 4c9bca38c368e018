"""The ledger's state and the rules that change it: the chain's state machine.

``ChainService`` applies each transaction and settlement to a ``ChainState`` layer (``child()``) before
the block holding them is committed, and merges the layer once the commit is durable; ``verify``
replays every block from genesis with the same functions, so the rules that accepted a block are the
rules that check it. ``Ledger`` persists what a layer changed (``changes()``) in the block's SQLite
transaction and rebuilds the state on start (``Ledger.load_state``).

State: free balances and nonces per account, the owner and take of each registered hotkey, stake per
(hotkey, coldkey), subnet owners, the recorded settlements with the last one per subnet, the total
issuance and the economic parameters fixed at genesis. Every amount stays in ``[0, 2**63 - 1]``:
issuance is capped there and every balance and stake is part of it (``conservation_error`` checks that
free balances plus stakes equal issuance).

Rules, checked in this order, all before anything changes (a refused transaction changes nothing, its
nonce included): field shapes (on construction of the transaction), the signatures, the nonce (the
account's last nonce + 1), that the hotkey is registered and owned by the signer where that matters,
and that the balance or stake covers the amount.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from kubetensor.chain import economics
from kubetensor.chain.errors import (
    AlreadyRegisteredError,
    InsufficientBalanceError,
    InsufficientStakeError,
    IssuanceCapError,
    MalformedRequestError,
    NotOwnerError,
    SettlementConflictError,
    SettlementOutOfOrderError,
    UnknownHotkeyError,
    WrongNonceError,
)
from kubetensor.chain.transactions import (
    AddStake,
    RegisterHotkey,
    RegisterSubnet,
    RemoveStake,
    SetDelegateTake,
    SignedTransaction,
    check_range,
)
from kubetensor.core import canonical
from kubetensor.core.settlement import MAX_RAO, Settlement


@dataclass(frozen=True)
class ChainParams:
    """Economic parameters, fixed in the genesis block (so a replay computes the same credits)."""

    owner_cut: int = economics.DEFAULT_OWNER_CUT
    """Subnet owner cut, u16 of each uid's emission (11796 = 18%)."""
    default_take: int = economics.DEFAULT_TAKE
    """Take of a hotkey that never set one, u16 (11796 = 18%)."""
    max_take: int = economics.DEFAULT_TAKE
    """Highest take SetDelegateTake accepts, u16 (Bittensor's MaxDelegateTake, 18%)."""

    def __post_init__(self) -> None:
        for name in ("owner_cut", "default_take", "max_take"):
            check_range(name, getattr(self, name), low=0, high=economics.U16_DENOMINATOR)
        if self.default_take > self.max_take:
            raise MalformedRequestError("default_take", f"must not exceed max_take {self.max_take}")

    def to_canonical(self) -> dict[str, canonical.Canonical]:
        return {"owner_cut": self.owner_cut, "default_take": self.default_take, "max_take": self.max_take}

    @classmethod
    def from_canonical(cls, raw: Any) -> ChainParams:
        return cls(owner_cut=raw["owner_cut"], default_take=raw["default_take"], max_take=raw["max_take"])


@dataclass(frozen=True)
class SettlementRef:
    """Where a recorded settlement is: its hash, block and position in the block's settlements."""

    hash: str
    block: int
    position: int


_TABLES = (
    "free",
    "nonce",
    "owner",
    "take",
    "stake",
    "stakers",
    "staked",
    "subnet_owner",
    "settlements",
    "last",
)


class ChainState:
    """The ledger's state after some block; ``child()`` gives a copy-on-write layer over it."""

    def __init__(self, *, params: ChainParams, issuance: int = 0) -> None:
        self.params = params
        self.issuance = issuance
        self.free: MutableMapping[str, int] = {}
        """account -> free balance, rao."""
        self.nonce: MutableMapping[str, int] = {}
        """account -> last accepted nonce."""
        self.owner: MutableMapping[str, str] = {}
        """hotkey -> the coldkey that registered it."""
        self.take: MutableMapping[str, int] = {}
        """hotkey -> take set with SetDelegateTake (absent: ``params.default_take``)."""
        self.stake: MutableMapping[tuple[str, str], int] = {}
        """(hotkey, coldkey) -> stake, rao (a position emptied by RemoveStake stays as 0)."""
        self.stakers: MutableMapping[str, frozenset[str]] = {}
        """hotkey -> coldkeys that ever staked on it (an index of ``stake``)."""
        self.staked: MutableMapping[str, frozenset[str]] = {}
        """coldkey -> hotkeys it ever staked on (an index of ``stake``)."""
        self.subnet_owner: MutableMapping[int, str] = {}
        """netuid -> owner coldkey."""
        self.settlements: MutableMapping[tuple[int, int], SettlementRef] = {}
        """(netuid, epoch) -> where the settlement is."""
        self.last: MutableMapping[int, tuple[int, str]] = {}
        """netuid -> (epoch, hash) of its newest settlement."""
        self._parent: ChainState | None = None

    # -- layers -------------------------------------------------------------------------------------
    def child(self) -> ChainState:
        """A layer that reads through to this state and keeps its own writes until ``merge``."""
        layer = ChainState(params=self.params, issuance=self.issuance)
        for name in _TABLES:
            setattr(layer, name, ChainMap({}, getattr(self, name)))
        layer._parent = self
        return layer

    def changes(self) -> dict[str, Mapping[Any, Any]]:
        """What this layer wrote, table by table (what ``Ledger.append`` persists)."""
        if self._parent is None:
            raise ValueError("changes() is defined for a child layer only")
        return {name: cast(ChainMap[Any, Any], getattr(self, name)).maps[0] for name in _TABLES}

    def merge(self, layer: ChainState) -> None:
        """Apply a child layer's writes to this state (after its block is committed)."""
        if layer._parent is not self:
            raise ValueError("can only merge a layer made by this state's child()")
        for name, written in layer.changes().items():
            getattr(self, name).update(written)
        self.issuance = layer.issuance

    # -- queries ------------------------------------------------------------------------------------
    def free_of(self, account: str) -> int:
        return self.free.get(account, 0)

    def take_of(self, hotkey: str) -> int:
        return self.take.get(hotkey, self.params.default_take)

    def positions(self, hotkey: str) -> list[tuple[str, int]]:
        """``(coldkey, stake)`` of every nonzero position on ``hotkey``, sorted by coldkey."""
        found = ((coldkey, self.stake.get((hotkey, coldkey), 0)) for coldkey in self.stakers.get(hotkey, ()))
        return sorted((coldkey, rao) for coldkey, rao in found if rao)

    def coldkey_positions(self, coldkey: str) -> list[tuple[str, int]]:
        """``(hotkey, stake)`` of every nonzero position of ``coldkey``, sorted by hotkey."""
        found = ((hotkey, self.stake.get((hotkey, coldkey), 0)) for hotkey in self.staked.get(coldkey, ()))
        return sorted((hotkey, rao) for hotkey, rao in found if rao)

    def hotkey_total(self, hotkey: str) -> int:
        return sum(rao for _, rao in self.positions(hotkey))

    def terms(self, hotkey: str) -> economics.HotkeyTerms:
        return economics.HotkeyTerms(
            owner=self.owner.get(hotkey), take=self.take_of(hotkey), stakers=tuple(self.positions(hotkey))
        )

    def conservation_error(self) -> str | None:
        """None when free balances plus stakes equal issuance; otherwise what is off."""
        free = sum(self.free.values())
        staked = sum(self.stake.values())
        if free + staked != self.issuance:
            return f"free {free} + staked {staked} = {free + staked} != issuance {self.issuance}"
        return None

    # -- writes (after every check) -----------------------------------------------------------------
    def _move_stake(self, *, hotkey: str, coldkey: str, delta: int) -> None:
        self.stake[(hotkey, coldkey)] = self.stake.get((hotkey, coldkey), 0) + delta
        self.free[coldkey] = self.free_of(coldkey) - delta
        if coldkey not in self.stakers.get(hotkey, frozenset()):
            self.stakers[hotkey] = self.stakers.get(hotkey, frozenset()) | {coldkey}
        if hotkey not in self.staked.get(coldkey, frozenset()):
            self.staked[coldkey] = self.staked.get(coldkey, frozenset()) | {hotkey}


def apply_genesis(state: ChainState, balances: Mapping[str, int]) -> None:
    """Give each account its genesis balance (``state`` must be empty)."""
    total = 0
    for account, rao in balances.items():
        check_range(f"genesis.balances[{account[:16]}]", rao, low=0, high=MAX_RAO)
        total += rao
    if total > MAX_RAO:
        raise MalformedRequestError("genesis.balances", f"total {total} exceeds {MAX_RAO} rao")
    for account, rao in balances.items():
        if rao:
            state.free[account] = rao
    state.issuance = total


def _registered_owner(state: ChainState, hotkey: str) -> str:
    owner = state.owner.get(hotkey)
    if owner is None:
        raise UnknownHotkeyError(hotkey)
    return owner


def apply_transaction(state: ChainState, signed: SignedTransaction, *, check_signatures: bool = True) -> None:
    """Check ``signed`` against ``state`` and apply it; a ChainError leaves ``state`` unchanged.

    ``check_signatures=False`` is for a caller that has just verified them (``ChainService`` does so
    before queueing a transaction for its block).
    """
    if check_signatures:
        signed.check_signatures()
    tx = signed.tx
    expected = state.nonce.get(tx.coldkey, 0) + 1
    if tx.nonce != expected:
        raise WrongNonceError(account=tx.coldkey, nonce=tx.nonce, expected=expected)
    match tx:
        case RegisterHotkey():
            owner = state.owner.get(tx.hotkey)
            if owner is not None:
                whose = "this coldkey" if owner == tx.coldkey else f"coldkey {owner[:16]}..."
                raise AlreadyRegisteredError(f"hotkey: {tx.hotkey[:16]}... is already registered to {whose}")
            state.owner[tx.hotkey] = tx.coldkey
        case RegisterSubnet():
            owner = state.subnet_owner.get(tx.netuid)
            if owner is not None:
                whose = "this coldkey" if owner == tx.coldkey else f"coldkey {owner[:16]}..."
                raise AlreadyRegisteredError(f"netuid: subnet {tx.netuid} is already owned by {whose}")
            state.subnet_owner[tx.netuid] = tx.coldkey
        case AddStake():
            _registered_owner(state, tx.hotkey)
            available = state.free_of(tx.coldkey)
            if tx.amount_rao > available:
                raise InsufficientBalanceError(account=tx.coldkey, amount=tx.amount_rao, available=available)
            state._move_stake(hotkey=tx.hotkey, coldkey=tx.coldkey, delta=tx.amount_rao)
        case RemoveStake():
            _registered_owner(state, tx.hotkey)
            available = state.stake.get((tx.hotkey, tx.coldkey), 0)
            if tx.amount_rao > available:
                raise InsufficientStakeError(
                    coldkey=tx.coldkey, hotkey=tx.hotkey, amount=tx.amount_rao, available=available
                )
            state._move_stake(hotkey=tx.hotkey, coldkey=tx.coldkey, delta=-tx.amount_rao)
        case SetDelegateTake():
            owner = _registered_owner(state, tx.hotkey)
            if owner != tx.coldkey:
                raise NotOwnerError(f"hotkey: {tx.hotkey[:16]}... is owned by coldkey {owner[:16]}...")
            if tx.take > state.params.max_take:
                raise MalformedRequestError(
                    "take", f"expected at most {state.params.max_take}, got {tx.take}"
                )
            state.take[tx.hotkey] = tx.take
    state.nonce[tx.coldkey] = expected


@dataclass(frozen=True)
class SettlementOutcome:
    """What recording a settlement did: ``credits`` is None when it was already recorded (``ref``)."""

    ref: SettlementRef
    credits: tuple[economics.Credit, ...] | None


def apply_settlement(
    state: ChainState, settlement: Settlement, *, block: int, position: int
) -> SettlementOutcome:
    """Record ``settlement`` at (``block``, ``position``) and credit its emission (see ``economics``).

    The same settlement again is not recorded twice: the outcome names the original. A different one
    for a recorded (netuid, epoch) raises SettlementConflictError; after a subnet's first settlement
    each must be the next epoch and link to the previous one by ``previous_hash``.
    """
    recorded = state.settlements.get(settlement.key)
    if recorded is not None:
        if recorded.hash != settlement.hash:
            raise SettlementConflictError(
                netuid=settlement.netuid,
                epoch=settlement.epoch,
                recorded_hash=recorded.hash,
                offered_hash=settlement.hash,
            )
        return SettlementOutcome(ref=recorded, credits=None)
    last = state.last.get(settlement.netuid)
    if last is not None:
        last_epoch, last_hash = last
        if settlement.epoch != last_epoch + 1:
            raise SettlementOutOfOrderError(
                f"settlement.epoch: subnet {settlement.netuid} has settled epoch {last_epoch}; "
                f"the next must be {last_epoch + 1}, got {settlement.epoch}"
            )
        if settlement.previous_hash != last_hash:
            raise SettlementOutOfOrderError(
                f"settlement.previous_hash: must be the hash of epoch {last_epoch} ({last_hash[:16]}...), "
                f"got {settlement.previous_hash[:16]!r}"
            )
    emission = settlement.emission_rao
    if state.issuance + emission > MAX_RAO:
        raise IssuanceCapError(
            f"settlement: emission {emission} on top of issuance {state.issuance} exceeds {MAX_RAO} rao"
        )
    terms = {entry.hotkey: state.terms(entry.hotkey) for entry in settlement.entries}
    credits = economics.distribute(
        settlement,
        terms=terms,
        subnet_owner=state.subnet_owner.get(settlement.netuid),
        owner_cut=state.params.owner_cut,
    )
    for credit in credits:
        state.free[credit.account] = state.free_of(credit.account) + credit.amount_rao
    state.issuance += emission
    ref = SettlementRef(hash=settlement.hash, block=block, position=position)
    state.settlements[settlement.key] = ref
    state.last[settlement.netuid] = (settlement.epoch, settlement.hash)
    return SettlementOutcome(ref=ref, credits=credits)


def snapshot(state: ChainState) -> dict[str, Any]:
    """A plain, comparable picture of ``state`` (zero balances and stakes left out)."""
    return {
        "issuance": state.issuance,
        "free": {account: rao for account, rao in sorted(state.free.items()) if rao},
        "nonce": dict(sorted(state.nonce.items())),
        "owner": dict(sorted(state.owner.items())),
        "take": dict(sorted(state.take.items())),
        "stake": {key: rao for key, rao in sorted(state.stake.items()) if rao},
        "subnet_owner": dict(sorted(state.subnet_owner.items())),
        "settlements": dict(sorted(state.settlements.items())),
        "last": dict(sorted(state.last.items())),
    }
