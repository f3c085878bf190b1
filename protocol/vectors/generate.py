"""Write Amanah's known-answer vectors (the *.json files beside this script).

Run it, with the project installed, as ``python protocol/vectors/generate.py [OUT_DIR]``. Every
input is fixed (seeds, salts, nonces, ephemeral keys, times), so every run writes byte-identical
files; tests/test_vectors.py recomputes each vector from its inputs and fails on any difference,
so a change of format shows up as a diff of these files, to be made on purpose or not at all.

Conventions in the JSON: byte strings are lower-case hex. Where a vector holds a CBOR value (a
body, a metadata map), a JSON object is a CBOR map, a byte string is written {"$bytes": HEX}, and
an integer outside +-2**53 is written {"$int": DECIMAL}; everything else maps as itself.
Fixed secrets are SHA-256("amanah/test-vector/" + label): never use them for anything real.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import nacl.encoding
import nacl.hash
import nacl.public
import nacl.signing
from amanah.protocol import cbor, crypto, ids, log, signing
from amanah.protocol import item as item_mod
from amanah.protocol import metadata as metadata_mod

HERE = Path(__file__).resolve().parent
CHUNK = item_mod.CHUNK_SIZE


def fixed(label: str, n: int = 32) -> bytes:
    """A fixed test secret: the first `n` bytes of SHA-256("amanah/test-vector/" + label)."""
    return hashlib.sha256(b"amanah/test-vector/" + label.encode()).digest()[:n]


def to_json(value: Any) -> Any:
    """A CBOR value in the JSON convention described at the top of this file."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -(2**53) < value < 2**53 else {"$int": str(value)}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    raise TypeError(type(value))


