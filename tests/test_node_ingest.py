"""Ingest, read-back and verify in-process, on a real LMDB: manifests, and a full map.

Items of more than INLINE_BLOCKS blocks (256 MiB) list manifest blocks instead of their blocks;
such files are too slow to make here, so INLINE_BLOCKS and MANIFEST_FANOUT are lowered (the
protocol module's constants, read at call time by ingest, items and verify alike).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import lmdb
import pytest
from amanah.node import collections, ingest, items, redact, verify
from amanah.node import config as config_mod
from amanah.node.errors import DamagedError, StoreFull
from amanah.node.home import Node, init_home
from amanah.protocol import ids
from amanah.protocol import item as item_mod

from tests.nodeutil import MiB, distinct_chunks

INLINE, FANOUT = 2, 3


@pytest.fixture
def small_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(item_mod, "INLINE_BLOCKS", INLINE)
    monkeypatch.setattr(item_mod, "MANIFEST_FANOUT", FANOUT)


def add_file(node: Node, name: str, path: Path, meta: dict | None = None) -> ingest.Added:
    info = collections.resolve(node, name)
    [added] = ingest.add(node, info, ingest.gather([path]), meta or {})
    return added


def record_of(node: Node, item: str) -> item_mod.ItemRecord:
    with node.store.read() as txn:
        return items.load_record(node, txn, ids.from_text(item, "itm"))


def stored_blocks(node: Node) -> set[bytes]:
    with node.store.read() as txn:
        return {bytes(k[:-2]) for k in txn.cursor(node.store.db["blocks"]).iternext(values=False)}


def everything(node: Node) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every key and value of every named database (to show nothing changed)."""
    with node.store.read() as txn:
        return {
            name: [(bytes(k), bytes(v)) for k, v in txn.cursor(db)]
            for name, db in node.store.db.items()
        }


# --- manifests --------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["public", "closed"])
@pytest.mark.parametrize(
    "chunks",
    [INLINE, INLINE + 1, FANOUT * 2, FANOUT * 2 + 1],
    ids=["inline", "one-manifest", "two-full-manifests", "three-manifests"],
)
def test_manifest_round_trip(node, small_manifests, tmp_path, tier, chunks):
    collections.create(node, "c", tier)
    path = tmp_path / "f.bin"
    sha = distinct_chunks(path, chunks - 1, extra=12_345)
    added = add_file(node, "c", path)
    assert added.sha256 == sha

    record = record_of(node, added.id)
    manifests = -(-chunks // FANOUT) if chunks > INLINE else 0
    if manifests:
        assert record.inline_blocks() is None
        assert len(record.manifest_ids()) == manifests
        with node.store.read() as txn:
            listed = items.block_ids(node, txn, record)
            first = item_mod.decode_manifest(
                bytes(node.blobs.get(txn, record.manifest_ids()[0])), FANOUT
            )
        assert first == listed[:FANOUT]
    else:
        assert len(record.inline_blocks()) == chunks and record.manifest_ids() == []
    with node.store.read() as txn:
        listed = items.block_ids(node, txn, record)
    assert len(listed) == chunks
    assert stored_blocks(node) == set(listed) | set(record.manifest_ids())

    dest, meta = items.get(node, added.id, str(tmp_path / "out.bin"))
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha == meta["sha256"]

    report = verify.verify_all(node)
    assert report.ok, report.damaged
    assert report.blocks == chunks + manifests and report.items == 1

    redact.redact(node, added.id, "test")
    assert stored_blocks(node) == set()  # manifest blocks are released too
    assert verify.verify_all(node).ok


def test_damaged_manifest_block(node, small_manifests, tmp_path):
    collections.create(node, "c", "public")
    path = tmp_path / "f.bin"
    distinct_chunks(path, 7)
    added = add_file(node, "c", path)
    manifest = record_of(node, added.id).manifest_ids()[1]
    with node.store.write() as txn:
        key = manifest + b"\0\0"
        value = bytearray(txn.get(key, db=node.store.db["blocks"]))
        value[-1] ^= 0xFF
        txn.put(key, bytes(value), db=node.store.db["blocks"])
    report = verify.verify_all(node)
    assert [(d.kind, d.item) for d in report.damaged] == [("record", added.id)]
    assert ids.to_text("blk", manifest) in report.damaged[0].problem
    with pytest.raises(DamagedError):
        items.get(node, added.id, str(tmp_path / "out.bin"))
    assert not (tmp_path / "out.bin").exists()
    assert not list(tmp_path.glob(".*partial"))


def test_get_to_a_folder_and_sizes_in_process(node, tmp_path):
    collections.create(node, "c", "trusted")
    for size in (0, MiB, MiB + 1):
        path = tmp_path / f"in{size}.bin"
        data = os.urandom(size)
        path.write_bytes(data)
        added = add_file(node, "c", path, {"title_ar": "اختبار"})
        out = tmp_path / f"out{size}"
        out.mkdir()
        dest, meta = items.get(node, added.id, str(out))
        assert dest == out / path.name and dest.read_bytes() == data
        assert meta["title_ar"] == "اختبار" and meta["size"] == size


# --- a full LMDB map ---------------------------------------------------------------------------


def tiny_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mib: int) -> Node:
    """A node whose LMDB map is `mib` MiB. config.toml allows 1 GiB at least (too much to fill
    quickly), so the map size the config reports is lowered in-process; Node opens the real
    Store with it, and LMDB enforces it."""
    home = tmp_path / "tiny"
    init_home(home, "tiny", None)
    monkeypatch.setattr(config_mod.Config, "map_size", property(lambda self: mib * MiB))
    node = Node(home, lambda: None)
    collections.create(node, "c", "public")
    collections.create(node, "k", "closed")
    return node


