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
