"""Unit tests for kubetensor.consensus.metagraph: registration, pruning and its ties, clear_neuron, the
weight rules, and the round trip through an epoch."""

from __future__ import annotations

from dataclasses import replace

import pytest
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
from kubetensor.consensus.metagraph import Metagraph, Neuron, SubnetRules
from kubetensor.consensus.yuma import EpochParams, run_epoch

TAO = 10**9
OPEN = SubnetRules(
    max_allowed_uids=64,
    immunity_period=10,
    min_non_immune_uids=0,
    min_allowed_weights=1,
    weights_rate_limit=0,
)


def hotkey(i: int) -> str:
    return f"{i:064x}"


def registered(count: int, *, rules: SubnetRules = OPEN, block: int = 0) -> Metagraph:
    metagraph = Metagraph(netuid=1)
    for i in range(count):
        metagraph, _ = metagraph.register(
            hotkey=hotkey(i), coldkey=hotkey(1000 + i), block=block, stake_rao=0, rules=rules
        )
    return metagraph


def with_neuron(metagraph: Metagraph, uid: int, **changes: object) -> Metagraph:
    neurons = list(metagraph.neurons)
    neurons[uid] = replace(neurons[uid], **changes)  # type: ignore[arg-type]
    return replace(metagraph, neurons=tuple(neurons))


def permitted(metagraph: Metagraph, *uids: int) -> Metagraph:
    for uid in uids:
        metagraph = with_neuron(metagraph, uid, validator_permit=True)
    return metagraph


# -- registration ---------------------------------------------------------------------------------------


def test_register_appends_uids_in_order_while_not_full() -> None:
    metagraph = Metagraph(netuid=1)
    for i in range(3):
        metagraph, uid = metagraph.register(
            hotkey=hotkey(i), coldkey=hotkey(99), block=5 + i, stake_rao=7 * TAO, rules=OPEN
        )
        assert uid == i
    assert [n.hotkey for n in metagraph.neurons] == [hotkey(0), hotkey(1), hotkey(2)]
    third = metagraph.neurons[2]
    assert (third.registered_at_block, third.last_update_block, third.stake_rao) == (7, 7, 7 * TAO)
    assert (third.validator_permit, third.weights, third.bonds, third.coldkey) == (False, (), (), hotkey(99))
    assert metagraph.uid_of(hotkey(1)) == 1
    assert metagraph.uid_of(hotkey(7)) is None


def test_register_refuses_a_hotkey_that_holds_a_uid() -> None:
    metagraph = registered(2)
    with pytest.raises(AlreadyRegisteredError) as refused:
        metagraph.register(hotkey=hotkey(1), coldkey=hotkey(5), block=3, stake_rao=0, rules=OPEN)
    assert refused.value.uid == 1
    assert metagraph == registered(2)


def test_register_when_full_replaces_the_lowest_emission_non_immune_uid() -> None:
    rules = replace(OPEN, max_allowed_uids=3)
    metagraph = registered(3, rules=rules)
    for uid, emission in enumerate([30, 10, 20]):
        metagraph = with_neuron(metagraph, uid, emission_rao=emission)
    new, uid = metagraph.register(hotkey=hotkey(9), coldkey=hotkey(8), block=100, stake_rao=0, rules=rules)
    assert uid == 1
    assert new.n == 3
    assert new.neurons[1].hotkey == hotkey(9)
    assert new.uid_of(hotkey(1)) is None


def test_prune_ties_break_by_earliest_registration_then_lowest_uid() -> None:
    rules = replace(OPEN, max_allowed_uids=4)
    metagraph = registered(4, rules=rules)
    blocks = [3, 2, 2, 1]
    emissions = [5, 5, 5, 9]
    for uid in range(4):
        metagraph = with_neuron(metagraph, uid, registered_at_block=blocks[uid], emission_rao=emissions[uid])
    # uids 0..2 tie on emission 5; 1 and 2 tie on the earliest block 2; the lowest uid, 1, goes.
    assert metagraph.neuron_to_prune(block=100, rules=rules) == 1
    metagraph = with_neuron(metagraph, 2, registered_at_block=0)
    assert metagraph.neuron_to_prune(block=100, rules=rules) == 2