@pytest.fixture
def full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    node = tiny_node(tmp_path, monkeypatch, 6)
    kept = tmp_path / "kept.bin"
    kept.write_bytes(os.urandom(300_000))
    first = add_file(node, "c", kept)
    yield node, first, kept
    node.close()


@pytest.mark.parametrize(
    ("collection", "size"),
    [("c", 8 * MiB), ("k", 8 * MiB), ("c", 900_000)],
    ids=["streamed-public", "streamed-closed", "small-file"],
)
def test_full_map_rolls_back_and_keeps_what_was_stored(full, tmp_path, collection, size):
    node, first, kept = full
    if size < MiB:  # fill the map with committed items first, so that one small file overflows
        for i in range(30):
            p = tmp_path / f"fill{i}"
            p.write_bytes(os.urandom(size))
            try:
                add_file(node, collection, p)
            except (StoreFull, lmdb.MapFullError):
                break
        else:
            pytest.fail("the 6 MiB map never filled")
    before = everything(node)
    listed = list(items.list_items(node, collections.resolve(node, collection).state))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(size))
    with pytest.raises((StoreFull, lmdb.MapFullError)):
        add_file(node, collection, big)
    assert everything(node) == before  # nothing half-stored
    assert list(items.list_items(node, collections.resolve(node, collection).state)) == listed
    report = verify.verify_all(node)
    assert report.ok, report.damaged
    dest, _ = items.get(node, first.id, str(tmp_path / "back.bin"))
    assert dest.read_bytes() == kept.read_bytes()
    assert list((node.home / "run").iterdir()) == []


def test_full_map_is_reported_as_store_full(full, tmp_path):
    node, _, _ = full
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 * MiB))
    with pytest.raises(StoreFull, match="store is full"):
        add_file(node, "c", big)


