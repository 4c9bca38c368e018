"""Status from what was observed: pure functions, no I/O, no kopf.

``handlers`` observes a resource's Deployment (``Workload.from_deployment``), the scheduler's verdict on
its pods (``unschedulable_message``), its registration (``Registration``) and, for a Subnet, whether
its consensus service answers; the functions here turn that into ``status.conditions``:

=============  ==================================================================================
``Ready``      Miner/Validator: available and registered (for a Miner: vLLM answers, since its
               readiness probe gates the pod). Subnet: available and the consensus service answers.
``Available``  the Deployment has its minimum replicas available, else why not (``Unschedulable``
               with the scheduler's message when pods cannot be placed).
``Progressing`` True while a rollout is under way.
``Registered`` Miner/Validator: the hotkey holds a uid on the subnet.
``Degraded``   True when something needs attention (a bad spec, unschedulable pods, a refusal; for
               a Subnet also a ledger claim that cannot take ``spec.ledger.size``: see
               ``ledger_resize_refused`` and ``ledger_shrink_refused``, which leave Ready alone).
=============  ==================================================================================

When a Miner or Validator is deleted, ``release_blocked`` and ``released`` say (as an Event) what
became of its hotkey's uid.

Reasons are members of ``Reason``. ``evaluate`` keeps ``lastTransitionTime`` of a condition whose
status did not change, so an unchanged world yields an unchanged status (and no write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypedDict

READY = "Ready"
AVAILABLE = "Available"
PROGRESSING = "Progressing"
REGISTERED = "Registered"
DEGRADED = "Degraded"
ORDER = (READY, AVAILABLE, PROGRESSING, REGISTERED, DEGRADED)


class Reason(StrEnum):
    """Every condition and Event reason the operator writes."""

    # Ready
    SERVING = "Serving"
    CONSENSUS_SERVING = "ConsensusServing"
    INVALID_SPEC = "InvalidSpec"
    HOTKEY_SECRET_INVALID = "HotkeySecretInvalid"
    NATS_AUTH_SECRET_INVALID = "NatsAuthSecretInvalid"
    SUBNET_NOT_FOUND = "SubnetNotFound"
    SUBNET_INVALID = "SubnetInvalid"
    APPLY_FAILED = "ApplyFailed"
    # Available
    MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
    MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"
    UNSCHEDULABLE = "Unschedulable"
    SCALED_TO_ZERO = "ScaledToZero"
    DEPLOYMENT_PENDING = "DeploymentPending"
    # Progressing
    ROLLING_OUT = "RollingOut"
    ROLLOUT_COMPLETE = "RolloutComplete"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    # Registered
    REGISTERED = "Registered"
    REGISTERING = "Registering"
    CONSENSUS_UNAVAILABLE = "ConsensusUnavailable"
    REGISTRATION_REFUSED = "RegistrationRefused"
    # Degraded
    AS_EXPECTED = "AsExpected"
    REPLICA_FAILURE = "ReplicaFailure"
    LEDGER_RESIZE_REFUSED = "LedgerResizeRefused"
    LEDGER_SHRINK_REFUSED = "LedgerShrinkRefused"
    # Events only
    DEREGISTERED = "Deregistered"
    NOT_REGISTERED = "NotRegistered"
    DEREGISTRATION_SKIPPED = "DeregistrationSkipped"
    HOTKEY_GENERATED = "HotkeyGenerated"
    LEDGER_RESIZING = "LedgerResizing"


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """One entry of ``status.conditions`` (the Kubernetes ``metav1.Condition`` shape)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


@dataclass(frozen=True)
class Verdict:
    """A condition before it is stamped with a generation and a transition time."""

    type: str
    status: bool | None
    reason: Reason
    message: str

    @property
    def status_text(self) -> ConditionStatus:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


@dataclass(frozen=True)
class Problem:
    """Something that stops the resource from being reconciled at all (a bad spec, a missing subnet)."""

    reason: Reason
    message: str


