"""How a settlement's emission becomes credits: owner cut, incentive, take and dividends, in integer rao.

Pure (no I/O); called by ``state`` when a settlement is recorded and again by ``verify`` when it replays
the ledger, so both compute the same credits from the same state. Each settlement entry (one uid) is
split on its own, as Bittensor's ``run_coinbase`` distributes a subnet's emission:

1. **Owner cut.** ``floor(e * owner_cut / 65535)`` of the uid's emission ``e`` goes to the subnet
   owner's coldkey (none when the subnet has no registered owner); the uid keeps ``p = e - cut``.
2. **Serving vs validating.** The uid's raw I32F32 ``incentive`` and ``dividends`` shares say how ``p``
   splits: ``server = floor(p * incentive / (incentive + dividends))``, ``validator = p - server``.
   When both shares are zero (the epoch fell back to emission by stake) all of ``p`` is validator
   emission.
3. **Incentive.** ``server`` is credited to the coldkey that owns the uid's hotkey.
4. **Take.** ``take = floor(validator * take_u16 / 65535)`` goes to the hotkey's owner (default take
   11796 = 18%, settable with SetDelegateTake).
5. **Dividends.** The rest, ``validator - take``, goes to the hotkey's stakers (every coldkey with stake
   on it, the owner included), ``floor(rest * stake_j / total_stake)`` each.

**Remainders.** Every step gives the floor to the party it names and the exact rest to the next step,
and the rounding left after step 5 (less than one rao per staker) goes to the hotkey's owner with its
take; a hotkey nobody stakes on gives all of ``rest`` to its owner. So the credits of every settlement
add up exactly to the sum of its entries' ``emission_rao``; nothing is minted or lost to rounding.

**Unowned hotkeys.** A hotkey no coldkey has registered (``RegisterHotkey``) is its own owner: its
credits go to the account named by the hotkey's public key, which that key can stake or spend like any
coldkey. Credits always go to the free balance; unlike Bittensor, nothing is auto-staked (a holder
re-stakes with AddStake).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubetensor.core.settlement import Settlement, SettlementEntry

U16_DENOMINATOR = 65_535
DEFAULT_TAKE = 11_796
"""Bittensor's default delegate take, 18% of 65535 (``DefaultDelegateTake``)."""
DEFAULT_OWNER_CUT = 11_796
"""Bittensor's default subnet owner cut, 18% of 65535 (``SubnetOwnerCut``)."""


class CreditReason(enum.StrEnum):
    """Why a settlement credited an account (``CreditReason`` on the wire)."""

    OWNER_CUT = "owner_cut"
    INCENTIVE = "incentive"
    TAKE = "take"
    DIVIDEND = "dividend"


@dataclass(frozen=True)
class Credit:
    """An amount a settlement adds to an account's free balance."""

    account: str
    amount_rao: int
    reason: CreditReason
    hotkey: str
    """The hotkey of the settlement entry the credit comes from."""
    uid: int


@dataclass(frozen=True)
class HotkeyTerms:
    """What the ledger knows of a hotkey when a settlement is recorded."""

    owner: str | None = None
    """Coldkey that registered the hotkey (None: unowned, so the hotkey is its own owner)."""
    take: int = DEFAULT_TAKE
    """Delegate take, u16."""
    stakers: Sequence[tuple[str, int]] = field(default_factory=tuple)
    """``(coldkey, stake_rao)`` of every nonzero stake position on the hotkey."""


def _floor_share(amount: int, numerator: int, denominator: int) -> int:
    return amount * numerator // denominator if denominator else 0


def split_entry(
    entry: SettlementEntry, *, terms: HotkeyTerms, subnet_owner: str | None, owner_cut: int
) -> list[Credit]:
    """The credits of one settlement entry, in a fixed order; they add up to ``entry.emission_rao``."""
    credits: list[Credit] = []

    def credit(account: str, amount: int, reason: CreditReason) -> None:
        if amount:
            credits.append(
                Credit(account=account, amount_rao=amount, reason=reason, hotkey=entry.hotkey, uid=entry.uid)
            )

    emission = entry.emission_rao
    cut = _floor_share(emission, owner_cut, U16_DENOMINATOR) if subnet_owner is not None else 0
    if subnet_owner is not None:
        credit(subnet_owner, cut, CreditReason.OWNER_CUT)
    participant = emission - cut
    shares = entry.incentive + entry.dividends
    server = _floor_share(participant, entry.incentive, shares)
    validator = participant - server
    owner = terms.owner if terms.owner is not None else entry.hotkey
    credit(owner, server, CreditReason.INCENTIVE)
    take = _floor_share(validator, terms.take, U16_DENOMINATOR)
    rest = validator - take
    total_stake = sum(stake for _, stake in terms.stakers)
    paid = 0
    dividends: list[tuple[str, int]] = []
    for coldkey, stake in sorted(terms.stakers):
        share = _floor_share(rest, stake, total_stake)
        dividends.append((coldkey, share))
        paid += share
    # The take absorbs the stakers' rounding remainder (all of ``rest`` if nobody stakes).
    credit(owner, take + rest - paid, CreditReason.TAKE)
    for coldkey, share in dividends:
        credit(coldkey, share, CreditReason.DIVIDEND)
    return credits


def distribute(
    settlement: Settlement,
    *,
    terms: Mapping[str, HotkeyTerms],
    subnet_owner: str | None,
    owner_cut: int = DEFAULT_OWNER_CUT,
) -> tuple[Credit, ...]:
    """Every credit of ``settlement`` given each entry's hotkey ``terms`` (missing: unowned, no stake)."""
    credits: list[Credit] = []
    for entry in settlement.entries:
        credits.extend(
            split_entry(
                entry,
                terms=terms.get(entry.hotkey, HotkeyTerms()),
                subnet_owner=subnet_owner,
                owner_cut=owner_cut,
            )
        )
    total = sum(credit.amount_rao for credit in credits)
    if total != settlement.emission_rao:  # an invariant of split_entry, kept loud
        raise AssertionError(f"credits {total} != emission {settlement.emission_rao}")
    return tuple(credits)
