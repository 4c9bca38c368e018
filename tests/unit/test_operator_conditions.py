"""Status from observations (``kubetensor_operator.conditions``) and the event routing of ``handlers``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetensor_operator import conditions, handlers
from kubetensor_operator.conditions import Problem, Reason, Registration, Workload

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REGISTERED = Registration(Reason.REGISTERED, "uid 3 on subnet 1", uid=3)
SCHEDULER = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."


def deployment(
    *,
    replicas: int = 1,
    ready: int = 1,
    available: int | None = None,
    updated: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    available = ready if available is None else available
    updated = replicas if updated is None else updated
    status: dict[str, Any] = {
        "observedGeneration": extra.get("observed", 2),
        "replicas": extra.get("pods", replicas),
        "readyReplicas": ready,
        "availableReplicas": available,
        "updatedReplicas": updated,
        "conditions": [
            {"type": "Available", "status": "True" if available >= replicas else "False"},
            *extra.get("conditions", []),
        ],
    }
    return {"metadata": {"generation": 2}, "spec": {"replicas": replicas}, "status": status}


def by_type(items: list[conditions.Verdict]) -> dict[str, conditions.Verdict]:
    return {v.type: v for v in items}


def test_all_reasons_are_pascal_case() -> None:
    for reason in Reason:
        assert re.fullmatch(r"[A-Z][A-Za-z]+", reason.value), reason


def test_a_serving_registered_miner_is_ready() -> None:
    verdicts = by_type(conditions.neuron_verdicts(Workload.from_deployment(deployment()), REGISTERED))
    assert (verdicts["Ready"].status, verdicts["Ready"].reason) == (True, Reason.SERVING)
    assert "uid 3" in verdicts["Ready"].message
    assert verdicts["Available"].status is True
    assert (verdicts["Progressing"].status, verdicts["Progressing"].reason) == (
        False,
        Reason.ROLLOUT_COMPLETE,
    )
    assert verdicts["Registered"].status is True
    assert (verdicts["Degraded"].status, verdicts["Degraded"].reason) == (False, Reason.AS_EXPECTED)


def test_unschedulable_pods_say_so_with_the_schedulers_message() -> None:
    workload = Workload.from_deployment(deployment(ready=0), unschedulable=[SCHEDULER])
    verdicts = by_type(conditions.neuron_verdicts(workload, REGISTERED))
    for kind, status in (("Ready", False), ("Available", False), ("Degraded", True)):
        assert verdicts[kind].status is status
        assert verdicts[kind].reason is Reason.UNSCHEDULABLE
        assert SCHEDULER in verdicts[kind].message


def test_registered_but_not_ready_is_not_ready() -> None:
    verdicts = by_type(conditions.neuron_verdicts(Workload.from_deployment(deployment(ready=0)), REGISTERED))
    assert (verdicts["Ready"].status, verdicts["Ready"].reason) == (
        False,
        Reason.MINIMUM_REPLICAS_UNAVAILABLE,
    )


def test_serving_but_consensus_unreachable_is_not_ready_and_registration_is_false() -> None:
    unreachable = Registration(Reason.CONSENSUS_UNAVAILABLE, "consensus service at x: UNAVAILABLE", uid=3)
    verdicts = by_type(conditions.neuron_verdicts(Workload.from_deployment(deployment()), unreachable))
    assert (verdicts["Ready"].status, verdicts["Ready"].reason) == (False, Reason.CONSENSUS_UNAVAILABLE)
    assert verdicts["Registered"].status is False
    assert verdicts["Degraded"].status is False


def test_a_refused_registration_degrades() -> None:
    refused = Registration(Reason.REGISTRATION_REFUSED, "FAILED_PRECONDITION: subnet full")
    verdicts = by_type(conditions.neuron_verdicts(Workload.from_deployment(deployment()), refused))
    assert (verdicts["Degraded"].status, verdicts["Degraded"].reason) == (True, Reason.REGISTRATION_REFUSED)


def test_a_scale_up_keeps_the_miner_ready_and_progressing() -> None:
    scaling = Workload.from_deployment(deployment(replicas=3, ready=1, updated=3, pods=3))
    verdicts = by_type(conditions.neuron_verdicts(scaling, REGISTERED))
    assert verdicts["Ready"].status is True
    assert verdicts["Available"].status is False
    assert (verdicts["Progressing"].status, verdicts["Progressing"].reason) == (True, Reason.ROLLING_OUT)


def test_a_rollout_the_deployment_controller_has_not_seen_is_progressing() -> None:
    stale = Workload.from_deployment(deployment(observed=1))
    assert conditions.progressing(stale).status is True


def test_progress_deadline_exceeded_degrades() -> None:
    stuck = deployment(
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "too slow",
            }
        ]
    )
    verdicts = by_type(conditions.neuron_verdicts(Workload.from_deployment(stuck), REGISTERED))
    assert (verdicts["Progressing"].status, verdicts["Progressing"].reason) == (
        False,
        Reason.PROGRESS_DEADLINE_EXCEEDED,
    )
    assert verdicts["Degraded"].status is True


def test_scaled_to_zero_is_available_but_not_ready() -> None:
    verdicts = by_type(
        conditions.neuron_verdicts(Workload.from_deployment(deployment(replicas=0, ready=0)), REGISTERED)
    )
    assert (verdicts["Available"].status, verdicts["Available"].reason) == (True, Reason.SCALED_TO_ZERO)
    assert verdicts["Ready"].status is False


def test_subnet_is_ready_only_when_its_pod_is_ready_and_consensus_answers() -> None:
    serving = Workload.from_deployment(deployment())
    assert by_type(conditions.subnet_verdicts(serving, consensus_problem=None))["Ready"].status is True
    away = Problem(Reason.CONSENSUS_UNAVAILABLE, "UNAVAILABLE")
    ready = by_type(conditions.subnet_verdicts(serving, consensus_problem=away))["Ready"]
    assert (ready.status, ready.reason) == (False, Reason.CONSENSUS_UNAVAILABLE)
    pending = Workload.from_deployment(deployment(ready=0), unschedulable=["unbound PersistentVolumeClaims"])
    ready = by_type(conditions.subnet_verdicts(pending, consensus_problem=None))["Ready"]
    assert (ready.status, ready.reason) == (False, Reason.UNSCHEDULABLE)


def test_evaluate_keeps_transition_times_of_unchanged_conditions() -> None:
    verdicts = conditions.neuron_verdicts(Workload.from_deployment(deployment()), REGISTERED)
    first = conditions.evaluate(verdicts, generation=1, previous=[], now=T0)
    assert [c["type"] for c in first] == ["Ready", "Available", "Progressing", "Registered", "Degraded"]
    assert all(c["lastTransitionTime"] == "2026-01-01T00:00:00Z" for c in first)
    again = conditions.evaluate(verdicts, generation=1, previous=first, now=T0 + timedelta(hours=1))
    assert again == first
    assert conditions.status_changed({"conditions": first}, {"conditions": again}) == {}

    down = conditions.neuron_verdicts(Workload.from_deployment(deployment(ready=0)), REGISTERED)
    later = conditions.evaluate(down, generation=2, previous=first, now=T0 + timedelta(hours=2))
    ready = next(c for c in later if c["type"] == "Ready")
    registered = next(c for c in later if c["type"] == "Registered")
    assert ready["lastTransitionTime"] == "2026-01-01T02:00:00Z"
    assert registered["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert all(c["observedGeneration"] == 2 for c in later)


def test_a_problem_sets_ready_and_degraded_and_keeps_the_rest() -> None:
    before = conditions.evaluate(
        conditions.neuron_verdicts(Workload.from_deployment(deployment()), REGISTERED),
        generation=1,
        previous=[],
        now=T0,
    )
    problem = Problem(Reason.SUBNET_NOT_FOUND, "Subnet 'demo' not found in namespace 'ns'")
    after = {
        c["type"]: c
        for c in conditions.evaluate(
            conditions.problem_verdicts(problem), generation=2, previous=before, now=T0
        )
    }
    assert (after["Ready"]["status"], after["Ready"]["reason"]) == ("False", "SubnetNotFound")
    assert (after["Degraded"]["status"], after["Degraded"]["reason"]) == ("True", "SubnetNotFound")
    assert after["Registered"]["status"] == "True"


def test_events_go_out_for_changes_and_for_notable_first_states_only() -> None:
    serving = conditions.evaluate(
        conditions.neuron_verdicts(Workload.from_deployment(deployment()), REGISTERED),
        generation=1,
        previous=[],
        now=T0,
    )
    first = [(c["type"], warning) for c, warning in conditions.transitions([], serving)]
    assert first == [("Ready", False), ("Registered", False)]
    stuck = conditions.evaluate(
        conditions.neuron_verdicts(
            Workload.from_deployment(deployment(ready=0), unschedulable=[SCHEDULER]), REGISTERED
        ),
        generation=1,
        previous=serving,
        now=T0,
    )
    changed = {c["type"]: warning for c, warning in conditions.transitions(serving, stuck)}
    assert changed == {"Ready": True, "Available": True, "Degraded": True}
    recovered = {c["type"] for c, _ in conditions.transitions(stuck, serving)}
    assert recovered == {"Ready", "Degraded"}
    assert conditions.transitions(stuck, stuck) == []


def test_status_patch_holds_only_what_changed_and_deletes_with_none() -> None:
    current = {"uid": 3, "incentive": 0.5, "hotkey": "ab"}
    assert conditions.status_changed(current, {"uid": 3, "incentive": 0.25, "hotkey": "ab"}) == {
        "incentive": 0.25
    }
    assert conditions.status_changed(current, {"uid": None}) == {"uid": None}
    assert conditions.status_changed({}, {"uid": None}) == {}


def pod(labels: dict[str, str], *, scheduled: bool, name: str = "p1") -> dict[str, Any]:
    condition = (
        {"type": "PodScheduled", "status": "True"}
        if scheduled
        else {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": SCHEDULER}
    )
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "status": {"conditions": [condition]},
    }


def test_pod_events_track_unschedulable_pods_of_their_owner() -> None:
    runtime = handlers.Runtime(settings=None, kube=None, consensus=None, images=None)  # type: ignore[arg-type]
    miner_labels = {"kubetensor.io/miner": "m1"}
    key = ("Miner", "ns", "m1")
    assert handlers.note_pod(runtime, event_type="ADDED", body=pod(miner_labels, scheduled=False)) == key
    assert runtime.unschedulable[key] == {"p1": SCHEDULER}
    assert handlers.note_pod(runtime, event_type="MODIFIED", body=pod(miner_labels, scheduled=False)) is None
    assert handlers.note_pod(runtime, event_type="MODIFIED", body=pod(miner_labels, scheduled=True)) == key
    assert key not in runtime.unschedulable
    assert handlers.note_pod(runtime, event_type="DELETED", body=pod(miner_labels, scheduled=True)) is None
    consensus = {"app.kubernetes.io/component": "consensus", "kubetensor.io/subnet": "demo"}
    assert handlers.pod_owner(pod(consensus, scheduled=True)) == ("Subnet", "ns", "demo")
    assert handlers.pod_owner(pod({"kubetensor.io/validator": "v"}, scheduled=True)) == (
        "Validator",
        "ns",
        "v",
    )
    assert handlers.pod_owner(pod({"app": "x"}, scheduled=True)) is None


def test_deployment_events_route_to_the_controlling_custom_resource() -> None:
    owned = {
        "metadata": {
            "namespace": "ns",
            "ownerReferences": [
                {"apiVersion": "kubetensor.io/v1alpha1", "kind": "Miner", "name": "m1", "controller": True}
            ],
        }
    }
    assert handlers.deployment_owner(owned) == ("Miner", "ns", "m1")
    other = {
        "metadata": {"namespace": "ns", "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "y"}]}
    }
    assert handlers.deployment_owner(other) is None
