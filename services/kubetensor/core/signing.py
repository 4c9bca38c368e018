"""Canonical signing of protobuf requests: what a signature covers, for servicers and clients alike.

A signed request carries a ``Signature`` message field (``public_key``, ``signature``). The signature
covers ``kubetensor.core.keys.signing_bytes(domain, payload)`` where ``payload`` is the request with
that field cleared, serialized deterministically. Clients call ``sign``; servicers call ``payload`` and
hand the bytes to their domain service, which verifies them (``keys.verify``). Both sides use this one
definition, so they cannot drift apart. Works on any protobuf message; imports no generated module.
"""

from __future__ import annotations

from google.protobuf.message import Message

from kubetensor.core.keys import Keypair


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
