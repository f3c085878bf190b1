"""Self-describing content identifiers and peer identifiers.

A content id is a multihash (0x12 = sha2-256, 0x20 = 32 bytes, then the digest): 34 bytes in
records and keys. Its text form names what it identifies and the encoding, so an id pasted into
the wrong place is refused rather than misread: ``col_``, ``itm_``, ``blk_`` or ``ent_``, then the
multihash in RFC 4648 base32, lower case, without padding.

A peer id is libp2p's: the identity multihash of the protobuf-encoded Ed25519 public key, in
base58btc (``12D3KooW…``), computed here without libp2p so that protocol/ stays pure.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from .errors import FormatError

SHA256_CODE = 0x12
DIGEST_LEN = 32
ID_LEN = 2 + DIGEST_LEN

KINDS = {
    "col": "collection",
    "itm": "item",
    "blk": "block",
    "ent": "log entry",
}


@dataclass(frozen=True, slots=True)
class ContentId:
    """A SHA-256 multihash: the address of some exact bytes."""

    raw: bytes  # the 34-byte multihash

    def __post_init__(self) -> None:
        check_raw_id(self.raw)

    @classmethod
    def of(cls, data: bytes | memoryview) -> ContentId:
        return cls(multihash(hashlib.sha256(data).digest()))

    @property
    def digest(self) -> bytes:
        return self.raw[2:]

    def text(self, kind: str) -> str:
        return to_text(kind, self.raw)


_PREFIX = bytes((SHA256_CODE, DIGEST_LEN))  # every id begins so


def multihash(digest: bytes) -> bytes:
    if len(digest) != DIGEST_LEN:
        raise FormatError("a SHA-256 digest is 32 bytes")
    return _PREFIX + digest


def sha256_id(data: bytes | memoryview) -> bytes:
    """The raw 34-byte id of `data`."""
    return _PREFIX + hashlib.sha256(data).digest()


def check_raw_id(raw: object) -> bytes:
    if type(raw) is not bytes or len(raw) != ID_LEN:
        raise FormatError("an id is a 34-byte SHA-256 multihash")
    if raw[:2] != _PREFIX:
        raise FormatError("unsupported hash function in id")
    return raw


_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def to_text(kind: str, raw: bytes) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown id kind {kind!r}")
    # RFC 4648 base32 of the 34 bytes (55 characters, padding dropped); computed through one
    # integer because base64.b32encode is pure Python and showed in ingest profiles.
    n = int.from_bytes(check_raw_id(raw) + b"\0", "big") >> 5
    out = [_B32[(n >> shift) & 31] for shift in range(270, -1, -5)]
    return kind + "_" + "".join(out)


def from_text(text: str, kind: str) -> bytes:
    """Parse a text id of the given kind to its raw form, or raise FormatError."""
    prefix = kind + "_"
    if not isinstance(text, str) or not text.startswith(prefix):
        raise FormatError(f"not a {KINDS.get(kind, kind)} id (expected {prefix}…)")
    body = text[len(prefix) :].upper()
    if len(body) != 55:
        raise FormatError(f"malformed {KINDS[kind]} id")
    try:
        raw = base64.b32decode(body + "=")
    except ValueError:
        raise FormatError(f"malformed {KINDS[kind]} id") from None
    check_raw_id(raw)
    if to_text(kind, raw) != text:
        raise FormatError(f"malformed {KINDS[kind]} id")
    return raw


def kind_of(text: str) -> str | None:
    """The kind prefix of a text id, if it has a known one."""
    head = text.split("_", 1)[0]
    return head if head in KINDS and "_" in text else None


# --- peer ids (libp2p) ---------------------------------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# protobuf PublicKey{Type: Ed25519 (1), Data: 32 bytes}, wrapped in an identity multihash.
_ED25519_PEER_PREFIX = bytes((0x00, 0x24, 0x08, 0x01, 0x12, 0x20))


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer id (base58btc) of an Ed25519 public key."""
    if len(public_key) != 32:
        raise FormatError("an Ed25519 public key is 32 bytes")
    return _b58encode(_ED25519_PEER_PREFIX + public_key)


def public_key_from_peer_id(peer_id: str) -> bytes:
    """The Ed25519 public key inside an Ed25519 libp2p peer id, or FormatError."""
    try:
        raw = _b58decode(peer_id)
    except ValueError:
        raise FormatError("malformed peer id") from None
    if len(raw) != 38 or not raw.startswith(_ED25519_PEER_PREFIX):
        raise FormatError("not an Ed25519 peer id")
    return raw[6:]


def _b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def _b58decode(text: str) -> bytes:
    if not text or len(text) > 128:
        raise ValueError("bad length")
    n = 0
    for ch in text:
        idx = _B58.find(ch)
        if idx < 0:
            raise ValueError("bad character")
        n = n * 58 + idx
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body
