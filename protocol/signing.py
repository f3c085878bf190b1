"""Signables: what an Ed25519 signature in Amanah covers.

A signature never covers a bare structure. It covers the canonical CBOR array
``[tag, version, body]``, where the tag names the kind of object ("amanah/log-entry") and the
version its format, so a signature made for one purpose can never be replayed as another.
"""

from __future__ import annotations

from typing import Any

import nacl.exceptions
import nacl.signing

from . import cbor
from .errors import SignatureError

SIGNATURE_LEN = 64
MAX_SIGNABLE = 1 << 20


def signable(tag: str, version: int, body: Any) -> bytes:
    """The exact bytes signed for `body` under domain `tag` and format `version`."""
    return cbor.encode([tag, version, body])


def sign(key: nacl.signing.SigningKey, message: bytes) -> bytes:
    """Ed25519 signature (64 bytes) of already-built signable bytes."""
    return key.sign(message).signature


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise SignatureError unless `signature` is `public_key`'s over `message`."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LEN:
        raise SignatureError("a signature is 64 bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        raise SignatureError("signature does not verify") from None
