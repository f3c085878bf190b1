"""Items: one original file, split into blocks, described by a signed-over item record.

The item record is canonical CBOR; its SHA-256 multihash is the item id, and that id is what the
collection log's "item" entry carries, so the owner's signature covers the record, and through
its block ids every byte of content. Records live apart from the log so a redaction can erase
them (and their metadata) while the log stays verifiable.

Block i holds bytes [i*chunk, (i+1)*chunk) of the original: in the clear for public collections,
else ChaCha20-Poly1305 ciphertext (see crypto.py). A block's id is the hash of the bytes stored.
Up to INLINE_BLOCKS ids sit in the record; a larger item lists manifest blocks instead, each a
CBOR array of up to MANIFEST_FANOUT block ids, in the clear for every tier: ids of ciphertext reveal
nothing, and holders without the key must know which blocks to keep and verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from . import cbor, crypto, ids
from . import metadata as metadata_mod
from .errors import FormatError, IntegrityError

RECORD_VERSION = 1
CHUNK_SIZE = 1 << 20
MAX_RECORD_SIZE = 65_000
INLINE_BLOCKS = 256
MANIFEST_FANOUT = 1_024
MAX_ITEM_SIZE = 1 << 44  # 16 TiB: far beyond any file we expect, well inside 64-bit arithmetic
MAX_BLOCK_SIZE = CHUNK_SIZE + crypto.TAG_LEN
MAX_MANIFEST_SIZE = MANIFEST_FANOUT * (ids.ID_LEN + 2) + 16


def block_count(size: int, chunk: int = CHUNK_SIZE) -> int:
    return (size + chunk - 1) // chunk


@dataclass(frozen=True, slots=True)
class ItemRecord:
    fields: dict
    raw: bytes
    id: bytes

    @property
    def collection(self) -> bytes:
        return self.fields["col"]

    @property
    def size(self) -> int:
        return self.fields["size"]

    @property
    def encrypted(self) -> bool:
        return "meta_enc" in self.fields

    @property
    def salt(self) -> bytes:
        return self.fields["salt"]

    @property
    def epoch(self) -> int | None:
        return self.fields.get("epoch")

    @property
    def block_count(self) -> int:
        return block_count(self.size, self.fields["chunk"])

    def inline_blocks(self) -> list[bytes] | None:
        return self.fields.get("blocks")

    def manifest_ids(self) -> list[bytes]:
        return self.fields.get("manifest", [])


def manifest_len(record: ItemRecord, manifest_id: bytes) -> int:
    """How many block ids manifest `manifest_id` of `record` lists (6.3): MANIFEST_FANOUT, but
    the last may list fewer."""
    index = record.manifest_ids().index(manifest_id)
    return min(MANIFEST_FANOUT, record.block_count - index * MANIFEST_FANOUT)


def build_record(fields: dict) -> ItemRecord:
    """Encode a record the caller built from validated parts (parse_record checks foreign ones)."""
    raw = cbor.encode(fields)
    if len(raw) > MAX_RECORD_SIZE:
        raise FormatError(f"item record of {len(raw)} bytes exceeds {MAX_RECORD_SIZE}")
    return ItemRecord(fields, raw, ids.sha256_id(raw))


def stored_record(raw: bytes, item_id: bytes) -> ItemRecord:
    """A record from this node's own store, checked against its id when it was stored: decoded
    without re-validation, for scans over many items. Never use it on bytes from outside."""
    return ItemRecord(cbor2.loads(raw), raw, item_id)


def parse_record(raw: bytes, item_id: bytes | None = None) -> ItemRecord:
    """Decode and validate a record from outside. `item_id`: its id, if the caller has just
    checked it against the bytes (saves hashing them again)."""
    value = cbor.decode(raw, MAX_RECORD_SIZE)
    if not isinstance(value, dict):
        raise FormatError("an item record is a map")
    allowed = {
        "v",
        "col",
        "salt",
        "size",
        "chunk",
        "blocks",
        "manifest",
        "meta",
        "meta_enc",
        "epoch",
    }
    if set(value) - allowed:
        raise FormatError("unknown field in item record")
    if type(value.get("v")) is not int or value["v"] != RECORD_VERSION:  # not True (== 1)
        raise FormatError("unsupported item record version")
    ids.check_raw_id(value.get("col"))
    salt = value.get("salt")
    if not isinstance(salt, bytes) or len(salt) != crypto.SALT_LEN:
        raise FormatError("item salt must be 32 bytes")
    size, chunk = value.get("size"), value.get("chunk")
    for n, what in ((size, "size"), (chunk, "chunk")):
        if not isinstance(n, int) or isinstance(n, bool):
            raise FormatError(f"item {what} must be an integer")
    if not 0 <= size <= MAX_ITEM_SIZE or chunk != CHUNK_SIZE:
        raise FormatError("item size or chunk size out of range")
    count = block_count(size, chunk)
    if ("blocks" in value) == ("manifest" in value):
        raise FormatError("an item record lists blocks or manifest blocks, not both")
    if "blocks" in value:
        blocks = value["blocks"]
        if not isinstance(blocks, list) or len(blocks) != count or count > INLINE_BLOCKS:
            raise FormatError("item block list does not match its size")
        for b in blocks:
            ids.check_raw_id(b)
    else:
        manifest = value["manifest"]
        expected = (count + MANIFEST_FANOUT - 1) // MANIFEST_FANOUT
        if count <= INLINE_BLOCKS or not isinstance(manifest, list) or len(manifest) != expected:
            raise FormatError("item manifest does not match its size")
        for b in manifest:
            ids.check_raw_id(b)
    if ("meta" in value) == ("meta_enc" in value):
        raise FormatError("an item record has clear or encrypted metadata, not both")
    if "meta" in value:
        if "epoch" in value:
            raise FormatError("a public item has no key epoch")
        metadata_mod.validate(value["meta"])
    else:
        epoch = value.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise FormatError("an encrypted item names its key epoch")
        if (
            not isinstance(value["meta_enc"], bytes)
            or len(value["meta_enc"]) > 2 * metadata_mod.MAX_METADATA
        ):
            raise FormatError("encrypted metadata too large")
    return ItemRecord(value, raw, item_id or ids.sha256_id(raw))


def manifest_chunks(block_ids: list[bytes]) -> list[list[bytes]]:
    return [block_ids[i : i + MANIFEST_FANOUT] for i in range(0, len(block_ids), MANIFEST_FANOUT)]


def encode_manifest(block_ids: list[bytes]) -> bytes:
    return cbor.encode(block_ids)


def decode_manifest(data: bytes, expected: int) -> list[bytes]:
    value = cbor.decode(data, MAX_MANIFEST_SIZE)
    if not isinstance(value, list) or len(value) != expected:
        raise IntegrityError("manifest block has the wrong number of ids")
    for b in value:
        ids.check_raw_id(b)
    return value


def decode_metadata(data: bytes) -> dict[str, Any]:
    try:
        meta = cbor.decode(data, metadata_mod.MAX_METADATA)
        return metadata_mod.validate(meta)
    except FormatError as exc:
        raise IntegrityError(f"metadata invalid: {exc}") from None
