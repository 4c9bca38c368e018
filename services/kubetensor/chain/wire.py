"""Translation between the chain's wire messages (``kubetensor.v1``) and its domain values.

Used by the edge (``servicer``), by ``client`` and by ``verify``, which re-decodes the signed request
bytes a block stores to check that they say what the block's decoded fields say. The only chain module
besides those three that touches generated proto code. Field shapes are checked by the domain
constructors, which raise ``MalformedRequestError`` naming the wire field.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError, Message

from kubetensor.chain.block import SealedBlock, Submitter
from kubetensor.chain.economics import Credit, CreditReason
from kubetensor.chain.errors import MalformedRequestError
from kubetensor.chain.service import Receipt, SettlementSubmission, TransactionReceipt
from kubetensor.chain.transactions import (
    ADD_STAKE,
    REGISTER_HOTKEY,
    REGISTER_SUBNET,
    REMOVE_STAKE,
    SET_DELEGATE_TAKE,
    AddStake,
    RegisterHotkey,
    RegisterSubnet,
    RemoveStake,
    SetDelegateTake,
    Signed,
    SignedTransaction,
    Transaction,
)
from kubetensor.core import settlementwire
from kubetensor.core.settlement import MalformedSettlementError, Settlement
from kubetensor.v1 import chain_pb2, common_pb2, consensus_pb2

TransactionRequest = (
    chain_pb2.RegisterHotkeyRequest
    | chain_pb2.RegisterSubnetRequest
    | chain_pb2.AddStakeRequest
    | chain_pb2.RemoveStakeRequest
    | chain_pb2.SetDelegateTakeRequest
)
REQUEST_TYPES: dict[str, type[Message]] = {
    REGISTER_HOTKEY: chain_pb2.RegisterHotkeyRequest,
    REGISTER_SUBNET: chain_pb2.RegisterSubnetRequest,
    ADD_STAKE: chain_pb2.AddStakeRequest,
    REMOVE_STAKE: chain_pb2.RemoveStakeRequest,
    SET_DELEGATE_TAKE: chain_pb2.SetDelegateTakeRequest,
}
"""The request message of each transaction kind (signing domain)."""
REQUEST_DOMAINS: dict[type[Message], str] = {message: kind for kind, message in REQUEST_TYPES.items()}
"""The signing domain of each transaction request message."""
_SIGNATURE_FIELDS = ("signature", "hotkey_signature")

_REASONS = {
    CreditReason.OWNER_CUT: chain_pb2.CREDIT_REASON_OWNER_CUT,
    CreditReason.INCENTIVE: chain_pb2.CREDIT_REASON_INCENTIVE,
    CreditReason.TAKE: chain_pb2.CREDIT_REASON_TAKE,
    CreditReason.DIVIDEND: chain_pb2.CREDIT_REASON_DIVIDEND,
}
_REASONS_BACK = {code: reason for reason, code in _REASONS.items()}


# -- settlements ------------------------------------------------------------------------------------------
def settlement_from_proto(message: consensus_pb2.Settlement) -> Settlement:
    """The settlement a wire message carries; a ``hash`` that is set must be its canonical hash."""
    try:
        settlement = settlementwire.settlement_from_proto(message)
    except MalformedSettlementError as error:
        # The chain's own refusal, so callers (and verify) see one ChainError hierarchy.
        raise MalformedRequestError(error.field, error.problem) from None
    if message.hash and message.hash != settlement.hash:
        raise MalformedRequestError(
            "settlement.hash", f"is not the settlement's canonical hash (expected {settlement.hash})"
        )
    return settlement


settlement_to_proto = settlementwire.settlement_to_proto


def submission_from_request(request: chain_pb2.SubmitSettlementRequest) -> SettlementSubmission:
    """The settlement and (if signed) its submitter's signature over the request."""
    if not request.HasField("settlement"):
        raise MalformedRequestError("settlement", "required")
    settlement = settlement_from_proto(request.settlement)
    submitter = None
    if request.HasField("signature"):
        signed = _signed(request.signature, "signature")
        submitter = Submitter(
            public_key=signed.public_key, signature=signed.signature, payload=unsigned_payload(request)
        )
    return SettlementSubmission(settlement=settlement, submitter=submitter)


def submitted_settlement(payload: bytes) -> Settlement:
    """The settlement inside a stored SubmitSettlement payload (ValueError if it is not one)."""
    request = chain_pb2.SubmitSettlementRequest()
    try:
        request.ParseFromString(payload)
    except DecodeError as exc:
        raise ValueError(f"the submitter payload is not a SubmitSettlementRequest: {exc}") from None
    if request.HasField("signature"):
        raise ValueError("the submitter payload still carries a signature")
    return settlement_from_proto(request.settlement)


def receipt_to_proto(receipt: Receipt) -> consensus_pb2.SettlementReceipt:
    return consensus_pb2.SettlementReceipt(block=receipt.block, settlement_hash=receipt.settlement_hash)


