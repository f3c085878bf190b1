"""Item records and manifests: what is accepted, and every way a record is refused."""

from __future__ import annotations

import hashlib
import os

import pytest
from amanah.protocol import cbor, crypto, ids
from amanah.protocol import item as item_mod
from amanah.protocol.errors import FormatError, IntegrityError
from hypothesis import given, settings
from hypothesis import strategies as st

from .strategies import raw_ids, salts, stored_metadata

CHUNK = item_mod.CHUNK_SIZE
COL = ids.sha256_id(b"collection")


def meta_for(data: bytes) -> dict:
    return {
        "title_en": "A file",
        "filename": "a.txt",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mime": "text/plain",
        "ingested_at": "2024-05-01T13:45:00Z",
    }


def public_fields(data: bytes = b"hello") -> dict:
    return {
        "v": 1,
        "col": COL,
        "salt": bytes(32),
        "size": len(data),
        "chunk": CHUNK,
        "blocks": [ids.sha256_id(data)] if data else [],
        "meta": meta_for(data),
    }


def encrypted_fields(data: bytes = b"hello", key: bytes = bytes(32)) -> dict:
    salt = os.urandom(32)
    cipher = crypto.ItemCipher(key, COL, salt)
    block = cipher.seal(crypto.PURPOSE_BLOCK, 0, data)
    meta_enc = cipher.seal(crypto.PURPOSE_METADATA, 0, cbor.encode(meta_for(data)))
    return {
        "v": 1,
        "col": COL,
        "salt": salt,
        "size": len(data),
        "chunk": CHUNK,
        "blocks": [ids.sha256_id(block)],
        "epoch": 0,
        "meta_enc": meta_enc,
    }


def manifest_fields(blocks: int = item_mod.INLINE_BLOCKS + 1) -> dict:
    fields = public_fields()
    del fields["blocks"]
    fields["size"] = blocks * CHUNK
    fields["meta"] = {**fields["meta"], "size": blocks * CHUNK}
    count = (blocks + item_mod.MANIFEST_FANOUT - 1) // item_mod.MANIFEST_FANOUT
    fields["manifest"] = [ids.sha256_id(b"manifest %d" % i) for i in range(count)]
    return fields


def test_public_record():
    fields = public_fields()
    record = item_mod.build_record(fields)
    assert record.raw == cbor.encode(fields)
    assert record.id == ids.sha256_id(record.raw)
    parsed = item_mod.parse_record(record.raw)
    assert (parsed.fields, parsed.raw, parsed.id) == (fields, record.raw, record.id)
    assert parsed.collection == COL and parsed.size == 5 and parsed.salt == bytes(32)
    assert not parsed.encrypted and parsed.epoch is None
    assert parsed.block_count == 1
    assert parsed.inline_blocks() == [ids.sha256_id(b"hello")]
    assert parsed.manifest_ids() == []


def test_encrypted_record():
    key = os.urandom(32)
    fields = encrypted_fields(b"secret", key)
    record = item_mod.parse_record(item_mod.build_record(fields).raw)
    assert record.encrypted and record.epoch == 0
    assert b"secret" not in record.raw and b"a.txt" not in record.raw
    cipher = crypto.ItemCipher(key, COL, record.salt)
    meta = item_mod.decode_metadata(cipher.open(crypto.PURPOSE_METADATA, 0, fields["meta_enc"]))
    assert meta["sha256"] == hashlib.sha256(b"secret").hexdigest()


def test_empty_item_has_no_blocks():
    record = item_mod.parse_record(item_mod.build_record(public_fields(b"")).raw)
    assert record.block_count == 0 and record.inline_blocks() == []


def test_manifest_record():
    fields = manifest_fields()
    record = item_mod.parse_record(item_mod.build_record(fields).raw)
    assert record.inline_blocks() is None
    assert record.manifest_ids() == fields["manifest"]
    assert record.block_count == item_mod.INLINE_BLOCKS + 1
    big = manifest_fields(item_mod.MANIFEST_FANOUT * 3 + 1)
    assert len(item_mod.parse_record(cbor.encode(big)).manifest_ids()) == 4