def pattern(size: int) -> bytes:
    """The content of the large test item: byte i is i mod 251."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


PEER_LABELS = ("owner", "hold-peer", "reader-1", "reader-2", "mirror-peer")


def seed(label: str) -> bytes:
    return fixed("seed/" + label)


def key_of(label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed(label))


def pub(label: str) -> bytes:
    return bytes(key_of(label).verify_key)


def nested(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


# --- cbor.json --------------------------------------------------------------------------------

RFC_EXAMPLES: list[tuple[str, Any]] = [
    ("0", 0),
    ("1", 1),
    ("10", 10),
    ("23", 23),
    ("24", 24),
    ("25", 25),
    ("100", 100),
    ("1000", 1000),
    ("1000000", 1000000),
    ("1000000000000", 1000000000000),
    ("2**64-1", 2**64 - 1),
    ("-2**64", -(2**64)),
    ("-1", -1),
    ("-10", -10),
    ("-100", -100),
    ("-1000", -1000),
    ("false", False),
    ("true", True),
    ("null", None),
    ("empty bytes", b""),
    ("h'01020304'", bytes.fromhex("01020304")),
    ("empty text", ""),
    ('"a"', "a"),
    ('"IETF"', "IETF"),
    ('"\\"\\\\"', '"\\'),
    ('"\\u00fc"', "\u00fc"),
    ('"\\u6c34"', "\u6c34"),
    ("[]", []),
    ("[1, 2, 3]", [1, 2, 3]),
    ("[1, [2, 3], [4, 5]]", [1, [2, 3], [4, 5]]),
    ("[1, ..., 25]", list(range(1, 26))),
    ("{}", {}),
    ('{"a": 1, "b": [2, 3]}', {"a": 1, "b": [2, 3]}),
    ('["a", {"b": "c"}]', ["a", {"b": "c"}]),
    ('{"a": "A", ..., "e": "E"}', {c: c.upper() for c in "abcde"}),
]

AMANAH_SAMPLES: list[tuple[str, Any]] = [
    ("head width boundaries", [23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32]),
    ("negative boundaries", [-24, -25, -256, -257, -65536, -65537, -(2**32), -(2**32) - 1]),
    ("map keys: shorter first, then bytewise", {"b": 1, "a": 2, "aa": 3, "B": 4, "ab": 5}),
    ("24-byte key", {"k" * 24: True, "k": False}),
    (
        "Arabic and English text",
        {"title_ar": "\u0623\u0631\u0634\u064a\u0641", "title_en": "Archive"},
    ),
    ("bytes of every length class", [b"\x00" * 23, b"\x01" * 24, b"\x02" * 256]),
    (
        "a log-entry-like body",
        {
            "type": "item",
            "seq": 7,
            "at": 1714571100000,
            "col": ids.sha256_id(b"collection"),
            "prev": ids.sha256_id(b"previous"),
            "item": ids.sha256_id(b"item"),
        },
    ),
    ("arrays nested to the depth limit", nested([0], cbor.MAX_DEPTH - 1)),
]

# Inputs that cbor.decode must refuse, and why.
INVALID_CBOR: list[tuple[str, str]] = [
    ("a01861", "integer map key"),
    ("a2616201616102", "map keys out of order"),
    ("a2616101616102", "duplicate map key"),
    ("1817", "integer 23 in a one-byte head (not shortest)"),
    ("190018", "integer 24 in a two-byte head"),
    ("1a0000ffff", "integer 65535 in a four-byte head"),
    ("1b00000000ffffffff", "integer 2**32-1 in an eight-byte head"),
    ("5801ff", "one-byte byte string in a one-byte length head"),
    ("9f01ff", "indefinite-length array"),
    ("bf616101ff", "indefinite-length map"),
    ("5f4101ff", "indefinite-length byte string"),
    ("7f6161ff", "indefinite-length text string"),
    ("f93c00", "half float 1.0"),
    ("fa3f800000", "single float 1.0"),
    ("fb3ff0000000000000", "double float 1.0"),
    ("c11a514b67b0", "tag 1 (epoch time)"),
    ("d820656120622063", "tag 32 (URI)"),
    ("c24101", "tag 2 (bignum) for 1"),
    ("c249010000000000000000", "tag 2 bignum beyond 64 bits"),
    ("f7", "undefined"),
    ("f0", "simple value 16"),
    ("0000", "trailing bytes"),
    ("", "empty input"),
    ("62c328", "invalid UTF-8 in a text string"),
    ("5a00010000", "byte string longer than the input"),
    ("ff", "lone break"),
    ("81" * (cbor.MAX_DEPTH + 1) + "00", "arrays nested one level beyond the limit"),
    ("a16161" * (cbor.MAX_DEPTH + 1) + "00", "maps nested one level beyond the limit"),
]


def cbor_vectors() -> dict:
    vectors = []
    for source, samples in (("RFC 8949 appendix A", RFC_EXAMPLES), ("Amanah", AMANAH_SAMPLES)):
        for name, value in samples:
            vectors.append(
                {
                    "name": name,
                    "source": source,
                    "value": to_json(value),
                    "cbor": cbor.encode(value).hex(),
                }
            )
    return {
        "description": (
            "Deterministic CBOR (RFC 8949 section 4.2.1): each value and its only accepted "
            "encoding; then inputs cbor.decode must refuse. Values use the JSON convention of "
            'generate.py: {"$bytes": hex}, {"$int": decimal} for integers beyond +-2**53. '
            f"Nesting limit: {cbor.MAX_DEPTH} levels of arrays or maps."
        ),
        "max_depth": cbor.MAX_DEPTH,
        "vectors": vectors,
        "invalid": [{"cbor": h, "why": why} for h, why in INVALID_CBOR],
    }


# --- ids.json ---------------------------------------------------------------------------------


def ids_vectors() -> dict:
    contents = [b"", b"abc", b"Amanah evidence archive", bytes(range(256))]
    content_ids = []
    for data in contents:
        raw = ids.sha256_id(data)
        content_ids.append(
            {
                "data": data.hex(),
                "raw": raw.hex(),
                "text": {kind: ids.to_text(kind, raw) for kind in ids.KINDS},
            }
        )
    peer_ids = []
    for label in PEER_LABELS[:3]:
        key = key_of(label)
        peer_ids.append(
            {
                "seed": seed(label).hex(),
                "public_key": bytes(key.verify_key).hex(),
                "peer_id": ids.peer_id_from_public_key(bytes(key.verify_key)),
            }
        )
    good = content_ids[1]["text"]["col"]
    body = good[4:]
    # a multihash with another function code (0x13 = sha2-512, truncated) in the same text shape
    other_hash = bytes((0x13, 0x20)) + ids.sha256_id(b"abc")[2:]
    other_text = "col_" + _b32(other_hash)
    last = body[-1]
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    # the last character carries 2 bits of the id and 3 zero bits; setting one of those gives
    # another spelling of the same bytes, which must be refused
    noncanonical = "col_" + body[:-1] + alphabet[alphabet.index(last) | 1]
    invalid = [
        {"kind": "col", "text": "itm_" + body, "why": "wrong prefix for the kind"},
        {"kind": "col", "text": body, "why": "no prefix"},
        {"kind": "col", "text": "COL_" + body, "why": "upper-case prefix"},
        {"kind": "col", "text": "col_" + body.upper(), "why": "upper-case base32"},
        {"kind": "col", "text": "col_" + body[:-1], "why": "54 characters"},
        {"kind": "col", "text": "col_" + body + "a", "why": "56 characters"},
        {"kind": "col", "text": "col_" + body + "=", "why": "padding"},
        {"kind": "col", "text": "col_" + body[:-1] + "1", "why": "not a base32 character"},
        {"kind": "col", "text": other_text, "why": "hash function code 0x13, not 0x12"},
        {"kind": "col", "text": "col_" + _b32(b"\x12\x21" + bytes(32)), "why": "length 0x21"},
        {"kind": "col", "text": noncanonical, "why": "non-zero trailing bits"},
        {"kind": "col", "text": good + "\n", "why": "trailing newline"},
    ]
    return {
        "description": (
            "Content ids: the SHA-256 multihash (0x12 0x20 digest) of the data, and its text "
            "form for each kind (prefix, then RFC 4648 base32 of the 34 bytes, lower case, no "
            "padding). Peer ids: libp2p's base58btc identity multihash of the protobuf Ed25519 "
            "public key of a fixed seed. Then texts ids.from_text must refuse."
        ),
        "content_ids": content_ids,
        "peer_ids": peer_ids,
        "invalid_texts": invalid,
    }


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().lower().rstrip("=")


# --- signing.json -----------------------------------------------------------------------------


def signing_vectors() -> dict:
    key = key_of("owner")
    samples = [
        ("amanah/test", 1, {"hello": "world"}),
        ("amanah/test", 2, {"hello": "world"}),
        ("amanah/other", 1, {"hello": "world"}),
        ("amanah/log-entry", 1, {"type": "key", "seq": 1, "at": 0}),
    ]
    vectors = []
    for tag, version, body in samples:
        message = signing.signable(tag, version, body)
        vectors.append(
            {
                "seed": seed("owner").hex(),
                "public_key": bytes(key.verify_key).hex(),
                "tag": tag,
                "version": version,
                "body": to_json(body),
                "signable": message.hex(),
                "signature": signing.sign(key, message).hex(),
            }
        )
    return {
        "description": (
            "Signables: the canonical CBOR array [tag, version, body] and its Ed25519 signature "
            "(RFC 8032, deterministic) by the key of a fixed seed. The same body under another "
            "tag or version gives other bytes, so a signature never carries across domains."
        ),
        "vectors": vectors,
    }


# --- log.json ---------------------------------------------------------------------------------

T0 = 1_714_571_100_000  # 2024-05-01T13:45:00Z in milliseconds


def entry_json(entry: log.Entry) -> dict:
    return {
        "signable": signing.signable(log.ENTRY_TAG, log.ENTRY_VERSION, entry.body).hex(),
        "signature": entry.signature.hex(),
        "raw": entry.raw.hex(),
        "id": entry.id.hex(),
        "id_text": ids.to_text("ent", entry.id),
    }


def genesis_inputs(tier: str, name: str, label: str) -> dict:
    inputs: dict[str, Any] = {
        "owner_seed": seed("owner").hex(),
        "name": name,
        "tier": tier,
        "at": T0,
        "nonce": fixed(f"genesis-nonce/{label}", 16).hex(),
    }
    if tier != "public":
        inputs["epoch_key"] = fixed(f"epoch-key/{label}/0").hex()
        inputs["ephemeral"] = fixed(f"ephemeral/{label}/genesis").hex()
    return inputs


def make_genesis(inputs: dict) -> log.Entry:
    return log.genesis(
        nacl.signing.SigningKey(bytes.fromhex(inputs["owner_seed"])),
        inputs["name"],
        inputs["tier"],
        inputs["at"],
        bytes.fromhex(inputs["nonce"]),
        bytes.fromhex(inputs["epoch_key"]) if "epoch_key" in inputs else None,
        bytes.fromhex(inputs["ephemeral"]) if "ephemeral" in inputs else None,
    )


def genesis_json(inputs: dict) -> dict:
    entry = make_genesis(inputs)
    out = {"inputs": inputs, "body": to_json(entry.body), **entry_json(entry)}
    out["collection_id_text"] = ids.to_text("col", entry.id)
    out["owner_peer_id"] = ids.peer_id_from_public_key(entry.body["owner"])
    return out


class ChainBuilder:
    """Builds a chain through the public builders, recording each step's inputs."""

    def __init__(self, tier: str, name: str, label: str) -> None:
        self.label = label
        self.owner = key_of("owner")
        self.genesis_inputs = genesis_inputs(tier, name, label)
        self.genesis = make_genesis(self.genesis_inputs)
        self.state = log.CollectionState.from_genesis(self.genesis)
        self.keys: dict[int, bytes] = {}
        if tier != "public":
            self.keys[0] = bytes.fromhex(self.genesis_inputs["epoch_key"])
        self.entries: list[dict] = []
        self.at = T0

    def _append(self, type_: str, inputs: dict, **fields: Any) -> log.Entry:
        self.at += 60_000
        inputs = {"type": type_, "at": self.at, **inputs}
        body = log.next_body(self.state, type_, self.at, **fields)
        entry = log.make_entry(self.owner, body)
        self.state.apply(entry)
        self.entries.append(
            {
                "inputs": inputs,
                "body": to_json(entry.body),
                **entry_json(entry),
                "after": {"length": self.state.length, "epoch": self.state.epoch},
            }
        )
        return entry

    def item(self, item_id: bytes) -> None:
        self._append("item", {"item": item_id.hex()}, item=item_id)

    def items(self, item_ids: list[bytes]) -> None:
        """A batch added together: one entry naming them all (SPEC 4.5)."""
        self._append("item", {"items": [i.hex() for i in item_ids]}, items=item_ids)

    def grant(self, peer: str, role: str) -> None:
        inputs: dict[str, Any] = {"peer": peer, "role": role}
        fields: dict[str, Any] = {"peer": pub(peer), "role": role}
        if role == "read" and self.state.tier != "public":
            eph = fixed(f"ephemeral/{self.label}/grant/{peer}/{self.state.length}")
            inputs.update(epoch=self.state.epoch, ephemeral=eph.hex())
            fields.update(
                epoch=self.state.epoch,
                wrap=crypto.wrap_key(pub(peer), self.keys[self.state.epoch], eph),
            )
        self._append("grant", inputs, **fields)

    def _rotation(self, readers: list[bytes]) -> tuple[dict, dict]:
        epoch = self.state.epoch + 1
        key = fixed(f"epoch-key/{self.label}/{epoch}")
        ephs = [fixed(f"ephemeral/{self.label}/epoch/{epoch}/{i}") for i in range(len(readers))]
        record = log.key_epoch(epoch, key, readers, self.state.id, self.keys[epoch - 1], ephs)
        self.keys[epoch] = key
        inputs = {"epoch": epoch, "key": key.hex(), "ephemerals": [e.hex() for e in ephs]}
        return inputs, record

    def revoke(self, peer: str, rotate: bool) -> None:
        inputs: dict[str, Any] = {"peer": peer}
        fields: dict[str, Any] = {"peer": pub(peer)}
        if rotate:
            readers = [r for r in self.state.readers() if r != pub(peer)]
            inputs["key"], fields["key"] = self._rotation(readers)
        self._append("revoke", inputs, **fields)

    def key(self) -> None:
        inputs, record = self._rotation(self.state.readers())
        self._append("key", {"key": inputs}, key=record)

    def redact(self, item_id: bytes, reason: str) -> None:
        inputs: dict[str, Any] = {"item": item_id.hex(), "reason": reason}
        fields: dict[str, Any] = {"item": item_id}
        if self.state.tier == "public":
            fields["reason"] = reason
        else:
            epoch = self.state.epoch
            context = log.reason_context(self.state.id, self.state.length)
            inputs["epoch"] = epoch
            fields.update(
                epoch=epoch, reason_enc=crypto.seal_log_text(self.keys[epoch], context, reason)
            )
        self._append("redact", inputs, **fields)

    def json(self) -> dict:
        return {
            "tier": self.state.tier,
            "genesis": genesis_json(self.genesis_inputs),
            "entries": self.entries,
            "epoch_keys": {str(e): k.hex() for e, k in sorted(self.keys.items())},
        }