@pytest.fixture
def checkpointed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A 40 MiB map, and an add of a 60 MiB file that fails after committing checkpoints."""
    node = tiny_node(tmp_path, monkeypatch, 40)
    kept = tmp_path / "kept.bin"
    kept.write_bytes(os.urandom(2 * MiB + 5))
    first = add_file(node, "k", kept)
    blocks = stored_blocks(node)
    distinct_chunks(tmp_path / "huge.bin", 60)
    with pytest.raises((StoreFull, lmdb.MapFullError)):
        add_file(node, "k", tmp_path / "huge.bin")
    yield node, first, kept, blocks
    node.close()


def test_full_map_after_checkpoints_keeps_the_store_consistent(checkpointed, tmp_path):
    node, first, kept, blocks = checkpointed
    report = verify.verify_all(node)
    assert report.ok and report.items == 1
    [row] = items.list_items(node, collections.resolve(node, "k").state)
    assert row["id"] == first.id
    # the next add removes what the failed one committed, and fits again
    small = tmp_path / "small.bin"
    small.write_bytes(b"after the failure")
    add_file(node, "k", small)
    with node.store.read() as txn:
        assert txn.stat(node.store.db["pending"])["entries"] == 0
    assert len(stored_blocks(node) - blocks) == 1
    dest, _ = items.get(node, first.id, str(tmp_path / "back.bin"))
    assert dest.read_bytes() == kept.read_bytes()


def test_failed_add_leaves_no_blocks_behind(checkpointed):
    node, _, _, blocks = checkpointed
    with node.store.read() as txn:
        assert txn.stat(node.store.db["pending"])["entries"] == 0
    assert stored_blocks(node) == blocks


def test_many_small_files_are_prepared_by_a_child_and_its_errors_surface(node, tmp_path):
    """Past ingest.PARALLEL_MIN small files a forked child prepares them: the items are the
    same, in order; a file gone by the time the child reads it fails the add cleanly."""
    import os as _os

    from amanah.node import collections as collections_mod
    from amanah.node import ingest as ingest_mod
    from amanah.node import items as items_mod
    from amanah.node.errors import InvalidInput
    from amanah.node.verify import verify_all

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(ingest_mod.PARALLEL_MIN + 10):
        (folder / f"f{i:04d}.txt").write_bytes(_os.urandom(100 + i))
    info = collections_mod.create(node, "many", "closed")
    sources = ingest_mod.gather([folder])
    added = ingest_mod.add(node, info, sources, {"title_en": "batch"})
    assert [a.path for a in added] == [str(s.path) for s in sources]
    listed = {r["id"]: r for r in items_mod.list_items(node, info.state)}
    for a, s in zip(added, sources, strict=True):
        assert listed[a.id]["metadata"]["filename"] == s.name
        assert listed[a.id]["sha256"] == hashlib.sha256(s.path.read_bytes()).hexdigest()
    assert verify_all(node).ok

    before = len(list(items_mod.list_items(node, info.state)))
    again = ingest_mod.gather([folder])
    _os.unlink(again[100].path)  # vanishes after gather, before the child reads it
    with pytest.raises(InvalidInput, match="f0100"):
        ingest_mod.add(node, info, again, {})
    assert len(list(items_mod.list_items(node, info.state))) == before
    assert verify_all(node).ok


def test_a_store_of_schema_1_is_upgraded_with_its_redactions(node, tmp_path):
    from amanah.node import store as store_mod
    from amanah.node.errors import NotFound

    from tests.conftest import PASSPHRASE

    collections.create(node, "c", "public")
    kept, gone = (tmp_path / "kept.txt", tmp_path / "gone.txt")
    kept.write_bytes(b"kept")
    gone.write_bytes(b"gone")
    kept_item, gone_item = add_file(node, "c", kept), add_file(node, "c", gone)
    redact.redact(node, gone_item.id, "test")
    col = collections.resolve(node, "c").state.id
    raw = ids.from_text(gone_item.id, "itm")
    with node.store.write() as txn:  # as version 1 wrote it: keyed by the item id alone
        seq = txn.pop(col + raw, db=node.store.db["redacted"])
        txn.put(raw, seq, db=node.store.db["redacted"])
        txn.put(b"schema", b"1", db=node.store.db["meta"])
    home = node.home
    node.close()

    again = Node(home, lambda: PASSPHRASE)
    try:
        with again.store.read() as txn:
            assert txn.get(b"schema", db=again.store.db["meta"]) == store_mod.SCHEMA_VERSION
            assert [bytes(k) for k, _ in txn.cursor(again.store.db["redacted"])] == [col + raw]
        with pytest.raises(NotFound, match="redacted"):
            items.get(again, gone_item.id, str(tmp_path / "out"))
        dest, _ = items.get(again, kept_item.id, str(tmp_path / "out"))
        assert dest.read_bytes() == b"kept"
        assert verify.verify_all(again).ok
    finally:
        again.close()


def test_a_batch_is_signed_in_entries_of_at_most_max_items_each_commit(node, tmp_path, monkeypatch):
    """Each commit signs the items finished since the last entry, at most log.MAX_ITEMS an
    entry (SPEC 4.5, 6.6): no item is ever committed without an entry naming it."""
    from amanah.protocol import log

    monkeypatch.setattr(log, "MAX_ITEMS", 4)
    monkeypatch.setattr(ingest, "BATCH_ITEMS", 10)
    folder = tmp_path / "batch"
    folder.mkdir()
    for i in range(23):
        (folder / f"f{i:02d}.txt").write_bytes(os.urandom(50 + i))
    info = collections.create(node, "batch", "trusted")
    added = ingest.add(node, info, ingest.gather([folder]), {})
    with node.store.read() as txn:
        state = node.archive.require(txn, info.state.id)
        entries = [node.archive.entry(txn, state.id, seq) for seq in range(1, state.length)]
        where = {
            a.id: txn.get(ids.from_text(a.id, "itm"), db=node.store.db["items"]) for a in added
        }
    sizes = [len(log.named_items(e.body)) for e in entries]
    assert sizes == [4, 4, 2, 4, 4, 2, 3]  # commits of 10, 10 and 3 items
    assert ["item" in e.body for e in entries] == [False] * 7  # 2 or more: always "items"
    named = [ids.to_text("itm", i) for e in entries for i in log.named_items(e.body)]
    assert named == [a.id for a in added]  # every item once, in the order added
    for e in entries:
        for i in log.named_items(e.body):
            assert where[ids.to_text("itm", i)] == state.id + e.seq.to_bytes(8, "big")
    newest = [r["id"] for r in items.list_items(node, state, newest_first=True)]
    assert newest == [a.id for a in reversed(added)]
    assert [r["id"] for r in items.list_items(node, state, skip=21)] == [added[-2].id, added[-1].id]
    assert verify.verify_all(node).ok
    for a in (added[0], added[5], added[-1]):  # one item's check finds it in its batch's entry
        report = verify.verify_item(node, items.locate(node, a.id))
        assert report.ok and report.entries == 1


def test_a_failed_add_counts_the_files_a_large_files_checkpoint_committed(node, tmp_path):
    """Small files finished before a large file are signed and committed with its first 16 MiB
    checkpoint: they stay, and the error says so when a later file fails."""
    from amanah.node.errors import InvalidInput

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(3):
        (folder / f"a{i}.txt").write_bytes(os.urandom(300 + i))
    distinct_chunks(folder / "b_large.bin", 20)  # one checkpoint at 16 MiB
    (folder / "c_gone.txt").write_bytes(b"read after the large file")
    info = collections.create(node, "mixed", "closed")
    sources = ingest.gather([folder])
    assert [s.path.name for s in sources][-2:] == ["b_large.bin", "c_gone.txt"]
    os.unlink(folder / "c_gone.txt")  # vanishes after gather
    with pytest.raises(InvalidInput, match=r"\(3 of 5 files were added before this\)"):
        ingest.add(node, info, sources, {})
    rows = list(items.list_items(node, info.state))
    assert sorted(r["metadata"]["filename"] for r in rows) == [f"mixed/a{i}.txt" for i in range(3)]
    assert verify.verify_all(node).ok