def test_inline_block_limit():
    n = item_mod.INLINE_BLOCKS
    fields = {**public_fields(), "size": n * CHUNK, "blocks": [COL] * n}
    fields["meta"] = {**fields["meta"], "size": n * CHUNK}
    item_mod.parse_record(cbor.encode(fields))
    over = {**fields, "size": n * CHUNK + 1, "blocks": [COL] * (n + 1)}
    with pytest.raises(FormatError):
        item_mod.parse_record(cbor.encode(over))


def _without(fields: dict, *names: str) -> dict:
    return {k: v for k, v in fields.items() if k not in names}


def _bad_records() -> dict[str, object]:
    p, e, m = public_fields(), encrypted_fields(), manifest_fields()
    two = {**public_fields(b"x" * (CHUNK + 1))}
    return {
        "not a map": [p],
        "unknown field": {**p, "note": "x"},
        "no version": _without(p, "v"),
        "version 2": {**p, "v": 2},
        "version 0": {**p, "v": 0},
        "version true": {**p, "v": True},
        "version text": {**p, "v": "1"},
        "no collection": _without(p, "col"),
        "collection not an id": {**p, "col": bytes(34)},
        "collection hex": {**p, "col": COL.hex()},
        "no salt": _without(p, "salt"),
        "salt 31 bytes": {**p, "salt": bytes(31)},
        "salt text": {**p, "salt": "0" * 32},
        "no size": _without(p, "size"),
        "negative size": {**p, "size": -1},
        "size true": {**p, "size": True, "blocks": [COL]},
        "size text": {**p, "size": "5"},
        "size beyond the limit": {**m, "size": item_mod.MAX_ITEM_SIZE + 1},
        "no chunk": _without(p, "chunk"),
        "other chunk size": {**p, "chunk": CHUNK // 2},
        "chunk true": {**p, "chunk": True},
        "no blocks nor manifest": _without(p, "blocks"),
        "blocks and manifest": {**p, "manifest": [COL]},
        "too few blocks": {**two, "blocks": two["blocks"][:1]},
        "too many blocks": {**p, "blocks": [COL, COL]},
        "a block for an empty item": {**public_fields(b""), "blocks": [COL]},
        "block not an id": {**p, "blocks": [b"\x12\x20" + bytes(31)]},
        "blocks not a list": {**p, "blocks": COL},
        "manifest for a small item": {**_without(p, "blocks"), "manifest": [COL]},
        "manifest too short": {**m, "manifest": []},
        "manifest too long": {**m, "manifest": m["manifest"] * 2},
        "manifest not a list": {**m, "manifest": m["manifest"][0]},
        "manifest entry not an id": {**m, "manifest": [bytes(34)]},
        "no metadata": _without(p, "meta"),
        "both metadata forms": {**p, "meta_enc": b"x"},
        "public with an epoch": {**p, "epoch": 0},
        "invalid metadata": {**p, "meta": {**p["meta"], "sha256": "x"}},
        "metadata not a map": {**p, "meta": ["x"]},
        "encrypted without epoch": _without(e, "epoch"),
        "encrypted negative epoch": {**e, "epoch": -1},
        "encrypted epoch true": {**e, "epoch": True},
        "encrypted epoch text": {**e, "epoch": "0"},
        "encrypted metadata text": {**e, "meta_enc": "x"},
        "encrypted metadata too large": {**e, "meta_enc": bytes(2 * 32_768 + 1)},
    }


BAD = _bad_records()


@pytest.mark.parametrize("fields", BAD.values(), ids=BAD.keys())
def test_bad_records_are_refused(fields):
    with pytest.raises(FormatError):
        item_mod.parse_record(cbor.encode(fields))


def test_non_canonical_and_oversize_records_are_refused():
    raw = item_mod.build_record(public_fields()).raw
    # the map header re-encoded in a two-byte form: same value, other bytes
    assert raw[0] == 0xA0 | len(public_fields())
    with pytest.raises(FormatError, match="canonical"):
        item_mod.parse_record(bytes([0xB8, len(public_fields())]) + raw[1:])
    with pytest.raises(FormatError):
        item_mod.parse_record(raw + b"\x00")
    big = {**public_fields(), "meta": {**meta_for(b"hello"), "description_en": "x" * 20_000}}
    big["meta"]["extra"] = {f"k{i}": "y" * 9_000 for i in range(6)}
    with pytest.raises(FormatError):
        item_mod.build_record(big)
    with pytest.raises(FormatError, match="exceeds"):
        item_mod.parse_record(cbor.encode(big))


def test_manifest_blocks():
    block_ids = [ids.sha256_id(b"%d" % i) for i in range(2500)]
    parts = item_mod.manifest_chunks(block_ids)
    assert [len(p) for p in parts] == [1024, 1024, 452]
    for part in parts:
        data = item_mod.encode_manifest(part)
        assert len(data) <= item_mod.MAX_MANIFEST_SIZE
        assert item_mod.decode_manifest(data, len(part)) == part
    with pytest.raises(IntegrityError):
        item_mod.decode_manifest(item_mod.encode_manifest(parts[2]), 453)
    with pytest.raises(FormatError):
        item_mod.decode_manifest(cbor.encode([b"x" * 34]), 1)
    with pytest.raises(IntegrityError):
        item_mod.decode_manifest(cbor.encode({"ids": parts[2]}), 1)
    with pytest.raises(FormatError):
        item_mod.decode_manifest(cbor.encode(block_ids[:1100]), 1100)  # over the size cap


def test_decode_metadata_reports_integrity_errors():
    meta = meta_for(b"x")
    assert item_mod.decode_metadata(cbor.encode(meta)) == meta
    for bad in (b"\xff", cbor.encode({**meta, "size": -1}), cbor.encode([meta])):
        with pytest.raises(IntegrityError, match="metadata invalid"):
            item_mod.decode_metadata(bad)


@pytest.mark.parametrize(
    ("size", "count"),
    [(0, 0), (1, 1), (CHUNK - 1, 1), (CHUNK, 1), (CHUNK + 1, 2), (10 * CHUNK, 10)],
)
def test_block_count(size, count):
    assert item_mod.block_count(size) == count


# --- properties -------------------------------------------------------------------------------


@settings(deadline=None)
@given(stored_metadata, raw_ids, salts, st.integers(0, 4 * CHUNK))
def test_records_round_trip(meta, col, salt, size):
    count = item_mod.block_count(size)
    fields = {
        "v": 1,
        "col": col,
        "salt": salt,
        "size": size,
        "chunk": CHUNK,
        "blocks": [ids.sha256_id(b"%d" % i) for i in range(count)],
        "meta": meta,
    }
    record = item_mod.build_record(fields)
    parsed = item_mod.parse_record(record.raw)
    assert parsed.id == record.id == ids.sha256_id(cbor.encode(fields))
    assert parsed.block_count == count


@given(st.integers(0, 10_000))
def test_manifest_chunks_partition_the_ids(n):
    block_ids = [i.to_bytes(34, "big") for i in range(n)]
    parts = item_mod.manifest_chunks(block_ids)
    assert [b for p in parts for b in p] == block_ids
    assert all(1 <= len(p) <= item_mod.MANIFEST_FANOUT for p in parts)
    assert len(parts) == (n + item_mod.MANIFEST_FANOUT - 1) // item_mod.MANIFEST_FANOUT


@given(st.data())
def test_any_single_byte_change_of_a_record_changes_its_id_or_is_refused(data):
    record = item_mod.build_record(public_fields())
    pos = data.draw(st.integers(0, len(record.raw) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != record.raw[pos]))
    mutated = record.raw[:pos] + bytes([byte]) + record.raw[pos + 1 :]
    try:
        parsed = item_mod.parse_record(mutated)
    except FormatError:
        return
    assert parsed.id != record.id  # a log entry naming record.id does not name this one