def public_chain(item_id: bytes) -> ChainBuilder:
    c = ChainBuilder("public", "Public documentation", "public")
    c.item(item_id)
    c.grant("hold-peer", "hold")
    c.grant("mirror-peer", "mirror")
    c.grant("reader-1", "read")
    c.redact(item_id, "Posted by mistake: a duplicate of an earlier item.")
    c.revoke("hold-peer", rotate=False)
    c.revoke("reader-1", rotate=False)
    c.items([ids.sha256_id(f"batch item {i}".encode()) for i in range(3)])
    return c


def trusted_chain(item_id: bytes) -> ChainBuilder:
    c = ChainBuilder("trusted", "شهادات — Testimonies", "trusted")
    c.item(item_id)
    c.grant("hold-peer", "hold")
    c.grant("reader-1", "read")
    c.grant("reader-2", "read")
    c.revoke("reader-1", rotate=True)
    c.key()
    c.redact(item_id, "The witness withdrew consent: لا تنشر اسمها")
    return c


def invalid_item_entries() -> list[dict]:
    """Item entries signed by the owner (signature valid) whose body a reader MUST refuse (4.5)."""
    owner = nacl.signing.SigningKey(seed("owner"))
    genesis = make_genesis(genesis_inputs("public", "Public documentation", "public"))
    batch = [ids.sha256_id(f"batch item {i}".encode()) for i in range(log.MAX_ITEMS + 1)]
    base = {"type": "item", "seq": 1, "at": T0 + 60_000, "col": genesis.id, "prev": genesis.id}
    cases: list[tuple[str, dict]] = [
        ("both item and items", {**base, "item": batch[0], "items": batch[1:3]}),
        ("neither item nor items", base),
        ("items of one id (one item is always 'item')", {**base, "items": batch[:1]}),
        ("items empty", {**base, "items": []}),
        ("items of 1,025 ids", {**base, "items": batch}),
        ("items names an id twice", {**base, "items": [batch[0], batch[1], batch[0]]}),
        ("items holds a non-id", {**base, "items": [batch[0], b"\x13\x20" + bytes(32)]}),
        ("items is not an array", {**base, "items": batch[0]}),
    ]
    out = []
    for why, body in cases:
        sig = signing.sign(owner, signing.signable(log.ENTRY_TAG, log.ENTRY_VERSION, body))
        out.append({"raw": cbor.encode({"body": body, "sig": sig}).hex(), "why": why})
    return out


