"""Replication: serving collections to granted peers, and pulling from them (`/amanah/sync/1`).

Pull by heads. The puller asks for the heads of every collection the peer will serve it; for each
one it is behind on, it asks for the missing log range, verifies every entry (signature, chain,
grant and key rules) and stores the range in one transaction only if the result still grants it
the collection (or it is the owner). Then it fetches the item records it lacks, then the blocks,
many requests in flight, each block checked against its id before it is stored. Blocks are
committed as they arrive, so a transfer cut short resumes where it stopped.

The server side answers only for collections whose log grants the asking peer (or that it
owns), sends a mirror only public collections, and a block only when asked for it through an
item of such a collection. Everything received is hostile until verified; any violation ends the
session with an error logged under the peer's id, and nothing of the offending message is kept.

This module does the storage side synchronously (it never holds a transaction across an await)
and speaks to the network through a `Stream`: anything with `send`, `recv` and `peer_id`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import lmdb
import trio
from amanah.protocol import ids, log
from amanah.protocol import item as item_mod
from amanah.protocol import sync as msg
from amanah.protocol.errors import FormatError, IntegrityError
from amanah.protocol.log import CollectionState, Entry

from . import peers as peers_mod
from . import status
from .errors import DamagedError
from .home import Node
from .ingest import add_refs, release_refs
from .items import check_fits, known_blocks

logger = logging.getLogger("amanah.sync")

IN_FLIGHT = 16  # block requests outstanding per session
BLOCK_BATCH_BYTES = 16 << 20


class Stream(Protocol):
    peer_id: str

    async def send(self, payload: bytes) -> None: ...

    async def recv(self, max_size: int) -> bytes: ...


class PeerViolation(Exception):
    """A peer sent something that breaks the protocol or fails verification."""


class _Fork(Exception):
    def __init__(self, entry: Entry) -> None:
        self.entry = entry


# --- what this node may serve -------------------------------------------------------------------


def may_serve(node: Node, state: CollectionState, peer_key: bytes, peer_role: str) -> bool:
    """Whether `peer_key` may receive this collection from us, by its log and the peer's role."""
    if peer_role == "mirror":
        return state.tier == "public" and state.grants.get(peer_key) == "mirror"
    return peer_key == state.owner or peer_key in state.grants


class Server:
    """Answers one peer's requests. Built per session; caches what the peer may fetch."""

    def __init__(self, node: Node, peer_key: bytes) -> None:
        self.node = node
        self.peer_key = peer_key
        try:
            self.role = peers_mod.get(node, ids.peer_id_from_public_key(peer_key)).role
        except Exception:
            self.role = "untrusted"
        self._allowed_items: dict[bytes, set[bytes]] = {}

    def _state(self, txn: lmdb.Transaction, col: bytes) -> CollectionState | None:
        state = self.node.archive.state(txn, col)
        if state is None or self.role == "untrusted":
            return None
        return state if may_serve(self.node, state, self.peer_key, self.role) else None

    def answer(self, request: dict) -> list[bytes]:
        """The response frames to one request (already decoded and checked)."""
        t = request["t"]
        with self.node.store.read() as txn:
            if t == "heads?":
                heads = [
                    [s.id, s.length, s.head, status.is_complete(self.node, txn, s)]
                    for s in self.node.archive.states(txn)
                    if self._state(txn, s.id) is not None
                ]
                return [msg.encode("heads", cols=heads)]
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
                if self._state(txn, col) is not None:
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
                records = [self._record(txn, i) for i in request["ids"]]
                return [msg.encode("records", records=records)]
            if t == "block?":
                data = self._block(txn, request["item"], request["id"])
                return [msg.encode("block", id=request["id"], data=data)]
        raise FormatError(f"unknown request {t!r}")

    def _record(self, txn: lmdb.Transaction, item_id: bytes) -> bytes | None:
        where = txn.get(item_id, db=self.node.store.db["items"])
        if where is None or self._state(txn, bytes(where[:-8])) is None:
            return None
        raw = txn.get(item_id, db=self.node.store.db["records"])
        return bytes(raw) if raw is not None else None

    def _block(self, txn: lmdb.Transaction, item_id: bytes, block_id: bytes) -> bytes | None:
        allowed = self._allowed_items.get(item_id)
        if allowed is None:
            raw = self._record(txn, item_id)
            if raw is None:
                return None
            try:
                record = item_mod.parse_record(raw)
            except FormatError:
                return None
            allowed = set(record.inline_blocks() or []) | set(record.manifest_ids())
            for m in record.manifest_ids():
                data = self.node.blobs.get(txn, m)
                if data is not None and ids.sha256_id(data) == m:
                    allowed.update(item_mod.decode_manifest(bytes(data), _manifest_len(record, m)))
            if len(self._allowed_items) > 4096:
                self._allowed_items.clear()
            self._allowed_items[item_id] = allowed
        if block_id not in allowed:
            return None
        data = self.node.blobs.get(txn, block_id)
        if data is None or ids.sha256_id(data) != block_id:
            return None  # damaged here: the peer will get it from another holder
        return bytes(data)


