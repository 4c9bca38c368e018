"""Errors the chain sidecar raises; each is a ``kubetensor.core.errors`` category, hence a gRPC code.

Raised by ``transactions`` and ``wire`` (field shapes), ``state`` (the ledger's rules), ``service``
(signatures, submitters, storage) and ``authority``/``ledger`` (start-up); mapped to status codes once,
by ``kubetensor.core.grpcserver.ErrorInterceptor``. Every refusal leaves the ledger unchanged, the
account's nonce included.

Hierarchy (category in brackets)::

    ChainError                                        base of everything below
    ├── MalformedRequestError       [InvalidArgument] a field is missing or malformed; names the field
    ├── BadSignatureError           [Unauthenticated] not the named key's signature over the request
    ├── SignatureRequiredError      [Unauthenticated] an unsigned settlement where signers are configured
    ├── WrongNonceError             [FailedPrecondition] nonce is not the account's last nonce + 1
    ├── InsufficientBalanceError    [FailedPrecondition] the free balance does not cover the amount
    ├── InsufficientStakeError      [FailedPrecondition] the stake position does not cover the amount
    ├── SettlementOutOfOrderError   [FailedPrecondition] not the subnet's next epoch, or a broken link
    ├── IssuanceCapError            [FailedPrecondition] the emission would overflow 2**63 - 1 rao
    ├── UnknownHotkeyError          [NotFound] no coldkey registered the hotkey
    ├── BlockNotFoundError          [NotFound] no block at that height
    ├── SettlementNotFoundError     [NotFound] no settlement for (netuid, epoch)
    ├── NotOwnerError               [PermissionDenied] the hotkey or subnet belongs to another coldkey
    ├── SubmitterNotAllowedError    [PermissionDenied] a settlement signed by a key not configured
    ├── AlreadyRegisteredError      [AlreadyExists] the hotkey or subnet has an owner already
    ├── SettlementConflictError     [AlreadyExists] a different settlement exists for (netuid, epoch)
    ├── LedgerUnavailableError      [Unavailable] the block could not be committed; nothing was recorded
    ├── LedgerStateError            (start-up, verify) the ledger file cannot be used
    ├── KeyFileError                (start-up, wallet) a key file is missing, malformed or too open
    └── EvmError                    the evm backend (never answered to a client: anchoring is background work)
        ├── EvmUnavailableError     [Unavailable] the JSON-RPC call or the transaction failed; retried
        ├── EvmSetupError           the node's chain id or the code at the contract address is wrong
        └── AnchorConflictError     [AlreadyExists] the contract holds a different anchor for (netuid, epoch)

Raised by ``evm.contract`` and handled by ``evm.anchorer``, which retries all but AnchorConflictError.
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
    UnavailableError,
)


class ChainError(KubetensorError):
    """Base class of every error raised by kubetensor.chain."""


class MalformedRequestError(ChainError, InvalidArgumentError):
    """A request field is missing or malformed (``field`` names it, as on the wire)."""


class BadSignatureError(ChainError, UnauthenticatedError):
    """The signature does not verify as the named key's over the request's canonical bytes."""

    def __init__(self, *, field: str, key: str, domain: str) -> None:
        self.field = field
        self.key = key
        self.domain = domain
        super().__init__(f"{field}: not a valid {domain} signature by {key[:16]}...")


class SignatureRequiredError(ChainError, UnauthenticatedError):
    """The sidecar accepts only signed settlements (settlement signers are configured); this one is not."""


class WrongNonceError(ChainError, FailedPreconditionError):
    """The nonce is not the account's last accepted nonce + 1 (a replay, a gap or a stale retry)."""

    def __init__(self, *, account: str, nonce: int, expected: int) -> None:
        self.account = account
        self.nonce = nonce
        self.expected = expected
        super().__init__(f"nonce: account {account[:16]}... expects nonce {expected}, got {nonce}")


class InsufficientBalanceError(ChainError, FailedPreconditionError):
    """The account's free balance is smaller than the amount."""

    def __init__(self, *, account: str, amount: int, available: int) -> None:
        self.account = account
        self.amount = amount
        self.available = available
        super().__init__(
            f"amount_rao: {amount} exceeds the free balance {available} of account {account[:16]}..."
        )