def log_vectors(public_item: bytes, trusted_item: bytes) -> dict:
    return {
        "description": (
            "Collection logs. An entry is the canonical CBOR map {body, sig}; sig is the owner's "
            'Ed25519 signature over signable("amanah/log-entry", 1, body) and the entry id is '
            "the SHA-256 multihash of that signable; a genesis entry's id is the collection id. "
            "Fixed inputs: owner and peer seeds (by label), genesis nonces, epoch keys and the "
            "ephemeral X25519 secrets of every key wrap (a key epoch's ephemerals follow the "
            "sorted order of its readers' keys). Times are milliseconds since 1970. Encrypted "
            "redaction reasons use the context log.reason_context(collection, seq). An item "
            "entry names one item ('item') or a batch added together ('items', 2 to 1,024 "
            "distinct ids). 'after' is the collection state once the entry is applied. "
            "'invalid_entries': item entries of the public collection at position 1, signed "
            "by its owner, that a reader MUST refuse for their body (SPEC 4.5)."
        ),
        "peers": {
            label: {"seed": seed(label).hex(), "public_key": pub(label).hex()}
            for label in PEER_LABELS
        },
        "genesis": [
            genesis_json(genesis_inputs("public", "Public documentation", "public")),
            genesis_json(genesis_inputs("closed", "Witness statements (closed)", "closed")),
        ],
        "chains": [public_chain(public_item).json(), trusted_chain(trusted_item).json()],
        "invalid_entries": invalid_item_entries(),
    }


