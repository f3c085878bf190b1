"""Serving `/amanah/sync/1`: answering one peer's requests for the collections it may have.

The server answers only for collections whose log grants the asking peer (or that it owns),
sends a mirror only public collections (a peer whose grant was revoked learns only the log that
revokes it), and a block only when asked for it through an item of such a collection. Each
request is checked again against the store as it is then: a grant revoked or an item redacted
mid-session stops what it covered. A holder never sends a block of its own that fails its hash.
The puller's side is `replicate`.
"""

from __future__ import annotations

import logging

import lmdb
import trio
from amanah.protocol import ids
from amanah.protocol import item as item_mod
from amanah.protocol import sync as msg
from amanah.protocol.errors import FormatError
from amanah.protocol.log import CollectionState

from . import peers as peers_mod
from . import status
from .home import Node
from .ingest import RELEASE_EVERY
from .replicate import Stream

logger = logging.getLogger("amanah.sync")

IDLE = 120  # seconds a server waits for the next request


def may_serve(node: Node, state: CollectionState, peer_key: bytes, peer_role: str) -> bool:
    """Whether `peer_key` may receive this collection from us, by its log and the peer's role."""
    if peer_role == "mirror":
        return state.tier == "public" and state.grants.get(peer_key) == "mirror"
    return peer_key == state.owner or peer_key in state.grants


# Block ids the sync server keeps in its per-session cache of what each item lists (~100 bytes
# each in a set: ~25 MB). Counted in ids, not items: one 100 GiB item lists 100,000 blocks.
ALLOWED_IDS_CACHED = 1 << 18