class InsufficientStakeError(ChainError, FailedPreconditionError):
    """The coldkey's stake on the hotkey is smaller than the amount to remove."""

    def __init__(self, *, coldkey: str, hotkey: str, amount: int, available: int) -> None:
        self.coldkey = coldkey
        self.hotkey = hotkey
        self.amount = amount
        self.available = available
        super().__init__(
            f"amount_rao: {amount} exceeds the stake {available} of coldkey {coldkey[:16]}... "
            f"on hotkey {hotkey[:16]}..."
        )


class SettlementOutOfOrderError(ChainError, FailedPreconditionError):
    """The settlement is not the subnet's next epoch, or its previous_hash does not link to it."""


class IssuanceCapError(ChainError, FailedPreconditionError):
    """Recording the settlement would take the total issuance past 2**63 - 1 rao."""


class UnknownHotkeyError(ChainError, NotFoundError):
    """No coldkey has registered the hotkey on the ledger."""

    def __init__(self, hotkey: str) -> None:
        self.hotkey = hotkey
        super().__init__(f"hotkey: {hotkey[:16]}... is not registered (send RegisterHotkey first)")


class BlockNotFoundError(ChainError, NotFoundError):
    """No block at the requested height."""

    def __init__(self, *, height: int, head: int) -> None:
        self.height = height
        self.head = head
        super().__init__(f"height: no block {height} (the newest is {head})")


class SettlementNotFoundError(ChainError, NotFoundError):
    """No settlement is recorded for (netuid, epoch)."""

    def __init__(self, *, netuid: int, epoch: int) -> None:
        self.netuid = netuid
        self.epoch = epoch
        super().__init__(f"no settlement recorded for netuid {netuid} epoch {epoch}")


class NotOwnerError(ChainError, PermissionDeniedError):
    """The hotkey or subnet named belongs to another coldkey."""


class SubmitterNotAllowedError(ChainError, PermissionDeniedError):
    """The settlement is signed by a key that is not one of the configured settlement signers."""


class AlreadyRegisteredError(ChainError, AlreadyExistsError):
    """The hotkey or subnet already has an owner."""


class SettlementConflictError(ChainError, AlreadyExistsError):
    """A different settlement is already recorded for the same (netuid, epoch)."""

    def __init__(self, *, netuid: int, epoch: int, recorded_hash: str, offered_hash: str) -> None:
        self.netuid = netuid
        self.epoch = epoch
        self.recorded_hash = recorded_hash
        self.offered_hash = offered_hash
        super().__init__(
            f"settlement: netuid {netuid} epoch {epoch} is recorded with hash {recorded_hash[:16]}..., "
            f"this one hashes to {offered_hash[:16]}..."
        )


class LedgerUnavailableError(ChainError, UnavailableError):
    """The block could not be committed (storage failure); nothing in it was recorded."""


class LedgerStateError(ChainError):
    """The ledger file cannot be used (raised at start-up or by verify, never to a client)."""


class KeyFileError(ChainError):
    """A key file (the authority's or a wallet's) is missing, malformed or readable by others."""


class EvmError(ChainError):
    """Base class of the evm backend's errors."""


class EvmUnavailableError(EvmError, UnavailableError):
    """A JSON-RPC call failed, or a transaction was not mined in time or reverted; worth retrying."""


class EvmSetupError(EvmError):
    """The node or the contract is not the one configured (chain id, code at the contract address)."""


class AnchorConflictError(EvmError, AlreadyExistsError):
    """The contract already holds a different anchor for (netuid, epoch); retrying cannot help."""

    def __init__(self, *, netuid: int, epoch: int, recorded_hash: str, offered_hash: str) -> None:
        self.netuid = netuid
        self.epoch = epoch
        self.recorded_hash = recorded_hash
        self.offered_hash = offered_hash
        super().__init__(
            f"netuid {netuid} epoch {epoch} is anchored with settlement hash {recorded_hash[:16]}..., "
            f"the ledger's settlement hashes to {offered_hash[:16]}..."
        )