def test_prune_never_picks_an_immune_uid_while_enough_are_non_immune() -> None:
    rules = replace(OPEN, max_allowed_uids=3, immunity_period=10)
    metagraph = registered(3, rules=rules)
    metagraph = with_neuron(metagraph, 0, registered_at_block=95, emission_rao=0)  # immune at 100
    metagraph = with_neuron(
        metagraph, 1, registered_at_block=90, emission_rao=50
    )  # 100 - 90 = 10: not immune
    metagraph = with_neuron(metagraph, 2, registered_at_block=80, emission_rao=60)
    assert Metagraph.is_immune(metagraph.neurons[0], block=100, rules=rules)
    assert not Metagraph.is_immune(metagraph.neurons[1], block=100, rules=rules)
    assert metagraph.neuron_to_prune(block=100, rules=rules) == 1


def test_prune_picks_among_immune_uids_at_the_min_non_immune_floor() -> None:
    rules = replace(OPEN, max_allowed_uids=3, immunity_period=10, min_non_immune_uids=1)
    metagraph = registered(3, rules=rules)
    metagraph = with_neuron(metagraph, 0, registered_at_block=0, emission_rao=0)  # the only non-immune uid
    metagraph = with_neuron(metagraph, 1, registered_at_block=95, emission_rao=40)
    metagraph = with_neuron(metagraph, 2, registered_at_block=96, emission_rao=30)
    # One non-immune uid is not more than the floor of one, so the immune uid with least emission goes.
    assert metagraph.neuron_to_prune(block=100, rules=rules) == 2
    relaxed = replace(rules, min_non_immune_uids=0)
    assert metagraph.neuron_to_prune(block=100, rules=relaxed) == 0


def test_register_refuses_when_full_and_only_the_floor_is_non_immune() -> None:
    rules = replace(OPEN, max_allowed_uids=2, immunity_period=10, min_non_immune_uids=5)
    metagraph = registered(2, rules=rules)
    assert metagraph.neuron_to_prune(block=100, rules=rules) is None
    with pytest.raises(SubnetFullError):
        metagraph.register(hotkey=hotkey(9), coldkey=hotkey(9), block=100, stake_rao=0, rules=rules)


def test_register_refuses_when_no_uid_is_allowed() -> None:
    with pytest.raises(SubnetFullError):
        Metagraph(netuid=1).register(
            hotkey=hotkey(1), coldkey=hotkey(1), block=0, stake_rao=0, rules=replace(OPEN, max_allowed_uids=0)
        )


def test_replacement_clears_the_pruned_neuron_and_zeroes_weights_to_it() -> None:
    rules = replace(OPEN, max_allowed_uids=3)
    metagraph = permitted(registered(3, rules=rules, block=0), 0, 2)
    metagraph = metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 100), (2, 50)], block=20, rules=rules)
    metagraph = metagraph.set_weights(hotkey=hotkey(2), weights=[(0, 7), (1, 9)], block=20, rules=rules)
    metagraph = with_neuron(
        metagraph,
        2,
        bonds=((1, 400),),
        incentive=5,
        dividends=6,
        validator_trust=7,
        consensus=8,
        emission_rao=0,
    )
    metagraph = with_neuron(metagraph, 0, emission_rao=10)
    metagraph = with_neuron(metagraph, 1, emission_rao=10)
    untouched = metagraph.neurons[1]

    new, uid = metagraph.register(hotkey=hotkey(9), coldkey=hotkey(8), block=50, stake_rao=3, rules=rules)

    assert uid == 2
    assert new.neurons[2] == Neuron(
        uid=2, hotkey=hotkey(9), coldkey=hotkey(8), registered_at_block=50, last_update_block=50, stake_rao=3
    )
    # Weights to the pruned uid stay as explicit zeros; the other entries keep their values.
    assert new.neurons[0].weights == ((1, 65535), (2, 0))
    assert new.neurons[1] is untouched


# -- weights ----------------------------------------------------------------------------------------------


def test_set_weights_stores_the_max_upscaled_row_sorted_by_uid() -> None:
    metagraph = permitted(registered(3), 0)
    new = metagraph.set_weights(hotkey=hotkey(0), weights=[(2, 10), (1, 20)], block=7, rules=OPEN)
    expected = fixed.vec_u16_max_upscale_to_u16([10, 20])
    assert new.neurons[0].weights == ((1, expected[1]), (2, expected[0]))
    assert new.neurons[0].weights == ((1, 65535), (2, 32768))
    assert new.neurons[0].last_update_block == 7
    assert new.neurons[1] is metagraph.neurons[1]


def test_set_weights_refuses_an_unregistered_hotkey() -> None:
    with pytest.raises(NotRegisteredError):
        registered(2).set_weights(hotkey=hotkey(5), weights=[(0, 1)], block=1, rules=OPEN)


