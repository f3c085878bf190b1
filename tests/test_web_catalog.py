"""The mirror's in-memory catalog against a real store, in process: what is served and when.

An item is served only once every block is here (a half-replicated item would fail its
download), never from a non-public collection, and no longer once redacted.
"""

from __future__ import annotations

import os

from amanah.node import collections, ingest
from amanah.node import redact as redact_mod
from amanah.node.items import load_record
from amanah.node.web.catalog import PAGE_SIZE, Catalog
from amanah.node.web.search import SearchIndex
from amanah.protocol import ids

MiB = 1 << 20


def refresh(catalog: Catalog) -> None:
    catalog._recheck_at.clear()  # look at waiting items now, not after the back-off
    catalog.apply(catalog.scan())


def test_served_only_when_complete_public_and_not_redacted(node, tmp_path):
    public = collections.create(node, "Public", "public")
    closed = collections.create(node, "Closed", "closed")
    f = tmp_path / "video.mp4"
    f.write_bytes(os.urandom(3 * MiB))
    g = tmp_path / "closed.txt"
    g.write_text("closed\n")
    item = ingest.add(node, public, ingest.gather([f]), {"title_ar": "إفادة"}, lambda n: None)[0]
    ingest.add(node, closed, ingest.gather([g]), {"title_en": "Closed"}, lambda n: None)
    raw = ids.from_text(item.id, "itm")
    # As if the last block were still on its way: take it out, and the completeness marker.
    with node.store.write() as txn:
        block = load_record(node, txn, raw).inline_blocks()[-1]
        data = node.blobs.get(txn, block)
        node.blobs.remove(txn, block)
        txn.delete(public.id, db=node.store.db["complete"])

    catalog = Catalog(node, SearchIndex())
    refresh(catalog)
    assert set(catalog.collections) == {public.id_text}  # the closed one is never listed
    assert catalog.collections[public.id_text].items == []
    assert item.id not in catalog.items and catalog.index.query("افادة") == set()

    with node.store.write() as txn:
        node.blobs.put(txn, data)
    refresh(catalog)
    view = catalog.items[item.id]
    assert (view.size, view.sha256, view.mime) == (3 * MiB, item.sha256, "video/mp4")
    assert catalog.index.query("افادة") == {item.id}
    detail = catalog.detail(item.id)
    assert detail is not None and detail.meta["title_ar"] == "إفادة"
    assert detail.entry.body["item"] == raw

    redact_mod.redact(node, item.id, "consent withdrawn")
    refresh(catalog)
    assert item.id not in catalog.items and catalog.detail(item.id) is None
    assert catalog.collections[public.id_text].items == []
    assert catalog.index.query("افادة") == set()


def test_pages_are_newest_first_and_a_scan_with_nothing_new_changes_nothing(node, tmp_path):
    public = collections.create(node, "Public", "public")
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(PAGE_SIZE + 3):
        (folder / f"{i:03d}.txt").write_text(f"{i}\n")
    ingest.add(node, public, ingest.gather([folder]), {"title_en": "Doc"}, lambda n: None)
    catalog = Catalog(node, SearchIndex())
    refresh(catalog)
    view = catalog.collections[public.id_text]
    assert view.pages() == 2
    first, second = view.page(1), view.page(2)
    assert len(first) == PAGE_SIZE and len(second) == 3 and view.page(3) == []
    positions = [v.seq for v in first + second]
    assert positions == sorted(positions, reverse=True)
    generation = catalog.generation
    delta = catalog.scan()
    assert delta.empty()
    catalog.apply(delta)
    assert catalog.generation == generation


def test_a_redaction_in_another_collections_log_does_not_hide_the_item(node, tmp_path):
    """Any log may name and redact any item id (SPEC 11.6.3): only the item's home hides it."""
    from amanah.node.collections import now_ms

    home = collections.create(node, "Home", "public")
    other = collections.create(node, "Other", "public")
    f = tmp_path / "evidence.txt"
    f.write_text("evidence\n")
    item = ingest.add(node, home, ingest.gather([f]), {"title_en": "Evidence"})[0]
    raw = ids.from_text(item.id, "itm")
    catalog = Catalog(node, SearchIndex())
    refresh(catalog)
    assert [v.id for v in catalog.collections[home.id_text].items] == [item.id]
    with node.store.write() as txn:
        state = node.archive.require(txn, other.id)
        node.archive.append(txn, state, node.identity, "item", now_ms(), item=raw)
        node.archive.append(
            txn, state, node.identity, "redact", now_ms(), item=raw, reason="not yours to hide"
        )
    refresh(catalog)
    assert [v.id for v in catalog.collections[home.id_text].items] == [item.id]
    assert catalog.items[item.id].collection == home.id_text
    # and its home's own redaction does hide it
    redact_mod.redact(node, item.id, "consent withdrawn")
    refresh(catalog)
    assert item.id not in catalog.items and catalog.collections[home.id_text].items == []


def test_a_scan_reads_batches_of_items_in_bounded_transactions(node, tmp_path, monkeypatch):
    """A read transaction of a scan stops after ENTRIES_PER_TXN items named, not only entries
    (an entry may name 1,024 items); every item is still found, in log order."""
    from amanah.node.web import catalog as catalog_mod
    from amanah.protocol import log

    monkeypatch.setattr(log, "MAX_ITEMS", 3)
    public = collections.create(node, "Public", "public")
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(10):
        (folder / f"d{i}.txt").write_text(f"document {i}\n")
    added = ingest.add(node, public, ingest.gather([folder]), {})  # entries of 3, 3, 3 and 1
    monkeypatch.setattr(catalog_mod, "ENTRIES_PER_TXN", 2)
    reads: list[int] = []  # where each read of the collection's log starts
    real = node.archive.raw_entries

    def counted(txn, col, start=0, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if col == public.id:
            reads.append(start)
        return real(txn, col, start, *args, **kwargs)

    monkeypatch.setattr(node.archive, "raw_entries", counted)
    catalog = Catalog(node, SearchIndex())
    refresh(catalog)
    assert [v.id for v in catalog.collections[public.id_text].items] == [a.id for a in added]
    assert [(v.seq, v.slot) for v in catalog.collections[public.id_text].items][:4] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 0),
    ]
    assert reads == [1, 2, 3, 4]  # one entry (3 items, over the bound of 2) per transaction
