"""Errors the consensus service raises; each is a ``kubetensor.core.errors`` category, hence a gRPC code.

Raised by ``metagraph`` (the chain's registration and weight rules), ``service`` (signatures, nonces,
the subnet) and ``store``/``settlementlog``; mapped to status codes once, by
``kubetensor.core.grpcserver.ErrorInterceptor``. Every refusal leaves the service's state unchanged.

Hierarchy (category in brackets)::

    ConsensusError                                   base of everything below
    ├── MalformedRequestError      [InvalidArgument] a field is missing or malformed; names the field
    │   └── InvalidWeightsError    [InvalidArgument] duplicate/unknown uids, too few weights, max weight
    ├── BadSignatureError          [Unauthenticated] the signature is not the hotkey's over the request
    ├── StaleNonceError            [FailedPrecondition] nonce not above the hotkey's last accepted nonce
    ├── ReplayedRequestError       [AlreadyExists] this exact signed request was already accepted
    ├── UnknownSubnetError         [NotFound] the request names a netuid this service does not run
    ├── NotRegisteredError         [NotFound] the hotkey holds no uid on the subnet
    ├── AlreadyRegisteredError     [AlreadyExists] the hotkey already holds a uid
    ├── SubnetFullError            [FailedPrecondition] full and no uid may be pruned
    ├── RateLimitedError           [FailedPrecondition] weights set again before the rate limit allows
    ├── NoValidatorPermitError     [PermissionDenied] non-self weights without a validator permit
    ├── StakeTooLowError           [PermissionDenied] stake below the subnet's stake threshold
    ├── SettlementConflictError    [AlreadyExists] a different settlement exists for (netuid, epoch)
    └── StateMismatchError         [FailedPrecondition] the state file belongs to another subnet/clock
"""

from __future__ import annotations

from kubetensor.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    KubetensorError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)


class ConsensusError(KubetensorError):
    """Base class of every error raised by kubetensor.consensus."""


class MalformedRequestError(ConsensusError, InvalidArgumentError):
    """A request field is missing or malformed (``field`` names it, as on the wire)."""


class InvalidWeightsError(MalformedRequestError):
    """The weights break one of the chain's weight rules (duplicates, unknown uids, length, max limit)."""


class BadSignatureError(ConsensusError, UnauthenticatedError):
    """The signature does not verify as the named hotkey's over the request's canonical bytes."""

    def __init__(self, hotkey: str, *, domain: str) -> None:
        self.hotkey = hotkey
        self.domain = domain
        super().__init__(f"signature: not a valid {domain} signature by hotkey {hotkey[:16]}...")


class StaleNonceError(ConsensusError, FailedPreconditionError):
    """The nonce is not above the last nonce accepted from this hotkey for this kind of request."""

    def __init__(self, hotkey: str, *, domain: str, nonce: int, last_nonce: int) -> None:
        self.hotkey = hotkey
        self.domain = domain
        self.nonce = nonce
        self.last_nonce = last_nonce
        super().__init__(
            f"nonce: {domain} nonce {nonce} from hotkey {hotkey[:16]}... must be greater than the last "
            f"accepted nonce {last_nonce}"
        )


class ReplayedRequestError(ConsensusError, AlreadyExistsError):
    """The identical signed request (same nonce, same bytes) was already accepted; nothing was redone."""

    def __init__(self, hotkey: str, *, domain: str, nonce: int) -> None:
        self.hotkey = hotkey
        self.domain = domain
        self.nonce = nonce
        super().__init__(f"{domain} with nonce {nonce} from hotkey {hotkey[:16]}... was already accepted")


class UnknownSubnetError(ConsensusError, NotFoundError):
    """The request names a subnet this service does not run."""

    def __init__(self, netuid: int, *, served: int) -> None:
        self.netuid = netuid
        self.served = served
        super().__init__(f"netuid: subnet {netuid} is not run by this service (it runs subnet {served})")


class NotRegisteredError(ConsensusError, NotFoundError):
    """The hotkey holds no uid on the subnet."""

    def __init__(self, hotkey: str, *, netuid: int) -> None:
        self.hotkey = hotkey
        self.netuid = netuid
        super().__init__(f"hotkey {hotkey[:16]}... is not registered on subnet {netuid}")


class AlreadyRegisteredError(ConsensusError, AlreadyExistsError):
    """The hotkey already holds a uid on the subnet."""

    def __init__(self, hotkey: str, *, uid: int) -> None:
        self.hotkey = hotkey
        self.uid = uid
        super().__init__(f"hotkey {hotkey[:16]}... is already registered as uid {uid}")


class SubnetFullError(ConsensusError, FailedPreconditionError):
    """Every uid is taken and none may be pruned (``NoNeuronIdAvailable`` on chain)."""

    def __init__(self, netuid: int, *, max_allowed_uids: int) -> None:
        self.netuid = netuid
        self.max_allowed_uids = max_allowed_uids
        super().__init__(
            f"subnet {netuid} is full ({max_allowed_uids} uids) and no uid can be pruned; try later"
        )


class RateLimitedError(ConsensusError, FailedPreconditionError):
    """Weights were set again before ``weights_rate_limit`` blocks passed (``SettingWeightsTooFast``)."""

    def __init__(self, hotkey: str, *, last_update: int, block: int, rate_limit: int) -> None:
        self.hotkey = hotkey
        self.last_update = last_update
        self.block = block
        self.rate_limit = rate_limit
        super().__init__(
            f"hotkey {hotkey[:16]}... last set weights at block {last_update}; the rate limit is "
            f"{rate_limit} blocks and this is block {block}"
        )


class NoValidatorPermitError(ConsensusError, PermissionDeniedError):
    """Non-self weights from a uid without a validator permit (``NeuronNoValidatorPermit``)."""

    def __init__(self, hotkey: str, *, uid: int) -> None:
        self.hotkey = hotkey
        self.uid = uid
        super().__init__(
            f"uid {uid} (hotkey {hotkey[:16]}...) has no validator permit; it may only set a self-weight"
        )


class StakeTooLowError(ConsensusError, PermissionDeniedError):
    """The hotkey's stake is below the subnet's stake threshold (``NotEnoughStakeToSetWeights``)."""

    def __init__(self, hotkey: str, *, stake_rao: int, threshold_rao: int) -> None:
        self.hotkey = hotkey
        self.stake_rao = stake_rao
        self.threshold_rao = threshold_rao
        super().__init__(
            f"hotkey {hotkey[:16]}... has {stake_rao} rao of stake; setting weights needs {threshold_rao}"
        )


class SettlementConflictError(ConsensusError, AlreadyExistsError):
    """A sink already holds a different settlement for the same (netuid, epoch)."""

    def __init__(self, netuid: int, *, epoch: int, existing_hash: str, new_hash: str) -> None:
        self.netuid = netuid
        self.epoch = epoch
        self.existing_hash = existing_hash
        self.new_hash = new_hash
        super().__init__(
            f"subnet {netuid} epoch {epoch} is already settled as {existing_hash}; refusing {new_hash}"
        )


class StateMismatchError(ConsensusError, FailedPreconditionError):
    """The state file was written for another subnet or block length than the settings name."""

    def __init__(self, setting: str, *, stored: str, configured: str) -> None:
        self.setting = setting
        self.stored = stored
        self.configured = configured
        super().__init__(
            f"{setting}: the state file was written with {stored}, the settings say {configured}; "
            "use another state path or the original setting"
        )