def test_set_weights_refuses_stake_below_the_threshold() -> None:
    rules = replace(OPEN, stake_threshold=10)
    metagraph = with_neuron(permitted(registered(2), 0), 0, stake_rao=9)
    with pytest.raises(StakeTooLowError):
        metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1)], block=1, rules=rules)
    metagraph = with_neuron(metagraph, 0, stake_rao=10)
    metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1)], block=1, rules=rules)


def test_set_weights_refuses_within_the_rate_limit() -> None:
    rules = replace(OPEN, weights_rate_limit=100)
    metagraph = permitted(registered(2, rules=rules, block=50), 0)
    with pytest.raises(RateLimitedError) as refused:
        metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1)], block=149, rules=rules)
    assert (refused.value.last_update, refused.value.block) == (50, 149)
    later = metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1)], block=150, rules=rules)
    with pytest.raises(RateLimitedError):
        later.set_weights(hotkey=hotkey(0), weights=[(1, 2)], block=249, rules=rules)


def test_set_weights_rate_limit_is_skipped_when_last_update_is_zero() -> None:
    rules = replace(OPEN, weights_rate_limit=100)
    metagraph = permitted(registered(2, rules=rules, block=0), 0)
    metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1)], block=3, rules=rules)


def test_set_weights_without_permit_allows_only_a_self_weight() -> None:
    rules = replace(OPEN, min_allowed_weights=1024, max_weights_limit=100)
    metagraph = registered(3)
    with pytest.raises(NoValidatorPermitError):
        metagraph.set_weights(hotkey=hotkey(1), weights=[(0, 1), (1, 1), (2, 1)], block=1, rules=rules)
    with pytest.raises(NoValidatorPermitError):
        metagraph.set_weights(hotkey=hotkey(1), weights=[(0, 1)], block=1, rules=rules)
    # A self-weight is exempt from the permit, the length and the max-weight rules.
    new = metagraph.set_weights(hotkey=hotkey(1), weights=[(1, 9)], block=1, rules=rules)
    assert new.neurons[1].weights == ((1, 65535),)


def test_set_weights_refuses_duplicate_uids_naming_the_entry() -> None:
    with pytest.raises(InvalidWeightsError) as refused:
        permitted(registered(3), 0).set_weights(
            hotkey=hotkey(0), weights=[(1, 1), (2, 1), (1, 5)], block=1, rules=OPEN
        )
    assert refused.value.field == "weights[2].uid"


def test_set_weights_refuses_a_uid_that_does_not_exist() -> None:
    with pytest.raises(InvalidWeightsError) as refused:
        permitted(registered(3), 0).set_weights(
            hotkey=hotkey(0), weights=[(1, 1), (3, 1)], block=1, rules=OPEN
        )
    assert refused.value.field == "weights[1].uid"


def test_set_weights_refuses_more_entries_than_uids() -> None:
    with pytest.raises(InvalidWeightsError) as refused:
        permitted(registered(2), 0).set_weights(
            hotkey=hotkey(0), weights=[(0, 1), (1, 1), (2, 1)], block=1, rules=OPEN
        )
    assert refused.value.field == "weights"


def test_set_weights_needs_min_of_n_and_min_allowed_weights_entries() -> None:
    metagraph = permitted(registered(4), 0)
    rules = replace(OPEN, min_allowed_weights=3)
    with pytest.raises(InvalidWeightsError, match="at least 3"):
        metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1), (2, 1)], block=1, rules=rules)
    metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1), (2, 1), (3, 0)], block=1, rules=rules)
    # With 1024 (the chain default) the row needs all n = 4 uids.
    chain_default = replace(OPEN, min_allowed_weights=1024)
    with pytest.raises(InvalidWeightsError, match="at least 4"):
        metagraph.set_weights(
            hotkey=hotkey(0), weights=[(1, 1), (2, 1), (3, 1)], block=1, rules=chain_default
        )
    metagraph.set_weights(
        hotkey=hotkey(0), weights=[(0, 0), (1, 1), (2, 1), (3, 1)], block=1, rules=chain_default
    )


def test_set_weights_refuses_a_normalized_weight_above_max_weights_limit() -> None:
    metagraph = permitted(registered(3), 0)
    half = replace(OPEN, max_weights_limit=32_768)
    with pytest.raises(InvalidWeightsError, match="limit"):
        metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 3), (2, 1)], block=1, rules=half)
    metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1), (2, 1)], block=1, rules=half)


def test_set_weights_refusals_leave_the_metagraph_unchanged() -> None:
    metagraph = permitted(registered(3), 0)
    before = metagraph.to_canonical()
    with pytest.raises(InvalidWeightsError):
        metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1), (1, 1)], block=1, rules=OPEN)
    assert metagraph.to_canonical() == before