# --- items.json, blocks.json, metadata.json ---------------------------------------------------


def fixity(name: str, data: bytes, mime: str) -> dict:
    return {
        "filename": name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mime": mime,
        "ingested_at": "2024-05-01T13:45:00Z",
    }


USER_META = {
    "title_en": "Market shelling, eastern district",
    "title_ar": "قصف السوق، الحي الشرقي",
    "description_en": "Two videos filmed from a rooftop.\nSecond angle at 00:41.",
    "source_url": "https://example.org/posts/1234?lang=ar",
    "captured_at": "2024-04-30T08:15:00+03:00",
    "location": {"name": "Eastern market", "lat": "36.2021", "lon": "37.1343", "precision": "city"},
    "tags": ["shelling", "market", "قصف"],
    "extra": {"collector": "field team 3"},
}


def public_item(collection: bytes) -> tuple[dict, bytes]:
    content = "Statement recorded 2024-04-30. البيان\n".encode() * 3
    salt = fixed("salt/public-item")
    meta = metadata_mod.validate({**USER_META, **fixity("statement.txt", content, "text/plain")})
    block_ids = [ids.sha256_id(content)]
    fields = {
        "v": item_mod.RECORD_VERSION,
        "col": collection,
        "salt": salt,
        "size": len(content),
        "chunk": CHUNK,
        "blocks": block_ids,
        "meta": meta,
    }
    record = item_mod.build_record(fields)
    return {
        "inputs": {
            "collection": collection.hex(),
            "salt": salt.hex(),
            "content": content.hex(),
            "meta": to_json(meta),
        },
        "block_ids": [b.hex() for b in block_ids],
        "record": to_json(record.fields),
        "raw": record.raw.hex(),
        "id": record.id.hex(),
        "id_text": ids.to_text("itm", record.id),
    }, record.id