def unschedulable_message(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when ``pod`` is pending because it cannot be placed, else None."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return None
    for condition in pod.get("status", {}).get("conditions", []) or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return str(condition.get("message") or "the scheduler found no node for the pod")
    return None


def _deployment_condition(deployment: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in deployment.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == kind:
            found: Mapping[str, Any] = condition
            return found
    return None


@dataclass(frozen=True)
class Workload:
    """What the Deployment of a resource reports, plus the scheduler's word on its pending pods."""

    found: bool
    desired: int
    replicas: int = 0
    ready: int = 0
    available: int = 0
    updated: int = 0
    current: bool = False
    """The Deployment controller has observed the Deployment's latest generation."""
    minimum_available: bool = False
    """The Deployment's own ``Available`` condition (minimum replicas available)."""
    deadline_exceeded: str | None = None
    replica_failure: str | None = None
    unschedulable: tuple[str, ...] = ()

    @classmethod
    def from_deployment(
        cls, deployment: Mapping[str, Any] | None, *, unschedulable: Sequence[str] = ()
    ) -> Workload:
        if deployment is None:
            return cls(found=False, desired=0)
        spec = deployment.get("spec", {})
        status = deployment.get("status", {}) or {}
        available = _deployment_condition(deployment, "Available")
        progressing = _deployment_condition(deployment, "Progressing")
        failure = _deployment_condition(deployment, "ReplicaFailure")
        generation = deployment.get("metadata", {}).get("generation", 0)
        return cls(
            found=True,
            desired=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas", 0)),
            ready=int(status.get("readyReplicas", 0)),
            available=int(status.get("availableReplicas", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            current=int(status.get("observedGeneration", 0)) >= int(generation),
            minimum_available=bool(available and available.get("status") == "True"),
            deadline_exceeded=(
                str(progressing.get("message", ""))
                if progressing
                and progressing.get("status") == "False"
                and progressing.get("reason") == "ProgressDeadlineExceeded"
                else None
            ),
            replica_failure=(
                str(failure.get("message", "")) if failure and failure.get("status") == "True" else None
            ),
            unschedulable=tuple(unschedulable),
        )

    @property
    def rolling(self) -> bool:
        """A rollout or scale is under way: not every replica is updated and available, or extra exist."""
        return not self.current or not (
            self.updated == self.desired and self.available == self.desired and self.replicas == self.desired
        )


@dataclass(frozen=True)
class Registration:
    """Where a hotkey stands on its subnet."""

    reason: Reason
    message: str
    uid: int | None = None

    @property
    def registered(self) -> bool:
        return self.reason is Reason.REGISTERED


@dataclass(frozen=True)
class Release:
    """What the finalizer of a deleted Miner or Validator says about its hotkey's uid (one Event)."""

    reason: Reason
    message: str
    warning: bool


def release_blocked(
    kind: str, name: str, *, subnet: str, subnet_body: Mapping[str, Any] | None
) -> Release | None:
    """Why the hotkey cannot be deregistered because of its Subnet (gone or going, and its consensus
    service with it), or None while the Subnet stands. Deletion goes on either way."""
    if subnet_body is None:
        state = "is gone"
    elif (subnet_body.get("metadata") or {}).get("deletionTimestamp"):
        state = "is being deleted"
    else:
        return None
    return Release(
        Reason.DEREGISTRATION_SKIPPED,
        f"{kind} {name} was not deregistered: Subnet {subnet!r} {state}, and its consensus service with it",
        warning=True,
    )


def released(
    kind: str, name: str, *, hotkey: str, netuid: int, uid: int | None, block: int | None = None
) -> Release:
    """The Event of a finalizer that asked the consensus service to free the hotkey's uid: ``uid`` is
    what it freed (at ``block``), None when the hotkey held none."""
    if uid is None:
        return Release(
            Reason.NOT_REGISTERED,
            f"{kind} {name}: hotkey {hotkey[:16]}... held no uid on subnet {netuid}; nothing to deregister",
            warning=False,
        )
    at = "" if block is None else f" at block {block}"
    return Release(
        Reason.DEREGISTERED,
        f"{kind} {name}: deregistered uid {uid} (hotkey {hotkey[:16]}...) from subnet {netuid}{at}",
        warning=False,
    )


def available(workload: Workload) -> Verdict:
    if not workload.found:
        return Verdict(AVAILABLE, False, Reason.DEPLOYMENT_PENDING, "the Deployment is being created")
    if workload.desired == 0:
        return Verdict(AVAILABLE, True, Reason.SCALED_TO_ZERO, "scaled to 0 replicas")
    counts = f"{workload.available} of {workload.desired} replicas available"
    if workload.unschedulable:
        return Verdict(
            AVAILABLE,
            workload.minimum_available,
            Reason.UNSCHEDULABLE,
            f"{counts}; {len(workload.unschedulable)} pod(s) cannot be scheduled: "
            f"{workload.unschedulable[0]}",
        )
    if workload.minimum_available:
        return Verdict(AVAILABLE, True, Reason.MINIMUM_REPLICAS_AVAILABLE, counts)
    return Verdict(AVAILABLE, False, Reason.MINIMUM_REPLICAS_UNAVAILABLE, counts)


def progressing(workload: Workload) -> Verdict:
    if workload.deadline_exceeded is not None:
        return Verdict(PROGRESSING, False, Reason.PROGRESS_DEADLINE_EXCEEDED, workload.deadline_exceeded)
    if not workload.found or workload.rolling:
        return Verdict(
            PROGRESSING,
            True,
            Reason.ROLLING_OUT,
            f"{workload.updated} of {workload.desired} replicas updated, {workload.available} available",
        )
    return Verdict(
        PROGRESSING, False, Reason.ROLLOUT_COMPLETE, f"{workload.desired} replicas updated and available"
    )


def registered(registration: Registration) -> Verdict:
    status = (
        True if registration.registered else (None if registration.reason is Reason.REGISTERING else False)
    )
    return Verdict(REGISTERED, status, registration.reason, registration.message)


def ledger_resize_refused(*, claim: str, current: str, wanted: str, refusal: str) -> Problem:
    """The API server refused to grow the ledger claim (it is not bound, or its StorageClass does not
    allow expansion): the Subnet goes on with the claim as it is."""
    return Problem(
        Reason.LEDGER_RESIZE_REFUSED,
        f"spec.ledger.size {wanted} was not applied: the API server refused to grow PersistentVolumeClaim "
        f"{claim} from {current}: {refusal}. A claim grows only when it is Bound and its StorageClass sets "
        f"allowVolumeExpansion: true; fix that (the operator retries every resync) or set spec.ledger.size "
        f"back to {current}",
    )


def ledger_shrink_refused(*, claim: str, current: str, wanted: str) -> Problem:
    """``spec.ledger.size`` is below the claim's request: the claim is left as it is."""
    return Problem(
        Reason.LEDGER_SHRINK_REFUSED,
        f"spec.ledger.size {wanted} is smaller than PersistentVolumeClaim {claim}'s {current}; a "
        f"PersistentVolumeClaim cannot shrink: set spec.ledger.size to {current} or more (the claim keeps "
        f"{current})",
    )


def degraded(
    workload: Workload, *, refusal: Registration | None = None, ledger: Problem | None = None
) -> Verdict:
    if workload.unschedulable:
        return Verdict(DEGRADED, True, Reason.UNSCHEDULABLE, workload.unschedulable[0])
    if workload.deadline_exceeded is not None:
        return Verdict(DEGRADED, True, Reason.PROGRESS_DEADLINE_EXCEEDED, workload.deadline_exceeded)
    if workload.replica_failure is not None:
        return Verdict(DEGRADED, True, Reason.REPLICA_FAILURE, workload.replica_failure)
    if refusal is not None and refusal.reason is Reason.REGISTRATION_REFUSED:
        return Verdict(DEGRADED, True, Reason.REGISTRATION_REFUSED, refusal.message)
    if ledger is not None:
        return Verdict(DEGRADED, True, ledger.reason, ledger.message)
    return Verdict(DEGRADED, False, Reason.AS_EXPECTED, "nothing needs attention")


def neuron_verdicts(workload: Workload, registration: Registration) -> list[Verdict]:
    """Ready, Available, Progressing, Registered and Degraded of a Miner or Validator.

    Ready means serving: at least one replica ready (for a Miner, vLLM answers its readiness probe)
    and the hotkey registered. A scale-up or rollout that keeps replicas ready keeps it Ready.
    """
    avail = available(workload)
    reg = registered(registration)
    if workload.ready > 0 and reg.status:
        ready = Verdict(
            READY,
            True,
            Reason.SERVING,
            f"{workload.ready} of {workload.desired} replicas ready; {registration.message}",
        )
    elif workload.ready == 0:
        reason = Reason.MINIMUM_REPLICAS_UNAVAILABLE if avail.status and workload.desired else avail.reason
        ready = Verdict(READY, False, reason, f"no replica is ready: {avail.message}")
    else:
        ready = Verdict(READY, False, reg.reason, reg.message)
    return [ready, avail, progressing(workload), reg, degraded(workload, refusal=registration)]


def subnet_verdicts(
    workload: Workload, *, consensus_problem: Problem | None, ledger_problem: Problem | None = None
) -> list[Verdict]:
    """Ready, Available, Progressing and Degraded of a Subnet (Ready: the consensus pod is ready and the
    consensus service answers). ``ledger_problem`` (a claim that cannot take ``spec.ledger.size``)
    degrades the Subnet without making it unready: it serves on with the claim it has."""
    avail = available(workload)
    if workload.ready == 0:
        reason = Reason.MINIMUM_REPLICAS_UNAVAILABLE if avail.status else avail.reason
        ready = Verdict(READY, False, reason, f"the consensus pod is not ready: {avail.message}")
    elif consensus_problem is not None:
        ready = Verdict(READY, False, consensus_problem.reason, consensus_problem.message)
    else:
        ready = Verdict(READY, True, Reason.CONSENSUS_SERVING, "the consensus service answers")
    return [ready, avail, progressing(workload), degraded(workload, ledger=ledger_problem)]


def problem_verdicts(problem: Problem) -> list[Verdict]:
    """Ready and Degraded for a resource that cannot be reconciled; other conditions stay as they were."""
    return [
        Verdict(READY, False, problem.reason, problem.message),
        Verdict(DEGRADED, True, problem.reason, problem.message),
    ]


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def evaluate(
    verdicts: Sequence[Verdict], *, generation: int, previous: Sequence[Mapping[str, Any]], now: datetime
) -> list[Condition]:
    """The new ``status.conditions``: ``verdicts`` stamped, other previous conditions kept, in ORDER.

    A condition whose status is unchanged keeps its ``lastTransitionTime``.
    """
    before = {str(c.get("type")): c for c in previous}
    merged: dict[str, Condition] = {}
    for kind, old in before.items():
        merged[kind] = Condition(
            type=kind,
            status=old.get("status", "Unknown"),
            reason=str(old.get("reason", "")),
            message=str(old.get("message", "")),
            lastTransitionTime=str(old.get("lastTransitionTime", timestamp(now))),
            observedGeneration=int(old.get("observedGeneration", generation)),
        )
    for verdict in verdicts:
        prior = before.get(verdict.type)
        status = verdict.status_text
        unchanged = prior is not None and prior.get("status") == status and prior.get("lastTransitionTime")
        merged[verdict.type] = Condition(
            type=verdict.type,
            status=status,
            reason=str(verdict.reason),
            message=verdict.message,
            lastTransitionTime=str(prior["lastTransitionTime"]) if unchanged and prior else timestamp(now),
            observedGeneration=generation,
        )
    rank = {kind: i for i, kind in enumerate(ORDER)}
    return sorted(merged.values(), key=lambda c: (rank.get(c["type"], len(ORDER)), c["type"]))


def transitions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Condition]
) -> list[tuple[Condition, bool]]:
    """Conditions worth an Event, each with whether it is a warning.

    Ready, Registered and Degraded are worth one when their status changes (a Degraded or failing one
    also when its reason does); Available and Progressing only when they turn to a warning. A condition
    seen for the first time only when it says something happened (Ready, Registered or Degraded true).
    """
    before = {str(c.get("type")): c for c in previous}
    changed = []
    for condition in current:
        kind, status = condition["type"], condition["status"]
        warning = (kind == DEGRADED and status == "True") or (
            kind in (READY, AVAILABLE, REGISTERED) and status == "False"
        )
        old = before.get(kind)
        if old is None:
            if kind in (READY, REGISTERED, DEGRADED) and status == "True":
                changed.append((condition, warning))
            continue
        moved = old.get("status") != status or (warning and old.get("reason") != condition["reason"])
        if moved and (kind in (READY, REGISTERED, DEGRADED) or warning):
            changed.append((condition, warning))
    return changed


def status_changed(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``current`` status into ``new`` (None deletes a key); {} if equal."""
    return {
        key: value
        for key, value in new.items()
        if current.get(key) != value and not (value is None and key not in current)
    }