class Server:
    """Answers one peer's requests. Built per session; caches what the peer may fetch."""

    def __init__(self, node: Node, peer_key: bytes) -> None:
        self.node = node
        self.peer_key = peer_key
        try:
            self.role = peers_mod.get(node, ids.peer_id_from_public_key(peer_key)).role
        except Exception:
            self.role = "untrusted"
        # Per item, the block ids a peer may ask for through it; bounded by the ids held.
        # Per item, the block ids a peer may ask for through it, and the manifests not held here
        # when that was built (what they list is added once they arrive); bounded by ids held.
        self._allowed_items: dict[bytes, tuple[set[bytes], list[bytes]]] = {}
        self._allowed_ids = 0
        self._served = 0  # bytes of blocks read since the last Store.release_map

    def _state(
        self, txn: lmdb.Transaction, col: bytes, log_only: bool = False
    ) -> CollectionState | None:
        """The collection if this peer may have it; with `log_only`, also if its grant was
        revoked (its heads and log, so it learns of the revocation; no records, no blocks)."""
        state = self.node.archive.state(txn, col)
        if state is None or self.role == "untrusted":
            return None
        if may_serve(self.node, state, self.peer_key, self.role):
            return state
        # A revoked peer still learns the log that revokes it (a mirror must stop publishing),
        # but a mirror-role peer never learns anything of a non-public collection (SPEC 4.10).
        if not log_only or self.peer_key not in state.former:
            return None
        return state if self.role != "mirror" or state.tier == "public" else None

    def _heads(self, txn: lmdb.Transaction, after: bytes | None) -> bytes:
        """One page of heads: the served collections after `after`, ascending, with "more"
        when the page is full and another served collection follows (SPEC 11.5)."""
        heads: list[list] = []
        for s in self.node.archive.iter_states(txn, after):
            if self._state(txn, s.id, log_only=True) is None:
                continue
            if len(heads) == msg.HEADS_PER_RESPONSE:
                return msg.encode("heads", cols=heads, more=True)
            heads.append([s.id, s.length, s.head, status.is_complete(self.node, txn, s)])
        return msg.encode("heads", cols=heads)

    def answer(self, request: dict) -> list[bytes]:
        """The response frames to one request (already decoded and checked)."""
        t = request["t"]
        with self.node.store.read() as txn:
            if t == "heads?":
                return [self._heads(txn, request.get("after"))]
            if t == "have":
                served = [h for h in request["cols"] if self._state(txn, h[0]) is not None]
        if t == "have":
            with self.node.store.write() as wtxn:
                for col, length, head, complete in served:
                    status.record(self.node, wtxn, col, self.peer_key, length, head, complete)
            return [msg.encode("ok")]
        with self.node.store.read() as txn:
            if t == "log?":
                col, start = request["col"], request["from"]
                entries: list[bytes] = []
                size = 0
                if self._state(txn, col, log_only=True) is not None:
                    for _, raw in self.node.archive.raw_entries(txn, col, start):
                        if (
                            len(entries) >= request["limit"]
                            or size + len(raw) > msg.MAX_ENTRIES_RESPONSE - 4096
                        ):
                            break
                        entries.append(bytes(raw))
                        size += len(raw)
                return [msg.encode("entries", col=col, entries=entries, **{"from": start})]
            if t == "records?":
                # Answer a prefix that fits the response cap; the puller asks again for the rest.
                records: list[bytes | None] = []
                size = 0
                states: dict[bytes, CollectionState | None] = {}
                for i in request["ids"]:
                    raw = self._record(txn, i, states)
                    size += len(raw or b"") + 8
                    if records and size > msg.MAX_RECORDS_RESPONSE - 4096:
                        break
                    records.append(raw)
                return [msg.encode("records", records=records)]
            if t == "block?":
                data = self._block(txn, request["item"], request["id"], {})
                return [msg.encode_block(request["id"], data)]
            if t == "blocks?":
                # Small blocks together: a prefix that fits the cap (the puller asks again).
                found: list[bytes | None] = []
                size = 0
                states: dict[bytes, CollectionState | None] = {}
                for item_id, block_id in request["want"]:
                    data = self._block(txn, item_id, block_id, states)
                    size += len(data or b"") + 8
                    if found and size > msg.MAX_BLOCKS_RESPONSE - 4096:
                        break
                    found.append(data)
                return [msg.encode_blocks(found)]
        raise FormatError(f"unknown request {t!r}")

    def _record(
        self, txn: lmdb.Transaction, item_id: bytes, states: dict[bytes, CollectionState | None]
    ) -> bytes | None:
        """The item's record if the peer may have it. `states`: as for `_block`."""
        where = txn.get(item_id, db=self.node.store.db["items"])
        if where is None:
            return None
        col = bytes(where[:-8])
        if col not in states:
            states[col] = self._state(txn, col)
        if states[col] is None:
            return None
        raw = txn.get(item_id, db=self.node.store.db["records"])
        return bytes(raw) if raw is not None else None

    def _block(
        self,
        txn: lmdb.Transaction,
        item_id: bytes,
        block_id: bytes,
        states: dict[bytes, CollectionState | None],
    ) -> bytes | None:
        """The block if the peer may have it. `states` caches `_state` answers within one read
        transaction (one request): they cannot change inside it."""
        # Re-checked on every request: a grant revoked or an item redacted mid-session stops it.
        where = txn.get(item_id, db=self.node.store.db["items"])
        if where is None:
            return None
        col = bytes(where[:-8])
        if txn.get(col + item_id, db=self.node.store.db["redacted"]) is not None:
            return None
        if col not in states:
            states[col] = self._state(txn, col)
        if states[col] is None:
            return None
        cached = self._allowed_items.get(item_id)
        if cached is None or (block_id not in cached[0] and cached[1]):
            # New, or a miss while manifests were missing: one may have arrived since (this
            # server is itself still pulling the item). Only the missing ones are read again.
            raw = txn.get(item_id, db=self.node.store.db["records"])
            if raw is None or ids.sha256_id(raw) != item_id:
                return None  # damaged here: the peer will get it from another holder
            record = item_mod.stored_record(bytes(raw), item_id)  # validated when stored
            inline = record.inline_blocks()
            if cached is None and inline is not None and len(inline) == 1:
                # One block (a document, a photo): nothing worth caching.
                return self._read_block(txn, block_id) if block_id == inline[0] else None
            if cached is None:
                allowed = set(record.inline_blocks() or []) | set(record.manifest_ids())
                missing = record.manifest_ids()
            else:
                allowed, missing = cached
                self._allowed_ids -= len(allowed)
            still = []
            for m in missing:
                data = self.node.blobs.get(txn, m)
                if data is not None and ids.sha256_id(data) == m:
                    allowed.update(
                        item_mod.decode_manifest(bytes(data), item_mod.manifest_len(record, m))
                    )
                else:
                    still.append(m)
            if self._allowed_ids + len(allowed) > ALLOWED_IDS_CACHED:
                self._allowed_items.clear()  # rebuilt as needed: a cache, never a limit
                self._allowed_ids = 0
            cached = self._allowed_items[item_id] = (allowed, still)
            self._allowed_ids += len(allowed)
        if block_id not in cached[0]:
            return None
        return self._read_block(txn, block_id)

    def _read_block(self, txn: lmdb.Transaction, block_id: bytes) -> bytes | None:
        """A block held here, if it is whole: a holder never sends its own damaged blocks."""
        data = self.node.blobs.get(txn, block_id)
        if data is None:
            return None
        self._served += len(data)
        if self._served >= RELEASE_EVERY:
            self._served = 0
            self.node.store.trim_map()  # constant memory however much is served
        if ids.sha256_id(data) != block_id:
            return None  # damaged here: the peer will get it from another holder
        return bytes(data)


async def serve(node: Node, stream: Stream, peer_key: bytes) -> None:
    """Answer requests on `stream` until the peer closes it, or is silent for IDLE seconds.

    Store work runs in a worker thread, so a slow answer never stops the network loop from
    reading other streams (yamux resets a stream its receiver leaves unread for 5 s).
    """
    server = Server(node, peer_key)
    while True:
        with trio.move_on_after(IDLE) as idle:
            frame = await stream.recv(msg.MAX_REQUEST)
        if idle.cancelled_caught:
            logger.info("peer %s idle for %d s: closing its sync stream", stream.peer_id, IDLE)
            return
        if not frame:
            return
        try:
            request = msg.decode(frame, msg.MAX_REQUEST, msg.REQUESTS)
        except FormatError as exc:
            logger.warning("peer %s sent a bad request: %s", stream.peer_id, exc)
            await stream.send(msg.encode("error", msg="bad request"))
            return
        if request["t"] in ("block?", "blocks?"):
            # One short read and hash: cheaper here than a thread hand-off (measured).
            responses = server.answer(request)
        else:
            responses = await trio.to_thread.run_sync(server.answer, request)
        for response in responses:
            await stream.send(response)