def encrypted_item(collection: bytes, epoch_key: bytes) -> tuple[dict, bytes]:
    size = CHUNK + 1000
    content = pattern(size)
    salt = fixed("salt/trusted-item")
    cipher = crypto.ItemCipher(epoch_key, collection, salt)
    stored = [
        cipher.seal(crypto.PURPOSE_BLOCK, i, content[i * CHUNK : (i + 1) * CHUNK])
        for i in range(item_mod.block_count(size))
    ]
    block_ids = [ids.sha256_id(s) for s in stored]
    meta = metadata_mod.validate(
        {"title_en": "Rooftop video", **fixity("rooftop.mp4", content, "video/mp4")}
    )
    meta_cbor = cbor.encode(meta)
    meta_enc = cipher.seal(crypto.PURPOSE_METADATA, 0, meta_cbor)
    fields = {
        "v": item_mod.RECORD_VERSION,
        "col": collection,
        "salt": salt,
        "size": size,
        "chunk": CHUNK,
        "blocks": block_ids,
        "epoch": 0,
        "meta_enc": meta_enc,
    }
    record = item_mod.build_record(fields)
    return {
        "inputs": {
            "collection": collection.hex(),
            "epoch": 0,
            "epoch_key": epoch_key.hex(),
            "salt": salt.hex(),
            "content": {"pattern": "byte i is i mod 251", "size": size},
            "meta": to_json(meta),
        },
        "item_key": crypto.item_key(epoch_key, salt).hex(),
        "block_ids": [b.hex() for b in block_ids],
        "block_sha256": [hashlib.sha256(s).hexdigest() for s in stored],
        "last_block_ciphertext": stored[-1].hex(),
        "meta_cbor": meta_cbor.hex(),
        "meta_enc": meta_enc.hex(),
        "record": to_json(record.fields),
        "raw": record.raw.hex(),
        "id": record.id.hex(),
        "id_text": ids.to_text("itm", record.id),
    }, record.id


def manifest_item(collection: bytes) -> dict:
    count = item_mod.INLINE_BLOCKS + 1
    block_ids = [ids.sha256_id(b"block %d" % i) for i in range(count)]
    manifest = item_mod.encode_manifest(block_ids)
    data = b"manifest item"
    meta = metadata_mod.validate(fixity("big.bin", data, "application/octet-stream"))
    meta["size"] = count * CHUNK  # fixity of a file not given here
    fields = {
        "v": item_mod.RECORD_VERSION,
        "col": collection,
        "salt": fixed("salt/manifest-item"),
        "size": count * CHUNK,
        "chunk": CHUNK,
        "manifest": [ids.sha256_id(manifest)],
        "meta": meta,
    }
    record = item_mod.build_record(fields)
    return {
        "inputs": {
            "collection": collection.hex(),
            "salt": fields["salt"].hex(),
            "size": count * CHUNK,
            "block_ids": 'SHA-256 multihash of b"block %d" for each block index',
            "meta": to_json(meta),
        },
        "manifest": manifest.hex(),
        "manifest_id": ids.sha256_id(manifest).hex(),
        "raw": record.raw.hex(),
        "id": record.id.hex(),
        "id_text": ids.to_text("itm", record.id),
    }


