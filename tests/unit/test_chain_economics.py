"""Unit tests for kubetensor.chain.economics: exact sums, owner cut, take split and the remainder rule."""

from __future__ import annotations

import random

from kubetensor.chain.economics import (
    DEFAULT_OWNER_CUT,
    DEFAULT_TAKE,
    Credit,
    CreditReason,
    HotkeyTerms,
    distribute,
    split_entry,
)
from kubetensor.core.settlement import Settlement, SettlementEntry

ONE = 1 << 32
HOT = "a" * 64
OWNER = "b" * 64
SUBNET_OWNER = "c" * 64
STAKER_1 = "d" * 64
STAKER_2 = "e" * 64


def entry(
    *, emission: int, incentive: int = 0, dividends: int = 0, hotkey: str = HOT, uid: int = 0
) -> SettlementEntry:
    return SettlementEntry(
        uid=uid, hotkey=hotkey, incentive=incentive, dividends=dividends, emission_rao=emission
    )


def by_reason(credits: list[Credit]) -> dict[tuple[str, CreditReason], int]:
    totals: dict[tuple[str, CreditReason], int] = {}
    for credit in credits:
        key = (credit.account, credit.reason)
        totals[key] = totals.get(key, 0) + credit.amount_rao
    return totals


def test_owner_cut_is_the_floor_of_the_cut_of_each_entry() -> None:
    credits = split_entry(
        entry(emission=1_000_000_007, incentive=ONE),
        terms=HotkeyTerms(owner=OWNER),
        subnet_owner=SUBNET_OWNER,
        owner_cut=DEFAULT_OWNER_CUT,
    )
    cut = 1_000_000_007 * 11_796 // 65_535
    assert by_reason(credits) == {
        (SUBNET_OWNER, CreditReason.OWNER_CUT): cut,
        (OWNER, CreditReason.INCENTIVE): 1_000_000_007 - cut,
    }


def test_no_owner_cut_when_the_subnet_has_no_owner() -> None:
    credits = split_entry(
        entry(emission=999, incentive=ONE),
        terms=HotkeyTerms(owner=OWNER),
        subnet_owner=None,
        owner_cut=DEFAULT_OWNER_CUT,
    )
    assert by_reason(credits) == {(OWNER, CreditReason.INCENTIVE): 999}


def test_take_goes_to_the_owner_and_the_rest_to_stakers_pro_rata() -> None:
    terms = HotkeyTerms(owner=OWNER, take=DEFAULT_TAKE, stakers=((STAKER_1, 300), (STAKER_2, 100)))
    credits = split_entry(
        entry(emission=65_535_000, dividends=ONE), terms=terms, subnet_owner=None, owner_cut=0
    )
    take = 65_535_000 * 11_796 // 65_535
    rest = 65_535_000 - take
    assert by_reason(credits) == {
        (OWNER, CreditReason.TAKE): take + (rest - rest * 3 // 4 - rest // 4),
        (STAKER_1, CreditReason.DIVIDEND): rest * 3 // 4,
        (STAKER_2, CreditReason.DIVIDEND): rest // 4,
    }
    assert take == 11_796_000


def test_staker_rounding_remainder_goes_to_the_hotkey_owner() -> None:
    # 10 rao of dividends over three equal stakers: 3 each, 1 rao left over, which the owner gets.
    terms = HotkeyTerms(owner=OWNER, take=0, stakers=((STAKER_1, 1), (STAKER_2, 1), ("f" * 64, 1)))
    credits = split_entry(entry(emission=10, dividends=ONE), terms=terms, subnet_owner=None, owner_cut=0)
    assert by_reason(credits) == {
        (OWNER, CreditReason.TAKE): 1,
        (STAKER_1, CreditReason.DIVIDEND): 3,
        (STAKER_2, CreditReason.DIVIDEND): 3,
        ("f" * 64, CreditReason.DIVIDEND): 3,
    }


def test_hotkey_without_stakers_gives_all_dividends_to_its_owner() -> None:
    credits = split_entry(
        entry(emission=1_000, dividends=ONE), terms=HotkeyTerms(owner=OWNER), subnet_owner=None, owner_cut=0
    )
    assert by_reason(credits) == {(OWNER, CreditReason.TAKE): 1_000}


def test_server_and_validator_parts_follow_the_incentive_and_dividend_shares() -> None:
    credits = split_entry(
        entry(emission=1_001, incentive=ONE // 4, dividends=3 * ONE // 4),
        terms=HotkeyTerms(owner=OWNER, take=0, stakers=((STAKER_1, 5),)),
        subnet_owner=None,
        owner_cut=0,
    )
    server = 1_001 * (ONE // 4) // ONE
    assert by_reason(credits) == {
        (OWNER, CreditReason.INCENTIVE): server,
        (STAKER_1, CreditReason.DIVIDEND): 1_001 - server,
    }


def test_zero_shares_make_all_emission_validator_emission() -> None:
    credits = split_entry(
        entry(emission=500),
        terms=HotkeyTerms(owner=OWNER, take=0, stakers=((STAKER_1, 1),)),
        subnet_owner=None,
        owner_cut=0,
    )
    assert by_reason(credits) == {(STAKER_1, CreditReason.DIVIDEND): 500}


def test_unowned_hotkey_is_credited_to_its_own_account() -> None:
    credits = split_entry(
        entry(emission=800, incentive=ONE, dividends=ONE), terms=HotkeyTerms(), subnet_owner=None, owner_cut=0
    )
    assert {credit.account for credit in credits} == {HOT}
    assert sum(credit.amount_rao for credit in credits) == 800


def test_zero_emission_makes_no_credits() -> None:
    assert (
        split_entry(
            entry(emission=0, incentive=ONE),
            terms=HotkeyTerms(owner=OWNER),
            subnet_owner=SUBNET_OWNER,
            owner_cut=DEFAULT_OWNER_CUT,
        )
        == []
    )


def test_credits_add_up_exactly_to_the_emission_for_random_settlements() -> None:
    rng = random.Random(20260501)
    for _ in range(300):
        n = rng.randint(1, 12)
        entries = []
        terms: dict[str, HotkeyTerms] = {}
        for uid in range(n):
            hotkey = f"{uid + 1:064x}"
            entries.append(
                SettlementEntry(
                    uid=uid,
                    hotkey=hotkey,
                    incentive=rng.choice([0, rng.randint(0, ONE)]),
                    dividends=rng.choice([0, rng.randint(0, ONE)]),
                    emission_rao=rng.choice([0, 1, 7, rng.randint(0, 10**15), (1 << 62) // 16]),
                )
            )
            stakers = tuple((f"{1000 + k:064x}", rng.randint(1, 10**18)) for k in range(rng.randint(0, 5)))
            owner = rng.choice([None, f"{500 + uid:064x}"])
            terms[hotkey] = HotkeyTerms(owner=owner, take=rng.randint(0, 65_535), stakers=stakers)
        settlement = Settlement(
            netuid=1,
            epoch=1,
            block=1,
            metagraph_digest="0" * 64,
            weights_digest="0" * 64,
            entries=tuple(entries),
            previous_hash="",
        )
        credits = distribute(
            settlement,
            terms=terms,
            subnet_owner=rng.choice([None, SUBNET_OWNER]),
            owner_cut=rng.randint(0, 65_535),
        )
        assert sum(credit.amount_rao for credit in credits) == settlement.emission_rao
        assert all(credit.amount_rao > 0 for credit in credits)
