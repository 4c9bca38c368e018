"""The task plug-in registry and the shipped ``addition`` task type."""

from __future__ import annotations

import random

import pytest
from kubetensor.models import task
from kubetensor.validator.addition import AdditionTask, problem_of
from kubetensor.validator.errors import UnknownTaskTypeError
from kubetensor.validator.tasks import Challenge, TaskRegistry, default_registry


class EchoTask:
    """A second plug-in, to show the interface is all a task type needs."""

    @property
    def name(self) -> str:
        return "echo"

    def challenge(self, rng: random.Random) -> Challenge:
        word = rng.choice(["alpha", "beta"])
        return Challenge(prompt=word, max_tokens=8, reference=word)

    def correctness(self, challenge: Challenge, completion: str) -> float:
        return 1.0 if completion.strip() == challenge.reference else 0.0


def test_default_registry_ships_addition() -> None:
    registry = default_registry()
    assert registry.names() == ["addition"]
    assert registry.get("addition").name == "addition"


def test_unknown_task_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownTaskTypeError) as raised:
        default_registry().get("translation")
    assert raised.value.field == "task_type"
    assert "'translation'" in str(raised.value)
    assert "addition" in str(raised.value)


def test_a_plugin_registers_and_is_found_by_its_task_type() -> None:
    registry = TaskRegistry([EchoTask()])
    registry.register(AdditionTask())
    assert registry.names() == ["addition", "echo"]
    kind = registry.get("echo")
    challenge = kind.challenge(random.Random(1))
    assert kind.correctness(challenge, challenge.reference) == 1.0


def test_registering_a_task_type_twice_is_refused() -> None:
    registry = TaskRegistry([EchoTask()])
    with pytest.raises(ValueError, match="echo"):
        registry.register(EchoTask())


def test_addition_challenges_are_prompts_the_models_know() -> None:
    kind = AdditionTask()
    rng = random.Random(3)
    for _ in range(200):
        challenge = kind.challenge(rng)
        problem = problem_of(challenge.prompt)
        assert challenge.prompt == problem.prompt
        assert challenge.reference == problem.answer
        assert 0 <= problem.a <= task.MAX_OPERAND
        assert 0 <= problem.b <= task.MAX_OPERAND
        # Only sums no model trained on.
        assert task.is_held_out(problem.a, problem.b)
        assert challenge.max_tokens >= len(problem.answer) + 1


def test_addition_challenges_are_reproducible_from_the_seed() -> None:
    kind = AdditionTask()
    first = [kind.challenge(random.Random(9)) for _ in range(3)]
    second = [kind.challenge(random.Random(9)) for _ in range(3)]
    assert first == second


def test_addition_correctness_matches_the_model_builders_scorer() -> None:
    kind = AdditionTask()
    challenge = Challenge(prompt="47+85=", max_tokens=6, reference="231")
    assert kind.correctness(challenge, "231") == 1.0
    assert kind.correctness(challenge, " 231</s>junk") == 1.0
    assert kind.correctness(challenge, "239") == task.score(task.Problem(47, 85), "239")
    assert 0.0 < kind.correctness(challenge, "239") < 1.0
    assert kind.correctness(challenge, "") == 0.0
    assert kind.correctness(challenge, "zz") == 0.0


@pytest.mark.parametrize("prompt", ["47+85", "47-85=", "+85=", "a+b=", "47+85=1"])
def test_problem_of_refuses_what_is_not_an_addition_prompt(prompt: str) -> None:
    with pytest.raises(ValueError, match="not an addition prompt"):
        problem_of(prompt)