def _manifest_len(record: item_mod.ItemRecord, manifest_id: bytes) -> int:
    index = record.manifest_ids().index(manifest_id)
    return min(item_mod.MANIFEST_FANOUT, record.block_count - index * item_mod.MANIFEST_FANOUT)


async def serve(node: Node, stream: Stream, peer_key: bytes) -> None:
    """Answer requests on `stream` until the peer closes it."""
    server = Server(node, peer_key)
    while True:
        frame = await stream.recv(msg.MAX_REQUEST)
        if not frame:
            return
        try:
            request = msg.decode(frame, msg.MAX_REQUEST, msg.REQUESTS)
        except FormatError as exc:
            logger.warning("peer %s sent a bad request: %s", stream.peer_id, exc)
            await stream.send(msg.encode("error", msg="bad request"))
            return
        for response in server.answer(request):
            await stream.send(response)


# --- pulling ------------------------------------------------------------------------------------


@dataclass
class PullResult:
    peer_id: str
    collections: int = 0
    entries: int = 0
    records: int = 0
    blocks: int = 0
    bytes: int = 0
    forks: list[str] = field(default_factory=list)


class Puller:
    def __init__(self, node: Node, stream: Stream) -> None:
        self.node = node
        self.stream = stream
        self.me = node.public_key
        self.mirror = node.config.role == "mirror"
        self.result = PullResult(stream.peer_id)

    async def _ask(self, request: bytes, expect: str, max_size: int) -> dict:
        await self.stream.send(request)
        frame = await self.stream.recv(max_size)
        if not frame:
            raise PeerViolation("the peer closed the stream")
        try:
            return msg.decode(frame, max_size, (expect, "error"))
        except FormatError as exc:
            raise PeerViolation(str(exc)) from None

    async def run(self, only: Iterable[bytes] | None = None) -> PullResult:
        heads = (await self._ask(msg.encode("heads?"), "heads", msg.MAX_HEADS))["cols"]
        wanted = set(only) if only is not None else None
        peer_key = ids.public_key_from_peer_id(self.stream.peer_id)
        done = []
        for col, length, head, complete in heads:
            if wanted is not None and col not in wanted:
                continue
            await self.collection(col, length, head)
            with self.node.store.write() as txn:
                status.record(self.node, txn, col, peer_key, length, head, complete)
                state = self.node.archive.state(txn, col)
                if state is not None:
                    done.append(
                        [col, state.length, state.head, status.is_complete(self.node, txn, state)]
                    )
        if done:  # tell the peer what we now hold, for its status and copy count
            await self._ask(msg.encode("have", cols=done), "ok", 1024)
        return self.result

    async def collection(self, col: bytes, length: int, head: bytes) -> None:
        with self.node.store.read() as txn:
            state = self.node.archive.state(txn, col)
            ours = state.length if state else 0
            if state and ours >= length:
                entry = self.node.archive.entry(txn, col, length - 1)
                if entry.id != head:
                    self._fork(col, length - 1, "the peer's head differs from our entry there")
                    return
                if self.node.archive.complete_at(txn, col) == ours:
                    return  # in sync and complete: nothing to scan, nothing to fetch
        if ours < length:
            await self._pull_log(col, ours, length)
        await self._pull_records(col)
        await self._pull_blocks(col)
        self.result.collections += 1
        with self.node.store.write() as txn:
            state = self.node.archive.require(txn, col)
            if status.is_complete(self.node, txn, state):
                self.node.archive.mark_complete(txn, col, state.length)

    def _fork(self, col: bytes, seq: int, why: str) -> None:
        text = f"{ids.to_text('col', col)} at position {seq}: {why}"
        logger.error("FORK from peer %s in %s", self.stream.peer_id, text)
        self.result.forks.append(text)

    async def _pull_log(self, col: bytes, start: int, length: int) -> None:
        """Fetch entries [start, length), verify them all, store them in one transaction."""
        entries: list[Entry] = []
        position = start
        while position < length:
            limit = min(msg.ENTRIES_PER_RESPONSE, length - position)
            reply = await self._ask(
                msg.encode("log?", col=col, limit=limit, **{"from": position}),
                "entries",
                msg.MAX_ENTRIES_RESPONSE,
            )
            if reply["col"] != col or reply["from"] != position or not reply["entries"]:
                raise PeerViolation("the log range answered is not the one asked for")
            for raw in reply["entries"]:
                try:
                    entries.append(log.parse_entry(raw))
                except FormatError as exc:
                    raise PeerViolation(f"invalid log entry at {position}: {exc}") from None
                position += 1
        self._store_entries(col, start, entries[: length - start])

    def _store_entries(self, col: bytes, start: int, entries: list[Entry]) -> None:
        try:
            self._store_entries_txn(col, start, entries)
        except _Fork as fork:
            self._keep_fork(col, fork.entry)
            raise PeerViolation("fork: the peer's entry does not follow our head") from None

    def _store_entries_txn(self, col: bytes, start: int, entries: list[Entry]) -> None:
        archive = self.node.archive
        count = len(entries)
        with self.node.store.write() as txn:
            state = archive.state(txn, col)
            if (state.length if state else 0) != start:
                return  # another session stored these meanwhile; the next round resumes
            try:
                if state is None:
                    genesis = entries[0]
                    if genesis.type != "genesis" or genesis.id != col:
                        raise PeerViolation("the first entry is not this collection's genesis")
                    state = archive.create(txn, genesis)
                    entries = entries[1:]
                else:
                    first = entries[0] if entries else None
                    if first is not None and first.body.get("prev") != state.head:
                        raise _Fork(first)
                for entry in entries:
                    archive.append_entry(txn, state, entry, save_state=False)
                    self._side_effects(txn, col, entry)
                archive.save_state(txn, state)
            except FormatError as exc:
                raise PeerViolation(f"log entry rejected: {exc}") from None
            if not (state.owner == self.me or self.me in state.grants):
                raise PeerViolation(
                    f"the peer sent {ids.to_text('col', col)}, which this node was never granted"
                )
            if self.mirror and state.tier != "public":
                raise PeerViolation("the peer sent a non-public collection to a mirror")
        self.result.entries += count

    def _keep_fork(self, col: bytes, entry: Entry) -> None:
        """Keep a conflicting, owner-signed entry as evidence, beside our own at that position."""
        with self.node.store.write() as txn:
            state = self.node.archive.state(txn, col)
            try:
                log.verify_entry(entry, state.owner)
            except FormatError:
                return  # not signed by the owner: plain garbage, not a fork
            self._fork(col, entry.seq, "two different owner-signed entries")
            key = col + entry.seq.to_bytes(8, "big") + entry.id
            txn.put(key, entry.raw, db=self.node.store.db["forks"])

    def _side_effects(self, txn: lmdb.Transaction, col: bytes, entry: Entry) -> None:
        db = self.node.store.db
        b = entry.body
        if entry.type == "item":
            if not txn.put(
                b["item"], col + entry.seq.to_bytes(8, "big"), db=db["items"], overwrite=False
            ):
                raise FormatError("the same item is added twice")
        elif entry.type == "redact":
            where = txn.get(b["item"], db=db["items"])
            if where is None or bytes(where[:-8]) != col:
                raise FormatError("redaction of an item not in this collection")
            if txn.get(b["item"], db=db["redacted"]) is not None:
                raise FormatError("the item is already redacted")
            txn.put(b["item"], entry.seq.to_bytes(8, "big"), db=db["redacted"])
            raw = txn.get(b["item"], db=db["records"])
            if raw is not None:
                record = item_mod.parse_record(bytes(raw))
                doomed = known_blocks(self.node, txn, record)
                txn.delete(b["item"], db=db["records"])
                release_refs(self.node, txn, doomed)

    async def _pull_records(self, col: bytes) -> None:
        missing = self._missing_records(col)
        for i in range(0, len(missing), msg.RECORDS_PER_REQUEST):
            batch = missing[i : i + msg.RECORDS_PER_REQUEST]
            reply = await self._ask(
                msg.encode("records?", ids=batch), "records", msg.MAX_RECORDS_RESPONSE
            )
            if len(reply["records"]) != len(batch):
                raise PeerViolation("records answered do not match those asked for")
            db = self.node.store.db
            with self.node.store.write() as txn:
                state = self.node.archive.require(txn, col)
                for item_id, raw in zip(batch, reply["records"], strict=True):
                    if raw is None:
                        continue  # the peer lacks it; another holder may have it
                    if ids.sha256_id(raw) != item_id:
                        raise PeerViolation(f"record does not match {ids.to_text('itm', item_id)}")
                    try:
                        record = item_mod.parse_record(raw)
                    except FormatError as exc:
                        raise PeerViolation(f"invalid record: {exc}") from None
                    try:
                        check_fits(record, state)
                    except DamagedError as exc:
                        raise PeerViolation(f"record refused: {exc}") from None
                    if txn.get(item_id, db=db["redacted"]) is not None:
                        continue
                    txn.put(item_id, raw, db=db["records"])
                    add_refs(
                        txn, db["refs"], list(record.inline_blocks() or []) + record.manifest_ids()
                    )
                    self.result.records += 1

    def _missing_records(self, col: bytes) -> list[bytes]:
        db = self.node.store.db
        out = []
        with self.node.store.read() as txn:
            for _, raw in self.node.archive.raw_entries(txn, col, 1):
                body = log.parse_entry(bytes(raw)).body
                if body["type"] != "item":
                    continue
                i = body["item"]
                if txn.get(i, db=db["records"]) is None and txn.get(i, db=db["redacted"]) is None:
                    out.append(i)
        return out

    async def _pull_blocks(self, col: bytes) -> None:
        wanted = self._missing_blocks(col)
        # Manifest blocks first: they name the rest.
        manifests = [(i, b) for i, b, is_manifest in wanted if is_manifest]
        await self._fetch(manifests)
        if manifests:
            wanted = self._missing_blocks(col)
        await self._fetch([(i, b) for i, b, is_manifest in wanted if not is_manifest])

    def _missing_blocks(self, col: bytes) -> list[tuple[bytes, bytes, bool]]:
        db = self.node.store.db
        out: list[tuple[bytes, bytes, bool]] = []
        seen: set[bytes] = set()
        with self.node.store.read() as txn:
            for _, raw in self.node.archive.raw_entries(txn, col, 1):
                body = log.parse_entry(bytes(raw)).body
                if body["type"] != "item":
                    continue
                item_id = body["item"]
                rec = txn.get(item_id, db=db["records"])
                if rec is None:
                    continue
                record = item_mod.parse_record(bytes(rec))
                blocks = record.inline_blocks()
                if blocks is None:
                    blocks = []
                    for m in record.manifest_ids():
                        data = self.node.blobs.get(txn, m)
                        if data is None:
                            if m not in seen:
                                out.append((item_id, m, True))
                                seen.add(m)
                            blocks = None
                            continue
                        if blocks is not None:
                            blocks.extend(
                                item_mod.decode_manifest(bytes(data), _manifest_len(record, m))
                            )
                for b in blocks or []:
                    if b not in seen and not self.node.blobs.has(txn, b):
                        out.append((item_id, b, False))
                        seen.add(b)
        return out

    async def _fetch(self, wanted: list[tuple[bytes, bytes]]) -> None:
        """Fetch blocks with up to IN_FLIGHT requests outstanding; store each batch as it fills."""
        pending: list[bytes] = []
        batch: list[tuple[bytes, bytes]] = []
        batch_bytes = 0
        sent = 0
        for _ in range(min(IN_FLIGHT, len(wanted))):
            item_id, block_id = wanted[sent]
            await self.stream.send(msg.encode("block?", item=item_id, id=block_id))
            pending.append(block_id)
            sent += 1
        while pending:
            frame = await self.stream.recv(msg.MAX_BLOCK_RESPONSE)
            if not frame:
                raise PeerViolation("the peer closed the stream")
            try:
                reply = msg.decode(frame, msg.MAX_BLOCK_RESPONSE, ("block", "error"))
            except FormatError as exc:
                raise PeerViolation(str(exc)) from None
            expected = pending.pop(0)
            if reply["id"] != expected:
                raise PeerViolation("blocks answered out of order")
            if sent < len(wanted):
                item_id, block_id = wanted[sent]
                await self.stream.send(msg.encode("block?", item=item_id, id=block_id))
                pending.append(block_id)
                sent += 1
            data = reply["data"]
            if data is None:
                continue
            if ids.sha256_id(data) != expected:
                raise PeerViolation(f"block {ids.to_text('blk', expected)} does not match its id")
            batch.append((expected, data))
            batch_bytes += len(data)
            if batch_bytes >= BLOCK_BATCH_BYTES:
                await trio.to_thread.run_sync(self._store_blocks, batch)
                batch, batch_bytes = [], 0
        await trio.to_thread.run_sync(self._store_blocks, batch)

    def _store_blocks(self, batch: list[tuple[bytes, bytes]]) -> None:
        if not batch:
            return
        with self.node.store.write() as txn:
            for block_id, data in batch:
                try:
                    self.node.blobs.put(txn, data, expect=block_id)
                except IntegrityError as exc:
                    raise PeerViolation(str(exc)) from None
                self.result.blocks += 1
                self.result.bytes += len(data)
        self.node.store.release_map()
