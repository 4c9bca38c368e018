"""The kopf shell: parse -> compute -> apply -> register -> report, for Subnet, Miner and Validator.

``build_registry(runtime)`` returns a ``kopf.OperatorRegistry`` whose handlers close over a ``Runtime``
(settings, the Kubernetes client, the consensus gateway and a few in-memory caches); there are no module
globals. Per custom resource:

- create / resume / spec update, and a timer every ``resync_seconds``: ``reconcile`` (level-based: the
  timer re-applies drifted children, retries registration and refreshes metrics);
- delete: ``release`` (the finalizer ``kubetensor.io/finalizer``): a Miner's or Validator's hotkey is
  deregistered from its subnet first; while the consensus service is unreachable the finalizer stays
  and kopf retries, but a Subnet that is gone or going, or a hotkey Secret that is gone, does not hold
  the deletion up (a Warning Event says why);
- events of the operator's Deployments and pods: ``refresh`` recomputes status from the new state
  without re-applying anything, so readiness and ``Unschedulable`` show within moments.

A Subnet's ledger claim is created once; afterwards only its storage request is patched, when
``spec.ledger.size`` grows past it (a Normal ``LedgerResizing`` Event). A growth the API server refuses,
or a size below the claim's (a claim cannot shrink), leaves the claim and the Subnet running as they are
and sets Degraded (``LedgerResizeRefused``, ``LedgerShrinkRefused``), whose transition posts the Warning.

All work on one resource holds that resource's lock. Status is written only when it changed
(``conditions.status_changed``); Events are posted only on condition transitions. Handlers return
None, so kopf writes nothing of its own into status. Reconciles, the Ready condition each status write
computes, registrations and releases are counted in ``runtime.metrics`` (``/metrics``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import random
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from kubetensor.core import telemetry
from kubetensor.core.natsauth import PASSWORD_KEY, TOKEN_KEY, USER_KEY, credentials_problem

from kubetensor_operator import conditions, consensus, desired, kube, metrics, model
from kubetensor_operator.conditions import Problem, Reason, Registration, Workload
from kubetensor_operator.consensus import ConsensusGateway
from kubetensor_operator.desired import Images, Owner
from kubetensor_operator.errors import (
    ConsensusRefusedError,
    ConsensusUnavailableError,
    HotkeySecretError,
    KubeApiError,
    KubeConflictError,
    SpecError,
)
from kubetensor_operator.kube import KubeClient
from kubetensor_operator.metrics import OperatorMetrics
from kubetensor_operator.model import GROUP, VERSION, Manifest, Neuron, SettlementHead
from kubetensor_operator.settings import OperatorSettings

FINALIZER = "kubetensor.io/finalizer"
ANNOTATION_PREFIX = "operator.kubetensor.io"
RESOURCES: dict[str, kube.Resource] = {
    "Subnet": kube.SUBNETS,
    "Miner": kube.MINERS,
    "Validator": kube.VALIDATORS,
}
PLURALS = {"Subnet": "subnets", "Miner": "miners", "Validator": "validators"}

Key = tuple[str, str, str]
"""(kind, namespace, name) of a custom resource."""

_log = logging.getLogger("kubetensor_operator")


@dataclass(frozen=True)
class Identity:
    """Who a Miner or Validator is on its subnet (what ``refresh`` needs without re-reading it)."""

    hotkey: str
    netuid: int


@dataclass(frozen=True)
class SubnetView:
    """What a Subnet's consensus service said last."""

    problem: Problem | None
    epoch: int = 0
    head: SettlementHead | None = None
    netuid: int = 0