# -- epochs and digests -----------------------------------------------------------------------------------


def test_epochs_read_and_write_back_bonds_permits_and_outputs() -> None:
    rules = OPEN
    metagraph = registered(5, rules=rules)
    metagraph = metagraph.with_stakes({hotkey(0): 600 * TAO, hotkey(1): 400 * TAO})
    params = EpochParams(tempo=10)

    first = run_epoch(metagraph.epoch_inputs(block=10), params)
    metagraph = metagraph.after_epoch(first, block=10)
    assert [n.validator_permit for n in metagraph.neurons] == [True, True, False, False, False]
    assert (metagraph.epoch, metagraph.last_epoch_block) == (1, 10)

    for validator in (0, 1):
        metagraph = metagraph.set_weights(
            hotkey=hotkey(validator), weights=[(2, 300), (3, 100), (4, 0)], block=11, rules=rules
        )
    inputs = metagraph.epoch_inputs(block=20)
    assert inputs.last_mechanism_step_block == 10
    assert inputs.weights[0] == ((2, 65535), (3, 21845), (4, 0))
    second = run_epoch(inputs, params)
    metagraph = metagraph.after_epoch(second, block=20)

    assert metagraph.neurons[0].bonds == second.bonds_storage_rows()[0]
    assert metagraph.neurons[0].bonds != ()
    assert [n.incentive for n in metagraph.neurons] == second.incentive.tolist()
    assert [n.dividends for n in metagraph.neurons] == second.dividends.tolist()
    assert [n.emission_rao for n in metagraph.neurons] == list(second.combined_emission)
    assert (
        metagraph.neurons[2].incentive > metagraph.neurons[3].incentive > metagraph.neurons[4].incentive == 0
    )
    # The next epoch reads the bonds this one wrote.
    assert metagraph.epoch_inputs(block=30).bonds == second.bonds_storage_rows()


def test_digest_is_stable_and_covers_every_neuron_field() -> None:
    metagraph = permitted(registered(2), 0)
    assert metagraph.digest == permitted(registered(2), 0).digest
    changes: list[dict[str, object]] = [
        {"coldkey": hotkey(77)},
        {"registered_at_block": 3},
        {"last_update_block": 4},
        {"stake_rao": 5},
        {"validator_permit": False},
        {"weights": ((1, 1),)},
        {"bonds": ((1, 1),)},
        {"incentive": 1},
        {"dividends": 1},
        {"validator_trust": 1},
        {"consensus": 1},
        {"emission_rao": 1},
    ]
    digests = {with_neuron(metagraph, 0, **change).digest for change in changes}
    assert len(digests) == len(changes)
    assert metagraph.digest not in digests
    assert replace(metagraph, epoch=1).digest != metagraph.digest
    assert replace(metagraph, last_epoch_block=1).digest != metagraph.digest


def test_weights_digest_depends_only_on_weights() -> None:
    metagraph = permitted(registered(2), 0)
    assert with_neuron(metagraph, 1, stake_rao=9).weights_digest == metagraph.weights_digest
    assert with_neuron(metagraph, 0, weights=((1, 2),)).weights_digest != metagraph.weights_digest


# -- deregistration ---------------------------------------------------------------------------------------


def test_deregister_frees_the_uid_and_clears_weights_and_bonds_to_and_from_it() -> None:
    metagraph = permitted(registered(4, block=0), 0, 1)
    metagraph = metagraph.set_weights(hotkey=hotkey(0), weights=[(2, 100), (3, 50)], block=20, rules=OPEN)
    metagraph = metagraph.set_weights(hotkey=hotkey(2), weights=[(2, 1)], block=20, rules=OPEN)
    metagraph = with_neuron(metagraph, 0, bonds=((2, 400), (3, 200)))
    metagraph = with_neuron(metagraph, 2, bonds=((3, 9),), incentive=5, emission_rao=77, stake_rao=3)
    untouched = metagraph.neurons[1]

    new, uid = metagraph.deregister(hotkey=hotkey(2), block=30)

    assert uid == 2
    assert new.n == 4
    assert new.neurons[2] == Neuron.vacancy(2, block=30)
    assert new.neurons[2].vacant
    assert (new.neurons[2].weights, new.neurons[2].bonds, new.neurons[2].emission_rao) == ((), (), 0)
    assert new.uid_of(hotkey(2)) is None
    assert [n.uid for n in new.registered] == [0, 1, 3]
    # Weights to it become explicit zeros (as clear_neuron leaves them); bonds to it are dropped.
    assert new.neurons[0].weights == ((2, 0), (3, 32768))
    assert new.neurons[0].bonds == ((3, 200),)
    assert new.neurons[1] is untouched
    assert new.neurons[3] is metagraph.neurons[3]


