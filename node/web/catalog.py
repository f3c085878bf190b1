"""What the mirror serves, held in memory: its public collections, their items, the search index.

Served: every collection this node holds whose tier is public and that it owns or holds by a
"mirror" grant in the collection's log. Nothing else is ever listed, found or streamed, even if
present in the store. An item is served once this node holds its record and every one of its
blocks (a half-replicated item would fail its download), and stops being served when redacted.

Refreshing: `scan` (run in a worker thread: it reads LMDB, in short transactions) compares each
collection's head and log length with what the catalog last saw, reads only the new log entries,
and rechecks items still waiting for their record or blocks; it returns a `Delta`, which `apply`
folds in on the event loop thread, the only thread that mutates the catalog, so a request never
sees a half-applied change. A scan with nothing new costs one small read transaction.

Immutable per-item facts (the record, the published metadata, the signed entry) are loaded on
first request into a bounded LRU of `ItemDetail`, keyed by item id; rendered bodies hang off it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import lmdb
from amanah.protocol import ids, log
from amanah.protocol import metadata as metadata_mod
from amanah.protocol.errors import FormatError
from amanah.protocol.item import MANIFEST_FANOUT, ItemRecord, decode_manifest
from amanah.protocol.log import CollectionState

from .. import items as items_mod
from .. import peers as peers_mod
from ..errors import DamagedError
from ..home import Node
from .search import SearchIndex

logger = logging.getLogger("amanah.web")

PAGE_SIZE = 50
ENTRIES_PER_TXN = 5_000  # log entries, or items they name, read per read transaction in a scan
DETAIL_CACHE = 4_096  # items whose full details (and rendered bodies) stay in memory


def rfc3339_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class ItemView:
    """What lists, search results and feeds show of an item: small, kept for every item."""

    id: str
    collection: str
    seq: int
    slot: int  # its place among the items its log entry adds (SPEC 4.5): 0 for the first
    at: int  # the time in its log entry (ms): newest first across collections
    size: int
    sha256: str
    mime: str
    filename: str
    title_en: str | None
    title_ar: str | None
    captured_at: str | None

    def summary(self) -> dict:
        return {
            "id": self.id,
            "collection": self.collection,
            "position": self.seq,
            "title_en": self.title_en,
            "title_ar": self.title_ar,
            "filename": self.filename,
            "mime": self.mime,
            "size": self.size,
            "sha256": self.sha256,
            "captured_at": self.captured_at,
            "signed_at": rfc3339_ms(self.at),
            "links": {
                "self": f"/api/v1/items/{self.id}",
                "content": f"/api/v1/items/{self.id}/content",
                "html": f"/items/{self.id}",
            },
        }


def _log_order(view: ItemView) -> tuple[int, int]:
    return view.seq, view.slot


@dataclass
class CollectionView:
    id: str
    raw: bytes
    name: str
    owner: bytes
    owner_peer_id: str
    created_at: int
    length: int
    head: bytes
    updated_at: int  # time of its newest log entry (ms)
    items: list[ItemView] = field(default_factory=list)  # served items, in log order

    def pages(self) -> int:
        return max(1, -(-len(self.items) // PAGE_SIZE))

    def page(self, number: int) -> list[ItemView]:
        """Page `number` (1-based) of the items, newest (highest log position) first."""
        end = len(self.items) - (number - 1) * PAGE_SIZE
        if end <= 0:
            return []
        return self.items[max(0, end - PAGE_SIZE) : end][::-1]


@dataclass
class Pending:
    """An item whose log entry is here but whose record or blocks are not all here yet."""

    seq: int
    slot: int
    at: int
    next_block: int = 0  # blocks before this one were present at the last look


@dataclass
class Delta:
    collections: dict[str, CollectionView] = field(default_factory=dict)  # new or changed
    added: dict[str, list[ItemView]] = field(default_factory=dict)  # in log order
    texts: dict[str, list[str]] = field(default_factory=dict)  # item id -> what search indexes
    # (collection, item) of each redaction seen: it hides the item only if that collection is
    # the item's home (any log may name and redact any item id: SPEC 11.6.3)
    removed: set[tuple[str, str]] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)  # collections no longer served
    pending: dict[str, dict[bytes, Pending]] = field(default_factory=dict)
    names: dict[bytes, str] | None = None  # owner key -> name, when the peer table changed

    def empty(self) -> bool:
        return not (
            self.collections
            or self.added
            or self.removed
            or self.dropped
            or self.pending
            or self.names is not None
        )


@dataclass
class ItemDetail:
    """Everything an item page shows, loaded once (all of it is immutable but the owner's name)."""

    view: ItemView
    record: ItemRecord
    meta: dict  # the published part only (protocol.metadata.published)
    entry: log.Entry
    owner: bytes
    owner_peer_id: str
    owner_name: str
    collection_name: str
    rendered: dict[object, bytes] = field(default_factory=dict)  # cached bodies by kind

    @property
    def record_sha256(self) -> str:
        return self.record.id[2:].hex()


class Catalog:
    def __init__(self, node: Node, search_index: SearchIndex) -> None:
        self.node = node
        self.me = node.public_key
        self.collections: dict[str, CollectionView] = {}
        self.items: dict[str, ItemView] = {}
        self.index = search_index
        self.owner_names: dict[bytes, str] = {}
        self.generation = 0  # bumps whenever what is served changes (list caches key on it)
        self._pending: dict[str, dict[bytes, Pending]] = {}
        self._recheck_at: dict[str, float] = {}  # collection -> when to look at its waiting items
        self._details: OrderedDict[str, ItemDetail] = OrderedDict()

    # --- what is served -------------------------------------------------------------------------

    def serves(self, state: CollectionState) -> bool:
        if state.tier != "public":
            return False
        return state.owner == self.me or state.grants.get(self.me) == "mirror"

    def owner_name(self, owner: bytes) -> str:
        return self.owner_names.get(owner, "")

    def newest_first(self, item_ids: set[str]) -> list[ItemView]:
        views = [self.items[i] for i in item_ids if i in self.items]
        views.sort(key=lambda v: (v.at, v.seq, v.slot, v.id), reverse=True)
        return views

    # --- scanning (worker thread: reads only) ---------------------------------------------------

    def scan(self) -> Delta:
        node = self.node
        delta = Delta()
        with node.store.read() as txn:
            states = [s for s in node.archive.states(txn) if self.serves(s)]
            complete = {s.id: node.archive.complete_at(txn, s.id) for s in states}
        served = {ids.to_text("col", s.id): s for s in states}
        delta.dropped = set(self.collections) - set(served)
        now = time.monotonic()
        for text_id, state in served.items():
            known = self.collections.get(text_id)
            waiting = self._pending.get(text_id, {})
            # Items waiting for their blocks are looked at again only after ten times what
            # the last look took: during a long first sync the scans stay a small share of
            # the work, however many items wait.
            recheck = bool(waiting) and now >= self._recheck_at.get(text_id, 0.0)
            if known is not None and known.head == state.head and not recheck:
                continue
            started = time.monotonic()
            self._scan_collection(
                text_id, state, known, waiting, recheck, complete[state.id], delta
            )
            if recheck:
                took = time.monotonic() - started
                self._recheck_at[text_id] = started + 10 * took
        names = self._read_names()
        if names != self.owner_names:
            delta.names = names
        return delta

    def _read_names(self) -> dict[bytes, str]:
        names = {p.public_key: p.name for p in peers_mod.all_peers(self.node)}
        names[self.me] = self.node.name
        return names

    def _scan_collection(
        self,
        text_id: str,
        state: CollectionState,
        known: CollectionView | None,
        waiting: dict[bytes, Pending],
        recheck: bool,
        complete_at: int | None,
        delta: Delta,
    ) -> None:
        node = self.node
        fresh: dict[bytes, Pending] = {}  # items first seen in this scan
        redacted: set[bytes] = set()
        if known is None:
            with node.store.read() as txn:
                genesis = node.archive.entry(txn, state.id, 0)
            view = CollectionView(
                text_id,
                state.id,
                genesis.body["name"],
                state.owner,
                ids.peer_id_from_public_key(state.owner),
                genesis.body["at"],
                1,
                state.id,
                genesis.body["at"],
            )
        else:
            view = known
        start = view.length
        updated_at = view.updated_at
        # New log entries: items to consider, redactions to apply. Read in bounded batches so
        # no read transaction stays open for long (a long reader pins pages and grows the file).
        while start < state.length:
            end = min(state.length, start + ENTRIES_PER_TXN)
            named = 0  # items named so far in this transaction: an entry may name 1,024
            with node.store.read() as txn:
                for seq, raw in node.archive.raw_entries(txn, state.id, start):
                    if seq >= end or named >= ENTRIES_PER_TXN:
                        end = min(end, seq)
                        break
                    try:
                        body = log.parse_entry(bytes(raw)).body
                    except FormatError as exc:  # stored entries were verified on arrival
                        logger.error("collection %s entry %d is damaged: %s", text_id, seq, exc)
                        continue
                    updated_at = max(updated_at, body["at"])
                    if body["type"] == "item":
                        batch = log.named_items(body)
                        for slot, item_id in enumerate(batch):
                            fresh[item_id] = Pending(seq, slot, body["at"])
                        named += len(batch)
                    elif body["type"] == "redact":
                        fresh.pop(body["item"], None)
                        redacted.add(body["item"])
                        delta.removed.add((text_id, ids.to_text("itm", body["item"])))
            start = end
        all_present = complete_at == state.length
        added = self._resolve(state, fresh, all_present, delta.texts) if fresh else []
        old = waiting  # not copied unless it changes: it may hold a million items
        if redacted & old.keys():
            old = {k: w for k, w in old.items() if k not in redacted}
        if old and (recheck or all_present):
            old = dict(old)
            added += self._resolve(state, old, all_present, delta.texts)
        pending = {**old, **fresh} if fresh else old
        changed_view = CollectionView(
            view.id,
            view.raw,
            view.name,
            view.owner,
            view.owner_peer_id,
            view.created_at,
            state.length,
            state.head,
            updated_at,
            view.items,  # replaced by apply()
        )
        if known is None or known.head != state.head or added:
            delta.collections[text_id] = changed_view
        if added:
            delta.added[text_id] = sorted(added, key=_log_order)
        if known is None or pending is not waiting:
            delta.pending[text_id] = pending

    def _resolve(
        self,
        state: CollectionState,
        pending: dict[bytes, Pending],
        all_present: bool,
        texts: dict[str, list[str]],
    ) -> list[ItemView]:
        """Move the pending items whose record and blocks are all here into views (in place)."""
        node = self.node
        db = node.store.db
        out: list[ItemView] = []
        todo = list(pending.items())
        for i in range(0, len(todo), ENTRIES_PER_TXN):
            with node.store.read() as txn:
                for raw_id, wait in todo[i : i + ENTRIES_PER_TXN]:
                    if txn.get(state.id + raw_id, db=db["redacted"]) is not None:
                        del pending[raw_id]
                        continue
                    if txn.get(raw_id, db=db["records"]) is None:
                        continue  # not replicated yet
                    try:
                        record = items_mod.load_record(node, txn, raw_id)
                        items_mod.check_fits(record, state)
                    except DamagedError as exc:
                        logger.warning("not serving an item: %s", exc)
                        continue  # a repair from a healthy peer may bring it back
                    if not all_present:
                        wait.next_block = self._first_missing(txn, record, wait.next_block)
                        if wait.next_block < record.block_count:
                            continue
                    del pending[raw_id]
                    view = self._view(record, wait)
                    texts[view.id] = _searchable(record.fields["meta"])
                    out.append(view)
        return out

    def _first_missing(self, txn: lmdb.Transaction, record: ItemRecord, start: int) -> int:
        """The index of the first block from `start` on that this node lacks (or block_count)."""
        blobs = self.node.blobs
        inline = record.inline_blocks()
        if inline is not None:
            for index in range(start, len(inline)):
                if not blobs.has(txn, inline[index]):
                    return index
            return len(inline)
        total = record.block_count
        manifests = record.manifest_ids()
        for m in range(start // MANIFEST_FANOUT, len(manifests)):
            data = blobs.get(txn, manifests[m])
            if data is None or ids.sha256_id(data) != manifests[m]:
                return m * MANIFEST_FANOUT
            expected = min(MANIFEST_FANOUT, total - m * MANIFEST_FANOUT)
            try:
                block_list = decode_manifest(bytes(data), expected)
            except Exception:  # an invalid manifest: wait for a repair
                return m * MANIFEST_FANOUT
            first = max(start - m * MANIFEST_FANOUT, 0)
            for offset in range(first, len(block_list)):
                if not blobs.has(txn, block_list[offset]):
                    return m * MANIFEST_FANOUT + offset
        return total

    @staticmethod
    def _view(record: ItemRecord, wait: Pending) -> ItemView:
        meta = record.fields["meta"]
        return ItemView(
            ids.to_text("itm", record.id),
            ids.to_text("col", record.collection),
            wait.seq,
            wait.slot,
            wait.at,
            meta["size"],
            meta["sha256"],
            meta["mime"],
            meta["filename"],
            meta.get("title_en"),
            meta.get("title_ar"),
            meta.get("captured_at"),
        )

    # --- applying (event loop thread) -----------------------------------------------------------

    def apply(self, delta: Delta) -> None:
        if delta.empty():
            return
        self.generation += 1
        for col in delta.dropped:
            for view in self.collections.pop(col).items:
                self._forget(view.id)
            self._pending.pop(col, None)
        gone = {i for c, i in delta.removed if i in self.items and self.items[i].collection == c}
        touched = {self.items[i].collection for i in gone}
        for item_id in gone:
            self._forget(item_id)
        for col, view in delta.collections.items():
            old = self.collections.get(col)
            items = old.items if old is not None else []
            added = delta.added.get(col, [])
            if added:  # in place: this thread alone reads and writes the lists
                # an item that waited for its blocks comes after later ones
                late = bool(items) and _log_order(added[0]) < _log_order(items[-1])
                items.extend(added)
                if late:
                    items.sort(key=_log_order)
            view.items = items
            self.collections[col] = view
            for item in added:
                self.items[item.id] = item
                self.index.add(item.id, delta.texts.get(item.id, ()))
        for col in touched:
            view = self.collections.get(col)
            if view is not None:
                view.items = [v for v in view.items if v.id not in gone]
        for col, pending in delta.pending.items():
            if col in self.collections:
                self._pending[col] = pending
        if delta.names is not None:
            self.owner_names = delta.names
            self._details.clear()  # pages and JSON show the owner's name

    def _forget(self, item_id: str) -> None:
        self.items.pop(item_id, None)
        self.index.remove(item_id)
        self._details.pop(item_id, None)

    # --- details (event loop thread; one short read transaction on a cache miss) ---------------

    def detail(self, item_id: str) -> ItemDetail | None:
        view = self.items.get(item_id)
        if view is None:
            return None
        cached = self._details.get(item_id)
        if cached is not None:
            self._details.move_to_end(item_id)
            return cached
        node = self.node
        raw_id = ids.from_text(item_id, "itm")
        collection = self.collections[view.collection]
        try:
            with node.store.read() as txn:
                if items_mod.redaction(node, txn, collection.raw, raw_id) is not None:
                    return None  # redacted since the last scan
                record = items_mod.load_record(node, txn, raw_id)
                entry = node.archive.entry(txn, collection.raw, view.seq)
        except DamagedError as exc:
            logger.error("cannot serve item %s: %s", item_id, exc)
            return None
        if entry.type != "item" or raw_id not in log.named_items(entry.body):
            logger.error("log position %d does not name item %s", view.seq, item_id)
            return None
        detail = ItemDetail(
            view,
            record,
            metadata_mod.published(record.fields["meta"]),
            entry,
            collection.owner,
            collection.owner_peer_id,
            self.owner_name(collection.owner),
            collection.name,
        )
        self._details[item_id] = detail
        if len(self._details) > DETAIL_CACHE:
            self._details.popitem(last=False)
        return detail


SEARCHED_FIELDS = ("title_en", "title_ar", "description_en", "description_ar")


def _searchable(meta: dict) -> list[str]:
    """The texts an item is found by: its titles, descriptions and tags (all published)."""
    return [meta[f] for f in SEARCHED_FIELDS if meta.get(f)] + list(meta.get("tags", ()))