def item_vectors(
    public_col: bytes, trusted_col: bytes, epoch_key: bytes
) -> tuple[dict, bytes, bytes]:
    pub_json, pub_id = public_item(public_col)
    enc_json, enc_id = encrypted_item(trusted_col, epoch_key)
    return (
        {
            "description": (
                "Item records: canonical CBOR maps; the item id is the SHA-256 multihash of the "
                "record's bytes. A public item lists the ids of its plaintext blocks and its "
                "metadata in the clear. An encrypted item's blocks are ChaCha20-Poly1305 "
                "ciphertexts (see blocks.json) and its metadata CBOR is sealed with purpose 3, "
                "index 0. A record of more than 256 blocks lists manifest blocks instead: CBOR "
                "arrays of up to 1024 block ids. The public and encrypted records are the items "
                "of the two chains in log.json."
            ),
            "chunk_size": CHUNK,
            "public": pub_json,
            "encrypted": enc_json,
            "manifest": manifest_item(public_col),
        },
        pub_id,
        enc_id,
    )


def block_vectors(collection: bytes, epoch_key: bytes) -> dict:
    salt = fixed("salt/blocks")
    cases = [
        (0, b""),
        (0, b"Amanah block 0"),
        (1, b"Amanah block 1"),
        (7, bytes(range(256)) * 4),
        (2**40, b"a far index"),
    ]
    cipher = crypto.ItemCipher(epoch_key, collection, salt)
    vectors = []
    for index, plaintext in cases:
        ct = cipher.seal(crypto.PURPOSE_BLOCK, index, plaintext)
        vectors.append(
            {
                "epoch_key": epoch_key.hex(),
                "collection": collection.hex(),
                "salt": salt.hex(),
                "purpose": crypto.PURPOSE_BLOCK,
                "index": index,
                "plaintext": plaintext.hex(),
                "item_key": crypto.item_key(epoch_key, salt).hex(),
                "nonce": crypto.nonce(crypto.PURPOSE_BLOCK, index).hex(),
                "associated_data": crypto.associated_data(
                    collection, salt, crypto.PURPOSE_BLOCK, index
                ).hex(),
                "ciphertext": ct.hex(),
                "block_id": ids.sha256_id(ct).hex(),
                "block_id_text": ids.to_text("blk", ids.sha256_id(ct)),
            }
        )
    public = b"A public block is stored as it is."
    return {
        "description": (
            "Block encryption: item key = HKDF-SHA256(ikm=epoch key, salt=item salt, "
            'info="amanah/v1/item-key"); nonce = purpose (4 bytes, big-endian) || index (8 '
            'bytes); associated data = "amanah/v1/block" || collection id || salt || nonce; '
            "ChaCha20-Poly1305 (RFC 8439). The block id is the SHA-256 multihash of the "
            "ciphertext. A public block is stored as plaintext and addressed by its hash."
        ),
        "encrypted": vectors,
        "public": [
            {
                "plaintext": public.hex(),
                "block_id": ids.sha256_id(public).hex(),
                "block_id_text": ids.to_text("blk", ids.sha256_id(public)),
            }
        ],
    }


def metadata_vectors(collection: bytes, epoch_key: bytes) -> dict:
    salt = fixed("salt/metadata")
    content = b"fixity of this content"
    meta = metadata_mod.validate({**USER_META, **fixity("clip.mp4", content, "video/mp4")})
    meta_cbor = cbor.encode(meta)
    cipher = crypto.ItemCipher(epoch_key, collection, salt)
    base = fixity("a.txt", b"", "text/plain")
    invalid = [
        ({**base, "captured_at": "2024-02-30T10:00:00Z"}, "no 30 February"),
        ({**base, "captured_at": "2024-05-01T10:00:00"}, "time without offset"),
        ({**base, "source_url": "ftp://example.org/x"}, "not http(s)"),
        ({**base, "title_en": "line\nbreak"}, "control character in a title"),
        ({**base, "location": {"lat": "90.5", "lon": "0"}}, "latitude out of range"),
        ({**base, "location": {"lat": "0", "lon": "-180.01"}}, "longitude out of range"),
        ({**base, "colour": "red"}, "unknown field"),
        ({k: v for k, v in base.items() if k != "sha256"}, "no sha256"),
        ({**base, "sha256": base["sha256"].upper()}, "upper-case sha256"),
    ]
    return {
        "description": (
            "Item metadata: a canonical CBOR map of the user fields and the fixity fields "
            "(filename, size, sha256, mime, ingested_at). For a non-public item it is sealed "
            "like a block (blocks.json) with purpose 3 and index 0. Then metadata maps that "
            "metadata.validate must refuse."
        ),
        "vectors": [
            {
                "epoch_key": epoch_key.hex(),
                "collection": collection.hex(),
                "salt": salt.hex(),
                "meta": to_json(meta),
                "cbor": meta_cbor.hex(),
                "nonce": crypto.nonce(crypto.PURPOSE_METADATA, 0).hex(),
                "associated_data": crypto.associated_data(
                    collection, salt, crypto.PURPOSE_METADATA, 0
                ).hex(),
                "ciphertext": cipher.seal(crypto.PURPOSE_METADATA, 0, meta_cbor).hex(),
            }
        ],
        "invalid": [{"meta": to_json(m), "why": why} for m, why in invalid],
    }