def test_deregister_refuses_a_hotkey_that_holds_no_uid() -> None:
    metagraph = registered(2)
    with pytest.raises(NotRegisteredError):
        metagraph.deregister(hotkey=hotkey(7), block=3)
    freed, _ = metagraph.deregister(hotkey=hotkey(1), block=3)
    with pytest.raises(NotRegisteredError):
        freed.deregister(hotkey=hotkey(1), block=4)


def test_register_takes_the_lowest_vacant_uid_before_appending_or_pruning() -> None:
    rules = replace(OPEN, max_allowed_uids=4)
    metagraph = registered(4, rules=rules)
    metagraph, _ = metagraph.deregister(hotkey=hotkey(3), block=5)
    metagraph, _ = metagraph.deregister(hotkey=hotkey(1), block=6)
    metagraph, uid = metagraph.register(
        hotkey=hotkey(9), coldkey=hotkey(8), block=7, stake_rao=0, rules=rules
    )
    assert uid == 1
    # Full but with a vacancy: it is taken, nobody is pruned.
    metagraph, uid = metagraph.register(
        hotkey=hotkey(10), coldkey=hotkey(8), block=8, stake_rao=0, rules=rules
    )
    assert uid == 3
    assert [n.hotkey for n in metagraph.neurons] == [hotkey(0), hotkey(9), hotkey(2), hotkey(10)]
    # A deregistered hotkey may register again, into whatever uid is free then.
    metagraph, _ = metagraph.deregister(hotkey=hotkey(0), block=9)
    metagraph, uid = metagraph.register(
        hotkey=hotkey(3), coldkey=hotkey(8), block=10, stake_rao=0, rules=rules
    )
    assert (uid, metagraph.neurons[0].registered_at_block) == (0, 10)


def test_set_weights_refuses_a_vacant_uid_and_counts_only_registered_uids() -> None:
    metagraph = permitted(registered(4), 0)
    metagraph, _ = metagraph.deregister(hotkey=hotkey(2), block=5)
    with pytest.raises(InvalidWeightsError, match="vacant") as refused:
        metagraph.set_weights(hotkey=hotkey(0), weights=[(1, 1), (2, 1)], block=6, rules=OPEN)
    assert refused.value.field == "weights[1].uid"
    # The chain default asks for every uid: the three registered ones, not the vacancy.
    chain_default = replace(OPEN, min_allowed_weights=1024)
    new = metagraph.set_weights(
        hotkey=hotkey(0), weights=[(0, 0), (1, 1), (3, 1)], block=6, rules=chain_default
    )
    assert new.neurons[0].weights == ((0, 0), (1, 65535), (3, 65535))


def test_a_vacant_uid_earns_nothing_and_stays_vacant_through_an_epoch() -> None:
    metagraph = registered(5).with_stakes({hotkey(0): 600 * TAO, hotkey(1): 400 * TAO})
    params = EpochParams(tempo=10)
    metagraph = metagraph.after_epoch(run_epoch(metagraph.epoch_inputs(block=10), params), block=10)
    for validator in (0, 1):
        metagraph = metagraph.set_weights(
            hotkey=hotkey(validator), weights=[(2, 300), (3, 100), (4, 50)], block=11, rules=OPEN
        )
    metagraph = metagraph.after_epoch(run_epoch(metagraph.epoch_inputs(block=20), params), block=20)
    assert metagraph.neurons[2].incentive > 0
    assert metagraph.neurons[2].emission_rao > 0

    metagraph, _ = metagraph.deregister(hotkey=hotkey(2), block=25)
    # The stake source knows nothing of a vacancy; it keeps zero stake whatever it is told.
    metagraph = metagraph.with_stakes({hotkey(0): 600 * TAO, hotkey(1): 400 * TAO, "": 5})
    result = run_epoch(metagraph.epoch_inputs(block=30), params)
    after = metagraph.after_epoch(result, block=30)

    assert after.neurons[2] == Neuron.vacancy(2, block=25)
    assert (result.incentive.tolist()[2], result.combined_emission[2]) == (0, 0)
    # Its share went to the miners still weighted.
    assert after.neurons[3].incentive > metagraph.neurons[3].incentive
    assert all(pair[0] != 2 for neuron in after.registered for pair in neuron.bonds)
