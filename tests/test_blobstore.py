"""The blob-store contract, written once and run against every backend.

Each backend comes as a `Harness`: the blob store, plus the write and read transactions its
methods take (the LMDB store's; an object-store backend keeps its index there) and a way to
reopen it. To add a backend (S3 next), add a harness factory to BACKENDS; nothing below may
depend on how a backend lays out its bytes (LMDB-only checks are at the end, marked so).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from amanah.node.blobstore import BlobStore, LmdbBlobStore
from amanah.node.store import MAX_VALUE, Store
from amanah.protocol import ids
from amanah.protocol.errors import IntegrityError

MiB = 1 << 20


@dataclass
class Harness:
    blobs: BlobStore
    write: Callable[[], AbstractContextManager]
    read: Callable[[], AbstractContextManager]
    reopen: Callable[[], Harness]
    close: Callable[[], None]
    corrupt: Callable[[bytes], None]  # damage a stored block in place, as a failing disk would


def lmdb_backend(tmp_path: Path) -> Harness:
    store = Store(tmp_path / "store", 1 << 30, create=True)

    def reopen() -> Harness:
        store.close()
        return lmdb_backend(tmp_path)

    def corrupt(block_id: bytes) -> None:
        with store.write() as txn:
            key = block_id + b"\0\0"
            value = bytearray(txn.get(key, db=store.db["blocks"]) or b"\0")
            value[len(value) // 2] ^= 0x01
            txn.put(key, bytes(value), db=store.db["blocks"])

    return Harness(LmdbBlobStore(store), store.write, store.read, reopen, store.close, corrupt)


BACKENDS = {"lmdb": lmdb_backend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = BACKENDS[request.param](tmp_path)
    yield h
    h.close()


def expected_id(data: bytes) -> bytes:
    return bytes([0x12, 0x20]) + hashlib.sha256(data).digest()


def put(h: Harness, data: bytes, expect: bytes | None = None) -> bytes:
    with h.write() as txn:
        return h.blobs.put(txn, data, expect)


def get(h: Harness, block_id: bytes) -> bytes | None:
    with h.read() as txn:
        got = h.blobs.get(txn, block_id)
        return None if got is None else bytes(got)


def has(h: Harness, block_id: bytes) -> bool:
    with h.read() as txn:
        return h.blobs.has(txn, block_id)


def enum(h: Harness, after: bytes = b"", limit: int = 1000) -> list[bytes]:
    with h.read() as txn:
        return [bytes(b) for b in h.blobs.enumerate(txn, after, limit)]


# --- put / get / has ------------------------------------------------------------------------


def test_put_returns_the_sha256_multihash(backend):
    data = b"evidence"
    block_id = put(backend, data)
    assert block_id == expected_id(data)
    assert block_id == ids.sha256_id(data)
    assert len(block_id) == 34 and block_id[:2] == b"\x12\x20"


def test_get_and_has(backend):
    data = os.urandom(1000)
    block_id = put(backend, data)
    assert has(backend, block_id)
    assert get(backend, block_id) == data


def test_unknown_block_is_absent(backend):
    put(backend, b"something else")
    unknown = expected_id(b"never stored")
    assert not has(backend, unknown)
    assert get(backend, unknown) is None


def test_put_accepts_a_memoryview(backend):
    data = bytearray(os.urandom(70_000))
    block_id = put(backend, memoryview(data))  # what ingest hands over from its buffer ring
    assert block_id == expected_id(bytes(data))
    assert get(backend, block_id) == data


@pytest.mark.parametrize(
    "size",
    [0, 1, MAX_VALUE - 1, 65_520, 65_521, 2 * 65_520, 2 * 65_520 + 1, MiB, MiB + 16],
    ids=lambda s: f"{s}B",
)
def test_round_trip_at_fragment_boundaries(backend, size):
    data = os.urandom(size)
    block_id = put(backend, data)
    assert block_id == expected_id(data)
    assert has(backend, block_id)
    assert get(backend, block_id) == data


def test_empty_block_is_stored_and_not_confused_with_absent(backend):
    block_id = put(backend, b"")
    assert block_id == expected_id(b"")
    assert has(backend, block_id)
    got = get(backend, block_id)
    assert got is not None and got == b""
    assert enum(backend) == [block_id]


def test_neighbouring_multi_fragment_blocks_do_not_bleed_into_each_other(backend):
    blocks = [os.urandom(MiB + 16), os.urandom(65_521), os.urandom(3 * 65_520), b"", b"x"]
    stored = {put(backend, d): d for d in blocks}
    for block_id, data in stored.items():
        assert get(backend, block_id) == data


def test_blocks_survive_reopening(backend):
    data = os.urandom(MiB + 16)
    block_id = put(backend, data)
    backend = backend.reopen()
    try:
        assert get(backend, block_id) == data
    finally:
        backend.close()


# --- expect -----------------------------------------------------------------------------------


def test_expect_match_stores(backend):
    data = os.urandom(100)
    assert put(backend, data, expect=expected_id(data)) == expected_id(data)
    assert get(backend, expected_id(data)) == data


@pytest.mark.parametrize("size", [0, 100, 65_521, MiB + 16])
def test_expect_mismatch_stores_nothing(backend, size):
    data = os.urandom(size)
    wrong = expected_id(data + b"!")
    with pytest.raises(IntegrityError), backend.write() as txn:
        backend.blobs.put(txn, data, expect=wrong)
    assert not has(backend, expected_id(data))
    assert not has(backend, wrong)
    assert enum(backend) == []


def test_expect_mismatch_in_a_committed_transaction_stores_nothing(backend):
    data = os.urandom(65_521)
    with backend.write() as txn:
        with pytest.raises(IntegrityError):
            backend.blobs.put(txn, data, expect=expected_id(b"other"))
        kept = backend.blobs.put(txn, b"kept")
    assert enum(backend) == [kept]
    assert not has(backend, expected_id(data))


# --- idempotence, transactions ----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 10, MiB + 16])
def test_re_put_is_idempotent(backend, size):
    data = os.urandom(size)
    first = put(backend, data)
    second = put(backend, data)
    with backend.write() as txn:  # twice in one transaction too
        third = backend.blobs.put(txn, data)
        fourth = backend.blobs.put(txn, data)
    assert first == second == third == fourth
    assert enum(backend) == [first]
    assert get(backend, first) == data


@pytest.mark.parametrize("size", [0, 10, 65_521, MiB + 16])
def test_re_put_repairs_a_damaged_copy(backend, size):
    data = os.urandom(size)
    block_id = put(backend, data)
    backend.corrupt(block_id)
    damaged = get(backend, block_id)
    assert damaged is None or ids.sha256_id(damaged) != block_id  # `get` does not re-verify
    assert put(backend, data) == block_id
    assert get(backend, block_id) == data
    assert enum(backend) == [block_id]


def test_put_in_an_aborted_transaction_is_not_visible(backend):
    data = os.urandom(MiB + 16)
    with pytest.raises(RuntimeError), backend.write() as txn:
        backend.blobs.put(txn, data)
        raise RuntimeError("abort")
    assert not has(backend, expected_id(data))
    assert enum(backend) == []


def test_put_is_visible_inside_its_own_transaction(backend):
    data = os.urandom(70_000)
    with backend.write() as txn:
        block_id = backend.blobs.put(txn, data)
        assert backend.blobs.has(txn, block_id)
        assert bytes(backend.blobs.get(txn, block_id)) == data


# --- remove -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 10, 65_521, MiB + 16])
def test_remove(backend, size):
    data = os.urandom(size)
    neighbour = put(backend, os.urandom(size + 1))
    block_id = put(backend, data)
    with backend.write() as txn:
        assert backend.blobs.remove(txn, block_id) is True
    assert not has(backend, block_id)
    assert get(backend, block_id) is None
    assert enum(backend) == [neighbour]
    assert get(backend, neighbour) is not None


def test_remove_of_a_missing_block(backend):
    kept = put(backend, b"kept")
    with backend.write() as txn:
        assert backend.blobs.remove(txn, expected_id(b"never stored")) is False
    assert enum(backend) == [kept]


def test_remove_twice(backend):
    block_id = put(backend, b"once")
    with backend.write() as txn:
        assert backend.blobs.remove(txn, block_id) is True
    with backend.write() as txn:
        assert backend.blobs.remove(txn, block_id) is False


def test_remove_then_put_again(backend):
    data = os.urandom(MiB + 16)
    block_id = put(backend, data)
    with backend.write() as txn:
        backend.blobs.remove(txn, block_id)
    assert put(backend, data) == block_id
    assert get(backend, block_id) == data


def test_remove_of_the_last_block_in_order(backend):
    stored = sorted(put(backend, os.urandom(65_521)) for _ in range(3))
    with backend.write() as txn:
        assert backend.blobs.remove(txn, stored[-1])
    assert enum(backend) == stored[:-1]


# --- enumerate --------------------------------------------------------------------------------


@pytest.fixture
def many(backend) -> list[bytes]:
    """40 blocks of mixed sizes (some of several fragments), their ids in byte order."""
    sizes = [0, 1, 65_520, 65_521, 200_000] + [i * 37 for i in range(2, 37)]
    with backend.write() as txn:
        out = [backend.blobs.put(txn, os.urandom(s)) for s in sizes]
    return sorted(out)


def test_enumerate_is_in_byte_order_without_duplicates(backend, many):
    assert enum(backend) == many


def test_enumerate_empty_store(backend):
    assert enum(backend) == []
    assert enum(backend, after=expected_id(b"x")) == []


def test_enumerate_limit(backend, many):
    assert enum(backend, limit=1) == many[:1]
    assert enum(backend, limit=7) == many[:7]
    assert enum(backend, limit=len(many)) == many
    assert enum(backend, limit=len(many) + 5) == many


@pytest.mark.parametrize("k", [0, 1, 3, 4, 20, 38])
def test_enumerate_after_a_stored_id(backend, many, k):
    assert enum(backend, after=many[k]) == many[k + 1 :]
    assert enum(backend, after=many[k], limit=2) == many[k + 1 : k + 3]


def test_enumerate_after_the_last_id(backend, many):
    assert enum(backend, after=many[-1]) == []


def test_enumerate_after_an_id_not_stored(backend, many):
    # An id between two stored ones: the one just above many[5] in byte order.
    between = (int.from_bytes(many[5], "big") + 1).to_bytes(34, "big")
    assert many[5] < between < many[6]
    assert enum(backend, after=between) == many[6:]
    assert enum(backend, after=b"\x00" * 34) == many
    assert enum(backend, after=b"\xff" * 34) == []


def test_enumerate_pages_through_everything(backend, many):
    seen: list[bytes] = []
    after = b""
    while True:
        page = enum(backend, after=after, limit=6)
        if not page:
            break
        assert len(page) <= 6
        seen.extend(page)
        after = page[-1]
    assert seen == many


def test_enumerate_after_removal(backend, many):
    with backend.write() as txn:
        for b in many[::2]:
            backend.blobs.remove(txn, b)
    assert enum(backend) == many[1::2]
    assert enum(backend, after=many[0]) == many[1::2]


# --- LMDB backend only: how it lays out values ------------------------------------------------


@pytest.mark.parametrize(
    ("size", "fragments"),
    [(0, 1), (1, 1), (65_520, 1), (65_521, 2), (MiB, 17), (MiB + 16, 17)],
)
def test_lmdb_values_stay_within_max_value(tmp_path, size, fragments):
    store = Store(tmp_path / "store", 1 << 30, create=True)
    try:
        blobs = LmdbBlobStore(store)
        with store.write() as txn:
            block_id = blobs.put(txn, os.urandom(size))
        with store.read() as txn:
            rows = [(bytes(k), len(v)) for k, v in txn.cursor(store.db["blocks"])]
        assert MAX_VALUE == 65_520
        assert [k for k, _ in rows] == [block_id + i.to_bytes(2, "big") for i in range(fragments)]
        assert all(n <= MAX_VALUE for _, n in rows)
        assert sum(n for _, n in rows) == size
    finally:
        store.close()


def test_lmdb_missing_middle_fragment_gives_bytes_that_fail_the_hash(tmp_path):
    store = Store(tmp_path / "store", 1 << 30, create=True)
    try:
        blobs = LmdbBlobStore(store)
        data = os.urandom(3 * 65_520)
        with store.write() as txn:
            block_id = blobs.put(txn, data)
            txn.delete(block_id + (1).to_bytes(2, "big"), db=store.db["blocks"])
        with store.read() as txn:
            got = blobs.get(txn, block_id)
        assert got is not None and ids.sha256_id(got) != block_id
    finally:
        store.close()
