"""Canonical signing of protobuf requests: what a signature covers, for servicers and clients alike.

A signed request carries a ``Signature`` message field (``public_key``, ``signature``). The signature
covers ``kubetensor.core.keys.signing_bytes(domain, payload)`` where ``payload`` is the request with
that field cleared, serialized deterministically. Clients call ``sign``; servicers call ``payload`` and
hand the bytes to their domain service, which verifies them (``keys.verify``). Both sides use this one
definition, so they cannot drift apart. Works on any protobuf message; imports no generated module.

A sender that signs many messages of one type (the miner, a response per task) can skip serializing a
message twice (once to sign, once to send): ``payload(message) + signature_prefix(...) + signature`` is
a wire form of the signed message (``signature_prefix``).
"""

from __future__ import annotations

from google.protobuf.message import Message

from kubetensor.core.keys import SIGNATURE_BYTES, Keypair


def payload(message: Message, *, field: str = "signature") -> bytes:
    """The bytes a signature over ``message`` covers: ``message`` with ``field`` cleared, deterministic."""
    if not message.HasField(field):
        # Nothing to clear: no copy needed.
        return message.SerializeToString(deterministic=True)
    unsigned = type(message)()
    unsigned.CopyFrom(message)
    unsigned.ClearField(field)
    return unsigned.SerializeToString(deterministic=True)


def detach(message: Message, *, field: str = "signature") -> tuple[bytes, bytes, bytes]:
    """Clear ``message.<field>`` in place and return its public key, its signature and ``payload`` of
    ``message`` (for a receiver that owns the decoded message and needs it no more: no copy)."""
    signature = getattr(message, field)
    public_key, signed = signature.public_key, signature.signature
    message.ClearField(field)
    return public_key, signed, message.SerializeToString(deterministic=True)


def sign(message: Message, keypair: Keypair, *, domain: str, field: str = "signature") -> None:
    """Fill ``message.<field>`` with ``keypair``'s public key and signature for ``domain``, in place."""
    signature = keypair.sign(domain, payload(message, field=field))
    target = getattr(message, field)
    target.public_key = keypair.public_key
    target.signature = signature


def signature_prefix(message_type: type[Message], *, public_key: bytes, field: str = "signature") -> bytes:
    """The encoding of a ``message_type`` whose only field is ``field`` holding ``public_key`` and an
    ed25519 signature, up to the signature's bytes.

    For a ``message`` of that type with ``field`` unset, ``payload(message) + prefix + signature`` is a
    wire form of ``message`` signed with ``signature`` (``SIGNATURE_BYTES`` long) by ``public_key``: a
    protobuf parser takes the fields in any order, so it reads ``message`` with ``field`` set, and
    ``payload`` of what it read (``field`` cleared, serialized deterministically) is ``payload(message)``
    again, the bytes that were signed. The encoding is the protobuf library's own: the signature is the
    last field of the ``Signature`` message and of this one, so it ends the encoding.
    """
    probe = message_type()
    target = getattr(probe, field)
    target.public_key = public_key
    target.signature = bytes(SIGNATURE_BYTES)
    return probe.SerializeToString(deterministic=True)[:-SIGNATURE_BYTES]