@dataclass
class Runtime:
    """Everything the handlers share: clients, settings and caches (lost on restart, rebuilt on resume)."""

    settings: OperatorSettings
    kube: KubeClient
    consensus: ConsensusGateway
    images: Images
    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    applied: dict[Key, int] = field(default_factory=dict)
    """Generation whose children were applied (``refresh`` reports only for that generation)."""
    identities: dict[Key, Identity] = field(default_factory=dict)
    registrations: dict[Key, Registration] = field(default_factory=dict)
    neurons: dict[Key, Neuron | None] = field(default_factory=dict)
    subnets: dict[Key, SubnetView] = field(default_factory=dict)
    ledgers: dict[Key, Problem] = field(default_factory=dict)
    """Subnets whose ledger claim cannot take ``spec.ledger.size`` (kept for ``refresh``)."""
    unschedulable: dict[Key, dict[str, str]] = field(default_factory=dict)
    """Pod name -> the scheduler's message, for pods that cannot be placed."""
    refreshing: set[Key] = field(default_factory=set)
    """Resources with a refresh waiting for their lock (further events need no refresh of their own)."""
    indices: tuple[Any, Any] | None = None
    """kopf's Miner and Validator indices by (namespace, subnet), live views (set by the first handler)."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    """The operator's Prometheus figures (served by ``__main__`` when ``metrics_listen`` is set)."""

    @classmethod
    def create(
        cls, settings: OperatorSettings, *, kube_client: KubeClient, gateway: ConsensusGateway
    ) -> Runtime:
        return cls(
            settings=settings,
            kube=kube_client,
            consensus=gateway,
            images=Images(
                kubetensor=settings.image,
                vllm=settings.vllm_image,
                consensus=settings.consensus_image,
                chain=settings.chain_image,
                miner=settings.miner_image,
                validator=settings.validator_image,
            ),
        )

    def lock(self, key: Key) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    def forget(self, key: Key) -> None:
        self.applied.pop(key, None)
        self.identities.pop(key, None)
        self.registrations.pop(key, None)
        self.neurons.pop(key, None)
        self.subnets.pop(key, None)
        self.ledgers.pop(key, None)
        self.unschedulable.pop(key, None)
        self.locks.pop(key, None)
        self.metrics.forget(key)

    def members(self, namespace: str, subnet: str) -> tuple[int, int] | None:
        """Miners and Validators naming the Subnet (None before kopf handed over its indices)."""
        if self.indices is None:
            return None
        miners, validators = self.indices
        return len(miners.get((namespace, subnet), [])), len(validators.get((namespace, subnet), []))

    def soon(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background (kept referenced until done)."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def consensus_address(self, subnet: str, namespace: str) -> str:
        return self.settings.consensus_address_override or desired.consensus_address(subnet, namespace)


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body["metadata"]
    return (str(body["kind"]), str(meta["namespace"]), str(meta["name"]))


def _now() -> datetime:
    return datetime.now(UTC)


# -- status -------------------------------------------------------------------------------------------


async def _write_status(runtime: Runtime, body: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Patch status with what changed (nothing when nothing did); post Events for transitions."""
    kind, namespace, name = key_of(body)
    current = body.get("status") or {}
    for condition in new.get("conditions", []):
        if condition["type"] == "Ready":
            runtime.metrics.ready((kind, namespace, name), str(condition["status"]))
    patch = conditions.status_changed(current, new)
    if not patch:
        return
    try:
        await runtime.kube.patch_status(RESOURCES[kind], namespace, name, patch)
    except KubeApiError as error:
        if error.status == 404:
            runtime.metrics.forget((kind, namespace, name))
            return
        raise
    if "conditions" in patch:
        for condition, warning in conditions.transitions(current.get("conditions", []), patch["conditions"]):
            _log.log(
                logging.WARNING if warning else logging.INFO,
                "%s %s/%s: %s=%s %s: %s",
                kind,
                namespace,
                name,
                condition["type"],
                condition["status"],
                condition["reason"],
                condition["message"],
            )
            await _event(
                runtime,
                body,
                warning=warning,
                reason=condition["reason"],
                message=f"{condition['type']}={condition['status']}: {condition['message']}",
            )


async def _event(
    runtime: Runtime, body: Mapping[str, Any], *, warning: bool, reason: str, message: str
) -> None:
    try:
        await runtime.kube.post_event(body, warning=warning, reason=reason, message=message)
    except KubeApiError as error:
        # An Event is a courtesy; the lasting record is status.conditions.
        _log.warning("could not post event %s for %s: %s", reason, key_of(body), error)


async def _report_problem(runtime: Runtime, body: Mapping[str, Any], problem: Problem) -> None:
    key = key_of(body)
    runtime.applied.pop(key, None)
    generation = int(body["metadata"].get("generation", 1))
    previous = (body.get("status") or {}).get("conditions", [])
    new = {
        "observedGeneration": generation,
        "conditions": conditions.evaluate(
            conditions.problem_verdicts(problem), generation=generation, previous=previous, now=_now()
        ),
    }
    await _write_status(runtime, body, new)


def _neuron_fields(kind: str, key: Key, runtime: Runtime, workload: Workload) -> dict[str, Any]:
    identity = runtime.identities.get(key)
    registration = runtime.registrations.get(key)
    neuron = runtime.neurons.get(key)
    uid = registration.uid if registration is not None else None
    fields: dict[str, Any] = {
        "hotkey": identity.hotkey if identity else None,
        "netuid": identity.netuid if identity else None,
        "uid": uid,
        "readyReplicas": workload.ready,
    }
    if kind == "Miner":
        fields.update(
            replicas=workload.replicas,
            availableReplicas=workload.available,
            updatedReplicas=workload.updated,
            selector=desired.selector("Miner", key[2]),
            incentive=neuron.incentive if neuron else None,
            emission=neuron.emission_rao if neuron else None,
            consensus=neuron.consensus if neuron else None,
        )
    else:
        fields.update(
            stake=neuron.stake_rao if neuron else None,
            validatorPermit=neuron.validator_permit if neuron else None,
            trust=neuron.validator_trust if neuron else None,
            dividends=neuron.dividends if neuron else None,
            emission=neuron.emission_rao if neuron else None,
        )
    return fields


async def _publish(runtime: Runtime, body: Mapping[str, Any], deployment: Mapping[str, Any] | None) -> None:
    """Compute status from the cached observations and write it if it changed."""
    key = key_of(body)
    kind = key[0]
    generation = runtime.applied[key]
    pending = list(runtime.unschedulable.get(key, {}).values())
    workload = Workload.from_deployment(deployment, unschedulable=pending)
    status = body.get("status") or {}
    if kind == "Subnet":
        view = runtime.subnets.get(key, SubnetView(problem=None))
        verdicts = conditions.subnet_verdicts(
            workload, consensus_problem=view.problem, ledger_problem=runtime.ledgers.get(key)
        )
        fields: dict[str, Any] = {
            "netuid": view.netuid,
            "address": desired.consensus_address(key[2], key[1]),
            "epoch": view.epoch,
            "lastSettlement": {"epoch": view.head.epoch, "hash": view.head.hash} if view.head else None,
        }
        counts = runtime.members(key[1], key[2])
        if counts is not None:
            fields["miners"], fields["validators"] = counts
    else:
        registration = runtime.registrations.get(
            key, Registration(Reason.REGISTERING, "registration has not been attempted yet")
        )
        verdicts = conditions.neuron_verdicts(workload, registration)
        fields = _neuron_fields(kind, key, runtime, workload)
    new = {
        "observedGeneration": generation,
        "conditions": conditions.evaluate(
            verdicts, generation=generation, previous=status.get("conditions", []), now=_now()
        ),
        **fields,
    }
    await _write_status(runtime, body, new)


# -- children -----------------------------------------------------------------------------------------


async def _apply_one(runtime: Runtime, manifest: Manifest) -> Manifest:
    resource = kube.resource_for(manifest)
    meta = manifest["metadata"]
    live = await runtime.kube.get(resource, meta["namespace"], meta["name"])
    if desired.create_only(manifest):
        if live is not None:
            return live
        try:
            return await runtime.kube.create(manifest)
        except KubeConflictError:
            found = await runtime.kube.get(resource, meta["namespace"], meta["name"])
            return found if found is not None else manifest
    if desired.drifted(manifest, live):
        return await runtime.kube.apply(manifest)
    assert live is not None
    return live


async def _apply(runtime: Runtime, manifests: list[Manifest]) -> dict[str, Manifest]:
    """Apply what drifted; the live objects by kind."""
    live = await asyncio.gather(*(_apply_one(runtime, m) for m in manifests))
    return {str(m["kind"]): obj for m, obj in zip(manifests, live, strict=True)}


async def _resize_ledger(
    runtime: Runtime, body: Mapping[str, Any], manifests: list[Manifest], live: Mapping[str, Manifest]
) -> Problem | None:
    """Grow the ledger claim to ``spec.ledger.size`` when it is larger; why the claim cannot take the
    size (reported in Degraded, the Subnet runs on), or None."""
    claim = next((m for m in manifests if m["kind"] == "PersistentVolumeClaim"), None)
    resize = None if claim is None else desired.ledger_resize(claim, live.get("PersistentVolumeClaim"))
    if resize is None:
        return None
    if resize.direction == "shrink":
        return conditions.ledger_shrink_refused(
            claim=resize.claim, current=resize.current, wanted=resize.wanted
        )
    namespace = str(body["metadata"]["namespace"])
    try:
        await runtime.kube.patch(kube.PVCS, namespace, resize.claim, resize.patch())
    except KubeApiError as error:
        if error.transient:
            raise kopf.TemporaryError(str(error), delay=5) from None
        if error.status == 404:
            return None  # gone meanwhile: the next reconcile creates it with the new size
        return conditions.ledger_resize_refused(
            claim=resize.claim, current=resize.current, wanted=resize.wanted, refusal=error.message
        )
    message = (
        f"PersistentVolumeClaim {resize.claim}: storage request {resize.current} -> {resize.wanted} "
        "(spec.ledger.size); the volume grows when its provisioner expands it"
    )
    _log.info("%s %s/%s: %s", *key_of(body), message)
    await _event(runtime, body, warning=False, reason=Reason.LEDGER_RESIZING, message=message)
    return None


async def _hotkey_seed(
    runtime: Runtime, *, owner: Owner, secret_name: str, subnet: str, body: Mapping[str, Any]
) -> str:
    """The hex seed in the hotkey Secret, generating the Secret (immutable) when it is absent."""
    secret = await runtime.kube.get(kube.SECRETS, owner.namespace, secret_name)
    if secret is None:
        seed = consensus.new_seed()
        hotkey = consensus.hotkey_of(seed)
        manifest = desired.hotkey_secret(
            owner=owner, name=secret_name, subnet=subnet, seed_hex=seed, hotkey=hotkey
        )
        try:
            await runtime.kube.create(manifest)
        except KubeConflictError:
            # Someone created it meanwhile: theirs wins, never ours.
            secret = await runtime.kube.get(kube.SECRETS, owner.namespace, secret_name)
        else:
            await _event(
                runtime,
                body,
                warning=False,
                reason=Reason.HOTKEY_GENERATED,
                message=f"generated hotkey {hotkey} in Secret {secret_name}",
            )
            return seed
    if secret is None:
        raise HotkeySecretError(secret_name, "vanished while it was being read")
    return _seed_of(secret, secret_name)


def _seed_of(secret: Mapping[str, Any], secret_name: str) -> str:
    """The hex seed a hotkey Secret holds; HotkeySecretError (never showing the value) when it holds none."""
    raw = (secret.get("data") or {}).get(desired.SECRET_SEED_KEY)
    if not raw:
        raise HotkeySecretError(secret_name, f"has no key {desired.SECRET_SEED_KEY!r}")
    try:
        seed = base64.b64decode(raw).decode().strip()
        consensus.hotkey_of(seed)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HotkeySecretError(
            secret_name, f"key {desired.SECRET_SEED_KEY!r} must hold a 64-character hex ed25519 seed"
        ) from None
    return seed


async def _register(
    runtime: Runtime, key: Key, *, address: str, netuid: int, seed: str, coldkey: str | None
) -> tuple[Registration, Neuron | None]:
    hotkey = consensus.hotkey_of(seed)
    previous = runtime.registrations.get(key)
    try:
        graph = await runtime.consensus.metagraph(address, netuid)
        neuron = graph.neurons.get(hotkey)
        if neuron is None:
            uid = await runtime.consensus.register(address, netuid, seed_hex=seed, coldkey=coldkey or hotkey)
            runtime.metrics.registered(key[0])
            return Registration(Reason.REGISTERED, f"uid {uid} on subnet {netuid}", uid=uid), None
        return Registration(Reason.REGISTERED, f"uid {neuron.uid} on subnet {netuid}", uid=neuron.uid), neuron
    except ConsensusUnavailableError as error:
        # Unknown, not lost: keep the uid the resource had while the service is away.
        message = f"{error}; retrying every {runtime.settings.resync_seconds:g}s"
        kept = previous.uid if previous else None
        runtime.metrics.registration_failed(key[0], Reason.CONSENSUS_UNAVAILABLE)
        return Registration(Reason.CONSENSUS_UNAVAILABLE, message, uid=kept), runtime.neurons.get(key)
    except ConsensusRefusedError as error:
        runtime.metrics.registration_failed(key[0], Reason.REGISTRATION_REFUSED)
        return Registration(Reason.REGISTRATION_REFUSED, str(error)), None


# -- reconcile ----------------------------------------------------------------------------------------


async def reconcile(runtime: Runtime, body: Mapping[str, Any]) -> Problem | None:
    """Bring one resource's children, registration and status in line with its spec.

    Returns the problem that stopped it (already reported in status), or None. Traced as one
    ``operator.reconcile`` span (its consensus calls are children) when tracing is on, and counted in
    ``runtime.metrics`` by kind and outcome, with its duration.
    """
    key = key_of(body)
    kind, namespace, name = key
    attributes: telemetry.Attributes = {
        "k8s.namespace.name": namespace,
        "kubetensor.resource.kind": kind,
        "kubetensor.resource.name": name,
        "kubetensor.resource.generation": int(body.get("metadata", {}).get("generation") or 0),
    }
    started = time.perf_counter()
    outcome, reason = metrics.ERROR, ""
    try:
        with telemetry.span("operator.reconcile", attributes=attributes) as span:
            problem = await _reconcile(runtime, body, key)
            if span is not None and problem is not None:
                span.set_attribute("kubetensor.problem.reason", problem.reason.value)
    except kopf.TemporaryError:
        outcome = metrics.TEMPORARY_ERROR
        raise
    except asyncio.CancelledError:
        outcome = ""  # the operator is stopping: not an outcome of the resource
        raise
    else:
        if problem is None:
            outcome = metrics.OK
        else:
            reason = problem.reason.value
            outcome = metrics.PERMANENT_ERROR if problem.reason is Reason.INVALID_SPEC else metrics.PROBLEM
        return problem
    finally:
        if outcome:
            runtime.metrics.reconciled(kind, outcome, seconds=time.perf_counter() - started, reason=reason)


async def _reconcile(runtime: Runtime, body: Mapping[str, Any], key: Key) -> Problem | None:
    async with runtime.lock(key):
        if key[0] == "Subnet":
            problem = await _reconcile_subnet(runtime, body)
        else:
            problem = await _reconcile_neuron(runtime, body)
        if problem is not None:
            await _report_problem(runtime, body, problem)
        return problem


async def _reconcile_neuron(runtime: Runtime, body: Mapping[str, Any]) -> Problem | None:
    key = key_of(body)
    kind, namespace, name = key
    parser: type[model.MinerSpec] | type[model.ValidatorSpec] = (
        model.MinerSpec if kind == "Miner" else model.ValidatorSpec
    )
    try:
        spec = parser.parse(body.get("spec") or {})
    except SpecError as error:
        return Problem(Reason.INVALID_SPEC, str(error))
    subnet_body = await runtime.kube.get(kube.SUBNETS, namespace, spec.subnet)
    if subnet_body is None:
        return Problem(
            Reason.SUBNET_NOT_FOUND, f"Subnet {spec.subnet!r} not found in namespace {namespace!r}"
        )
    try:
        subnet = model.SubnetSpec.parse(subnet_body.get("spec") or {})
    except SpecError as error:
        return Problem(Reason.SUBNET_INVALID, f"Subnet {spec.subnet!r} is invalid: {error}")
    if subnet.nats_auth is not None:
        problem = await _nats_auth_problem(
            runtime, namespace, subnet=spec.subnet, secret_name=subnet.nats_auth.secret_name
        )
        if problem is not None:
            return problem
    owner = Owner.of(body)
    secret_name = desired.hotkey_secret_name(name, spec.hotkey_secret_name)
    try:
        seed = await _hotkey_seed(
            runtime, owner=owner, secret_name=secret_name, subnet=spec.subnet, body=body
        )
    except HotkeySecretError as error:
        return Problem(Reason.HOTKEY_SECRET_INVALID, str(error))
    if isinstance(spec, model.MinerSpec):
        manifests = desired.miner_objects(
            spec, owner=owner, subnet=subnet, images=runtime.images, otel=runtime.settings.otel_env
        )
    else:
        manifests = desired.validator_objects(
            spec, owner=owner, subnet=subnet, images=runtime.images, otel=runtime.settings.otel_env
        )
    try:
        live = await _apply(runtime, manifests)
    except KubeApiError as error:
        if error.transient:
            raise kopf.TemporaryError(str(error), delay=5) from None
        return Problem(Reason.APPLY_FAILED, f"the API server refused a child object: {error.message}")
    runtime.applied[key] = int(body["metadata"].get("generation", 1))
    runtime.identities[key] = Identity(hotkey=consensus.hotkey_of(seed), netuid=subnet.netuid)
    registration, neuron = await _register(
        runtime,
        key,
        address=runtime.consensus_address(spec.subnet, namespace),
        netuid=subnet.netuid,
        seed=seed,
        coldkey=spec.coldkey,
    )
    runtime.registrations[key] = registration
    runtime.neurons[key] = neuron
    await _publish(runtime, body, live.get("Deployment"))
    return None


async def _nats_auth_problem(
    runtime: Runtime, namespace: str, *, subnet: str, secret_name: str
) -> Problem | None:
    """Why the Secret a Subnet's ``spec.natsAuth`` names cannot give its pods NATS credentials, or None.

    Checked before the pods are made: without it they would wait on a volume that never mounts, or
    start and be refused by NATS. The rule is the services' own (``natsauth.credentials_problem``, on
    the values as the pods will read them: decoded, surrounding whitespace dropped); the values are only
    looked at, never shown. The timer's resync picks up a Secret created later."""
    where = f"Secret {secret_name!r} (spec.natsAuth.secretName of Subnet {subnet!r})"
    secret = await runtime.kube.get(kube.SECRETS, namespace, secret_name)
    if secret is None:
        return Problem(Reason.NATS_AUTH_SECRET_INVALID, f"{where} not found in namespace {namespace!r}")
    data = secret.get("data") or {}
    values = {key: _secret_text(data.get(key)) for key in (TOKEN_KEY, USER_KEY, PASSWORD_KEY)}
    problem = credentials_problem(values, noun="key")
    return None if problem is None else Problem(Reason.NATS_AUTH_SECRET_INVALID, f"{where} {problem}")


def _secret_text(value: str | None) -> str | None:
    """A Secret's base64 value as a service reads its file: text, surrounding whitespace dropped (an
    undecodable value is kept as it is: the kubelet mounts it all the same, and the service says why)."""
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        return value


async def _reconcile_subnet(runtime: Runtime, body: Mapping[str, Any]) -> Problem | None:
    key = key_of(body)
    _, namespace, name = key
    try:
        spec = model.SubnetSpec.parse(body.get("spec") or {})
    except SpecError as error:
        return Problem(Reason.INVALID_SPEC, str(error))
    manifests = desired.subnet_objects(
        spec, owner=Owner.of(body), images=runtime.images, otel=runtime.settings.otel_env
    )
    try:
        live = await _apply(runtime, manifests)
    except KubeApiError as error:
        if error.transient:
            raise kopf.TemporaryError(str(error), delay=5) from None
        return Problem(Reason.APPLY_FAILED, f"the API server refused a child object: {error.message}")
    ledger = await _resize_ledger(runtime, body, manifests, live)
    if ledger is None:
        runtime.ledgers.pop(key, None)
    else:
        runtime.ledgers[key] = ledger
    runtime.applied[key] = int(body["metadata"].get("generation", 1))
    address = runtime.consensus_address(name, namespace)
    try:
        graph = await runtime.consensus.metagraph(address, spec.netuid)
        head = await runtime.consensus.settlement_head(address, spec.netuid, epoch=graph.epoch)
        view = SubnetView(problem=None, epoch=graph.epoch, head=head, netuid=spec.netuid)
    except ConsensusUnavailableError as error:
        previous = runtime.subnets.get(key)
        view = SubnetView(
            problem=Problem(Reason.CONSENSUS_UNAVAILABLE, str(error)),
            epoch=previous.epoch if previous else 0,
            head=previous.head if previous else None,
            netuid=spec.netuid,
        )
    except ConsensusRefusedError as error:
        view = SubnetView(problem=Problem(Reason.CONSENSUS_UNAVAILABLE, str(error)), netuid=spec.netuid)
    runtime.subnets[key] = view
    await _publish(runtime, body, live.get("Deployment"))
    return None


async def refresh(runtime: Runtime, key: Key) -> None:
    """Recompute a resource's status after its Deployment or pods changed (nothing is re-applied).

    Events only trigger it: the Deployment and the resource are read fresh once the lock is held, and a
    burst of events while a refresh waits for the lock costs one refresh, not one per event (an event
    body may be minutes old when a busy operator gets to it).
    """
    if key not in runtime.applied or key in runtime.refreshing:
        return
    kind, namespace, name = key
    runtime.refreshing.add(key)
    try:
        async with runtime.lock(key):
            # From here on, a new event needs a new refresh: this one may have read before it.
            runtime.refreshing.discard(key)
            body = await runtime.kube.get(RESOURCES[kind], namespace, name)
            if body is None or body["metadata"].get("generation") != runtime.applied.get(key):
                return  # gone, or a newer spec that reconcile has not applied yet
            deployment = await runtime.kube.get(
                kube.DEPLOYMENTS, namespace, desired.workload_name(kind, name)
            )
            await _publish(runtime, body, deployment)
    finally:
        runtime.refreshing.discard(key)


async def release(runtime: Runtime, body: Mapping[str, Any]) -> None:
    """The finalizer: deregister a Miner's or Validator's hotkey, then forget the resource.

    Raises ``kopf.TemporaryError`` (the finalizer stays, kopf retries) while the consensus service or the
    API server cannot be reached; everything else ends in an Event and lets the deletion go on.
    """
    key = key_of(body)
    async with runtime.lock(key):
        if key[0] != "Subnet":
            try:
                outcome = await _deregister(runtime, body)
            except kopf.TemporaryError:
                runtime.metrics.released(key[0], metrics.RETRYING)
                raise
            runtime.metrics.released(key[0], outcome.reason.value)
            _log.log(
                logging.WARNING if outcome.warning else logging.INFO,
                "%s %s/%s: %s: %s",
                *key,
                outcome.reason,
                outcome.message,
            )
            await _event(
                runtime, body, warning=outcome.warning, reason=outcome.reason, message=outcome.message
            )
        runtime.forget(key)


async def _deregister(runtime: Runtime, body: Mapping[str, Any]) -> conditions.Release:
    kind, namespace, name = key_of(body)
    spec = body.get("spec") or {}
    subnet_name = str(spec.get("subnet", ""))
    retry = runtime.settings.release_retry_seconds
    try:
        subnet_body = await runtime.kube.get(kube.SUBNETS, namespace, subnet_name)
        blocked = conditions.release_blocked(kind, name, subnet=subnet_name, subnet_body=subnet_body)
        if blocked is not None:
            return blocked
        assert subnet_body is not None
        secret_name = desired.hotkey_secret_name(name, spec.get("hotkeySecretName"))
        secret = await runtime.kube.get(kube.SECRETS, namespace, secret_name)
    except KubeApiError as error:
        if error.transient:
            raise kopf.TemporaryError(
                f"cannot read what deregistration needs: {error}", delay=retry
            ) from None
        raise
    skipped = f"{kind} {name} was not deregistered"
    try:
        netuid = model.SubnetSpec.parse(subnet_body.get("spec") or {}).netuid
    except SpecError as error:
        return _skipped(f"{skipped}: Subnet {subnet_name!r} is invalid ({error})")
    if secret is None:
        return _skipped(
            f"{skipped}: its hotkey Secret {secret_name} is gone, so nothing can sign for the hotkey"
        )
    try:
        seed = _seed_of(secret, secret_name)
    except HotkeySecretError as error:
        return _skipped(f"{skipped}: {error}")
    hotkey = consensus.hotkey_of(seed)
    address = runtime.consensus_address(subnet_name, namespace)
    try:
        freed = await runtime.consensus.deregister(address, netuid, seed_hex=seed)
    except ConsensusUnavailableError as error:
        raise kopf.TemporaryError(
            f"deregistering hotkey {hotkey[:16]}... from subnet {netuid}: {error}; the finalizer stays and "
            f"retries in {retry:g}s",
            delay=retry,
        ) from None
    except ConsensusRefusedError as error:
        return _skipped(f"{skipped}: the consensus service refused: {error}")
    return conditions.released(
        kind,
        name,
        hotkey=hotkey,
        netuid=netuid,
        uid=None if freed is None else freed.uid,
        block=None if freed is None else freed.block,
    )


def _skipped(message: str) -> conditions.Release:
    return conditions.Release(Reason.DEREGISTRATION_SKIPPED, message, warning=True)


# -- owners of events ---------------------------------------------------------------------------------


def deployment_owner(body: Mapping[str, Any]) -> Key | None:
    for ref in body.get("metadata", {}).get("ownerReferences", []) or []:
        if (
            ref.get("controller")
            and ref.get("kind") in RESOURCES
            and ref.get("apiVersion") == model.API_VERSION
        ):
            return (str(ref["kind"]), str(body["metadata"]["namespace"]), str(ref["name"]))
    return None


def pod_owner(body: Mapping[str, Any]) -> Key | None:
    meta = body.get("metadata", {})
    labels = meta.get("labels", {}) or {}
    namespace = str(meta.get("namespace"))
    if desired.LABEL_MINER in labels:
        return ("Miner", namespace, str(labels[desired.LABEL_MINER]))
    if desired.LABEL_VALIDATOR in labels:
        return ("Validator", namespace, str(labels[desired.LABEL_VALIDATOR]))
    if labels.get(desired.LABEL_COMPONENT) == "consensus" and desired.LABEL_SUBNET in labels:
        return ("Subnet", namespace, str(labels[desired.LABEL_SUBNET]))
    return None


def note_pod(runtime: Runtime, *, event_type: str | None, body: Mapping[str, Any]) -> Key | None:
    """Track the pod's scheduling verdict; the owner whose status must be refreshed, or None."""
    owner = pod_owner(body)
    if owner is None:
        return None
    name = str(body["metadata"]["name"])
    message = None if event_type == "DELETED" else conditions.unschedulable_message(body)
    if message is None:
        bucket = runtime.unschedulable.get(owner)
        if bucket is None or bucket.pop(name, None) is None:
            return None
        if not bucket:
            del runtime.unschedulable[owner]
        return owner
    bucket = runtime.unschedulable.setdefault(owner, {})
    if bucket.get(name) == message:
        return None
    bucket[name] = message
    return owner


# -- the registry -------------------------------------------------------------------------------------


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings: the project's finalizer and annotations, no peering, no cluster scanning."""
    kopf_config = kopf.OperatorSettings()
    kopf_config.persistence.finalizer = FINALIZER
    kopf_config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    kopf_config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Only warnings and errors of handlers become Events; transitions are posted by _write_status.
    kopf_config.posting.level = logging.WARNING
    # Resources are discovered once at start-up: no need to list CRDs or namespaces (least privilege).
    kopf_config.scanning.disabled = True
    kopf_config.networking.request_timeout = settings.request_seconds * 4
    kopf_config.watching.server_timeout = 300
    kopf_config.watching.client_timeout = 330
    return kopf_config


def _remember_indices(runtime: Runtime, kwargs: Mapping[str, Any]) -> None:
    if runtime.indices is None:
        runtime.indices = (kwargs["miners_by_subnet"], kwargs["validators_by_subnet"])


def _register_kind(registry: kopf.OperatorRegistry, runtime: Runtime, kind: str) -> None:
    plural = PLURALS[kind]

    @kopf.on.resume(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.create(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.update(GROUP, VERSION, plural, field="spec", registry=registry, id="reconcile")
    async def on_change(body: kopf.Body, reason: str, **kwargs: Any) -> None:
        _remember_indices(runtime, kwargs)
        problem = await reconcile(runtime, body)
        if problem is not None and problem.reason is Reason.INVALID_SPEC:
            raise kopf.PermanentError(problem.message)
        if kind != "Subnet" and reason == "create":
            # A new member: the Subnet's counts change now, not at its next resync.
            subnet = str((body.get("spec") or {}).get("subnet", ""))
            runtime.soon(refresh(runtime, ("Subnet", body.metadata.namespace or "", subnet)))

    @kopf.timer(
        GROUP,
        VERSION,
        plural,
        registry=registry,
        id="resync",
        interval=runtime.settings.resync_seconds,
        # Spread the first round (and so every later one) over the interval: resources created together
        # would otherwise all resync in the same second.
        initial_delay=lambda **_: runtime.settings.resync_seconds * random.uniform(0.5, 1.5),
    )
    async def on_timer(body: kopf.Body, **kwargs: Any) -> None:
        _remember_indices(runtime, kwargs)
        await reconcile(runtime, body)

    @kopf.on.delete(GROUP, VERSION, plural, registry=registry, id="release")
    async def on_delete(body: kopf.Body, **_: Any) -> None:
        await release(runtime, body)


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """The operator's handlers, bound to ``runtime``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="login")
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kube.connection_info(runtime.kube.credentials)

    @kopf.index(GROUP, VERSION, "miners", registry=registry, id="miners_by_subnet")
    def miners_by_subnet(
        namespace: str | None, name: str, spec: kopf.Spec, **_: Any
    ) -> dict[tuple[str, str], str]:
        return {(namespace or "", str(spec.get("subnet", ""))): name}

    @kopf.index(GROUP, VERSION, "validators", registry=registry, id="validators_by_subnet")
    def validators_by_subnet(
        namespace: str | None, name: str, spec: kopf.Spec, **_: Any
    ) -> dict[tuple[str, str], str]:
        return {(namespace or "", str(spec.get("subnet", ""))): name}

    for kind in RESOURCES:
        _register_kind(registry, runtime, kind)

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        labels={desired.LABEL_MANAGED_BY: desired.MANAGER},
        registry=registry,
        id="deployment_changed",
    )
    async def deployment_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
        owner = deployment_owner(body)
        if owner is not None and type != "DELETED":
            await refresh(runtime, owner)

    @kopf.on.event(
        "",
        "v1",
        "pods",
        labels={desired.LABEL_MANAGED_BY: desired.MANAGER},
        registry=registry,
        id="pod_changed",
    )
    async def pod_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
        owner = note_pod(runtime, event_type=type, body=body)
        if owner is not None:
            await refresh(runtime, owner)

    return registry
