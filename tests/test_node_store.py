"""The LMDB store: opening, the schema version, transactions, a full map."""

from __future__ import annotations

import os
import stat

import pytest
from amanah.node import store as store_mod
from amanah.node.errors import HomeError, StoreFull
from amanah.node.store import MAX_VALUE, SCHEMA_VERSION, Store

MiB = 1 << 20


def test_new_store_directory_is_private_and_reopens(tmp_path):
    path = tmp_path / "store"
    Store(path, 1 << 30, create=True).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700  # traversable by its owner, no one else
    for f in path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    store = Store(path, 1 << 30)
    with store.read() as txn:
        assert txn.get(b"schema", db=store.db["meta"]) == SCHEMA_VERSION
    store.close()


def test_missing_store(tmp_path):
    with pytest.raises(HomeError, match="no store"):
        Store(tmp_path / "store", 1 << 30)


def test_schema_version_is_checked(tmp_path):
    path = tmp_path / "store"
    store = Store(path, 1 << 30, create=True)
    with store.write() as txn:
        txn.put(b"schema", b"99", db=store.db["meta"])
    store.close()
    with pytest.raises(HomeError, match="schema"):
        Store(path, 1 << 30)


def test_write_commits_or_aborts(tmp_path):
    store = Store(tmp_path / "store", 1 << 30, create=True)
    try:
        db = store.db["records"]
        with store.write() as txn:
            txn.put(b"kept", b"1", db=db)
        with pytest.raises(KeyError), store.write() as txn:
            txn.put(b"dropped", b"2", db=db)
            raise KeyError("boom")
        with store.read() as txn:
            assert txn.get(b"kept", db=db) == b"1"
            assert txn.get(b"dropped", db=db) is None
    finally:
        store.close()


def test_full_map_is_store_full_and_rolled_back(tmp_path):
    store = Store(tmp_path / "store", 2 * MiB, create=True)
    try:
        db = store.db["blocks"]
        with store.write() as txn:
            txn.put(b"before", b"x" * 1000, db=db)
        with pytest.raises(StoreFull, match="map_size_gib"), store.write() as txn:
            for i in range(64):  # 4 MiB in values of at most MAX_VALUE bytes
                txn.put(i.to_bytes(2, "big"), os.urandom(MAX_VALUE), db=db)
        with store.read() as txn:
            assert [bytes(k) for k in txn.cursor(db).iternext(values=False)] == [b"before"]
        with store.write() as txn:  # still usable
            txn.put(b"after", b"y", db=db)
    finally:
        store.close()


def _mapped_kib(path) -> int:
    """Resident KiB of this process's mappings of `path`'s data.mdb (from /proc/self/smaps)."""
    data = str((path / "data.mdb").resolve())
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if "-" in line.split()[0] and len(line.split()) >= 5:
                inside = line.rstrip().endswith(data)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_release_map_drops_resident_pages_and_follows_a_remap(tmp_path):
    store = Store(tmp_path, 1 << 30, create=True)
    value = os.urandom(MAX_VALUE)
    with store.write() as txn:
        for i in range(512):  # 32 MiB
            txn.put(i.to_bytes(4, "big"), value, db=store.db["meta"])

    def read_all() -> None:
        with store.read() as txn:
            for i in range(512):
                assert txn.get(i.to_bytes(4, "big"), db=store.db["meta"]) == value

    read_all()
    assert _mapped_kib(tmp_path) > 16 << 10
    store.release_map()
    assert _mapped_kib(tmp_path) < 1 << 10
    store._remap()  # the map moves: the ranges are found again, never advised stale
    read_all()
    store.release_map()
    assert _mapped_kib(tmp_path) < 1 << 10
    read_all()  # what was released reads back the same
    store.close()
    store.release_map()  # a no-op once closed


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="Linux only")
def test_trim_map_releases_only_once_enough_is_resident(tmp_path, monkeypatch):
    store = Store(tmp_path, 1 << 30, create=True)
    value = os.urandom(MAX_VALUE)
    with store.write() as txn:
        for i in range(512):  # 32 MiB
            txn.put(i.to_bytes(4, "big"), value, db=store.db["meta"])

    def read(n: int) -> None:
        with store.read() as txn:
            for i in range(n):
                assert txn.get(i.to_bytes(4, "big"), db=store.db["meta"]) == value

    monkeypatch.setattr(store_mod, "TRIM_ABOVE", 8 << 20)
    store.release_map()
    store.trim_map()  # sets where it counts from
    read(32)  # 2 MiB: kept mapped
    store.trim_map()
    assert _mapped_kib(tmp_path) > 1 << 10
    read(512)  # 32 MiB: above the bound, released
    store.trim_map()
    assert _mapped_kib(tmp_path) < 1 << 10
    store.close()