# --- keys.json --------------------------------------------------------------------------------


def key_vectors(collection: bytes) -> dict:
    wraps = []
    for label in ("owner", "reader-1"):
        reader = pub(label)
        key = fixed(f"wrapped-key/{label}")
        eph = fixed(f"ephemeral/wrap/{label}")
        eph_public = bytes(nacl.public.PrivateKey(eph).public_key)
        recipient = crypto.x25519_public(reader)
        wraps.append(
            {
                "reader_seed": seed(label).hex(),
                "reader_public_key": reader.hex(),
                "reader_x25519_public": recipient.hex(),
                "reader_x25519_secret": bytes(crypto.x25519_secret(key_of(label))).hex(),
                "key": key.hex(),
                "ephemeral_secret": eph.hex(),
                "ephemeral_public": eph_public.hex(),
                "nonce": nacl.hash.blake2b(
                    eph_public + recipient, digest_size=24, encoder=nacl.encoding.RawEncoder
                ).hex(),
                "sealed": crypto.wrap_key(reader, key, eph).hex(),
            }
        )
    chains = []
    for epoch in (1, 2):
        new, previous = fixed(f"chain/{epoch}"), fixed(f"chain/{epoch - 1}")
        chains.append(
            {
                "new_key": new.hex(),
                "previous_key": previous.hex(),
                "collection": collection.hex(),
                "epoch": epoch,
                "chained": crypto.chain_seal(new, previous, collection, epoch).hex(),
            }
        )
    texts = []
    for context, text in (
        (b"amanah/v1/collection-name" + fixed("genesis-nonce/x", 16), "Witness statements"),
        (log.reason_context(collection, 5), "سبب الحذف: reason for redaction"),
    ):
        key = fixed("log-text-key")
        texts.append(
            {
                "key": key.hex(),
                "context": context.hex(),
                "text": text,
                "ciphertext": crypto.seal_log_text(key, context, text).hex(),
            }
        )
    return {
        "description": (
            "Key wraps: crypto_box_seal of a 32-byte key to the X25519 form of a reader's "
            "Ed25519 key, with a fixed ephemeral secret (nonce = BLAKE2b-192(ephemeral public "
            "|| reader X25519 public)); sealed = ephemeral public || box. Any sealed-box "
            "implementation opens it. Key chain: ChaCha20-Poly1305 under HKDF-SHA256(new key, "
            'salt=collection id, info="amanah/v1/key-chain"), nonce = 0 (4 bytes) || epoch (8 '
            'bytes), associated data "amanah/v1/key-chain", sealing the previous epoch\'s key. '
            "Log texts (collection names, redaction reasons): ChaCha20-Poly1305 under "
            'HKDF-SHA256(epoch key, salt=context, info="amanah/v1/log-text-key"), nonce = 4 '
            "(4 bytes) || 0 (8 bytes), associated data = context."
        ),
        "wraps": wraps,
        "chain": chains,
        "log_texts": texts,
    }


# --- all files --------------------------------------------------------------------------------


def build() -> dict[str, dict]:
    public_genesis = make_genesis(genesis_inputs("public", "Public documentation", "public"))
    trusted_inputs = genesis_inputs("trusted", "شهادات — Testimonies", "trusted")
    trusted_genesis = make_genesis(trusted_inputs)
    trusted_key0 = bytes.fromhex(trusted_inputs["epoch_key"])
    items, public_item_id, trusted_item_id = item_vectors(
        public_genesis.id, trusted_genesis.id, trusted_key0
    )
    return {
        "cbor.json": cbor_vectors(),
        "ids.json": ids_vectors(),
        "signing.json": signing_vectors(),
        "log.json": log_vectors(public_item_id, trusted_item_id),
        "items.json": items,
        "blocks.json": block_vectors(trusted_genesis.id, trusted_key0),
        "metadata.json": metadata_vectors(trusted_genesis.id, trusted_key0),
        "keys.json": key_vectors(trusted_genesis.id),
    }


def render(vectors: dict) -> bytes:
    return (json.dumps(vectors, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    for name, vectors in build().items():
        (out / name).write_bytes(render(vectors))
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