def credit_to_proto(credit: Credit) -> chain_pb2.Credit:
    return chain_pb2.Credit(
        account=credit.account,
        amount_rao=credit.amount_rao,
        reason=_REASONS[credit.reason],
        hotkey=credit.hotkey,
        uid=credit.uid,
    )


def credit_from_proto(message: chain_pb2.Credit) -> Credit:
    return Credit(
        account=message.account,
        amount_rao=message.amount_rao,
        reason=_REASONS_BACK[message.reason],
        hotkey=message.hotkey,
        uid=message.uid,
    )


# -- transactions -----------------------------------------------------------------------------------------
def unsigned_payload(request: Message) -> bytes:
    """What a request's signatures cover: the request with its signature field(s) cleared, deterministic."""
    unsigned = type(request)()
    unsigned.CopyFrom(request)
    for name in _SIGNATURE_FIELDS:
        if name in unsigned.DESCRIPTOR.fields_by_name:
            unsigned.ClearField(name)
    return unsigned.SerializeToString(deterministic=True)


def _signed(signature: common_pb2.Signature, field: str) -> Signed:
    return Signed(public_key=bytes(signature.public_key), signature=bytes(signature.signature), field=field)


def transaction_fields(request: Message) -> Transaction:
    """The domain transaction a request describes (its signatures are not looked at)."""
    match request:
        case chain_pb2.RegisterHotkeyRequest():
            return RegisterHotkey(coldkey=request.coldkey, nonce=request.nonce, hotkey=request.hotkey)
        case chain_pb2.RegisterSubnetRequest():
            return RegisterSubnet(coldkey=request.coldkey, nonce=request.nonce, netuid=request.netuid)
        case chain_pb2.AddStakeRequest():
            return AddStake(
                coldkey=request.coldkey,
                nonce=request.nonce,
                hotkey=request.hotkey,
                amount_rao=request.amount_rao,
            )
        case chain_pb2.RemoveStakeRequest():
            return RemoveStake(
                coldkey=request.coldkey,
                nonce=request.nonce,
                hotkey=request.hotkey,
                amount_rao=request.amount_rao,
            )
        case chain_pb2.SetDelegateTakeRequest():
            return SetDelegateTake(
                coldkey=request.coldkey, nonce=request.nonce, hotkey=request.hotkey, take=request.take
            )
    raise TypeError(f"not a transaction request: {type(request).__name__}")


def transaction_from_request(request: TransactionRequest) -> SignedTransaction:
    """The signed transaction a request carries (shapes checked; signatures verified by the service)."""
    tx = transaction_fields(request)
    signature = _signed(request.signature, "signature")
    hotkey_signature = None
    if isinstance(request, chain_pb2.RegisterHotkeyRequest):
        if not request.HasField("hotkey_signature"):
            raise MalformedRequestError("hotkey_signature", "required: the hotkey must sign its registration")
        hotkey_signature = _signed(request.hotkey_signature, "hotkey_signature")
    return SignedTransaction(
        tx=tx, payload=unsigned_payload(request), signature=signature, hotkey_signature=hotkey_signature
    )


def transaction_from_payload(kind: str, payload: bytes) -> Transaction:
    """The transaction the signed bytes of a ``kind`` request describe (ValueError if they are not one)."""
    request_type = REQUEST_TYPES.get(kind)
    if request_type is None:
        raise ValueError(f"unknown transaction kind {kind!r}")
    request = request_type()
    try:
        request.ParseFromString(payload)
    except DecodeError as exc:
        raise ValueError(f"the payload is not a {request_type.__name__}: {exc}") from None
    if any(
        name in request.DESCRIPTOR.fields_by_name and request.HasField(name) for name in _SIGNATURE_FIELDS
    ):
        raise ValueError("the payload still carries a signature")
    return transaction_fields(request)


def transaction_receipt_to_proto(receipt: TransactionReceipt) -> chain_pb2.TransactionReceipt:
    return chain_pb2.TransactionReceipt(block=receipt.block, transaction_hash=receipt.transaction_hash)


# -- blocks -----------------------------------------------------------------------------------------------
def block_to_proto(sealed: SealedBlock) -> chain_pb2.Block:
    block = sealed.block
    return chain_pb2.Block(
        height=block.height,
        hash=sealed.hash,
        parent_hash=block.parent_hash,
        timestamp_ms=block.timestamp_ms,
        authority=block.authority,
        body=sealed.body,
        signature=sealed.signature,
        transaction_count=len(block.transactions),
        settlement_count=len(block.settlements),
    )


def sealed_from_proto(message: chain_pb2.Block) -> SealedBlock:
    """The stored form of a wire block (only ``body`` and ``signature`` count; the rest is derived)."""
    return SealedBlock(body=bytes(message.body), signature=bytes(message.signature))
