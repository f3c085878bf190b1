"""Replication: pulling collections from the peers that serve them (`/amanah/sync/1`).

Pull by heads. The puller asks for the heads of every collection the peer will serve it; for each
one it is behind on, it asks for the missing log range, verifies every entry (signature, chain,
grant and key rules) and stores the range in one transaction only if the result still grants it
the collection (or it is the owner). Then it fetches the item records it lacks, then the blocks,
many requests in flight, each block checked against its id before it is stored. Blocks are
committed as they arrive, so a transfer cut short resumes where it stopped. One scan of the log
after the collection's complete marker finds what is missing (`_Wants`); each record and
manifest that arrives adds what it names; a pull that missed nothing marks the collection
complete without scanning again.

Everything received is hostile until verified; any violation ends the session with an error
logged under the peer's id, and nothing of the offending message is kept. The server's side is
`sync_server`; log entries are parsed and their signatures checked by `entry_checks`.

This module does the storage side synchronously (it never holds a transaction across an await)
and speaks to the network through a `Stream`: anything with `send`, `recv` and `peer_id`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import lmdb
import trio
from amanah.protocol import crypto, ids, log
from amanah.protocol import item as item_mod
from amanah.protocol import sync as msg
from amanah.protocol.errors import FormatError
from amanah.protocol.log import CollectionState, Entry

from . import status
from .entry_checks import EntryChecks, check_signatures
from .errors import DamagedError
from .home import Node
from .ingest import add_refs, release_refs
from .items import check_fits, known_blocks

logger = logging.getLogger("amanah.sync")

IN_FLIGHT = 256  # block requests outstanding per session, at most
IN_FLIGHT_BYTES = 16 << 20  # and about this many bytes of answers on their way
BLOCK_BATCH_COUNT = 1024  # blocks per storing transaction, at most (small ones: 4 MiB of 4 KiB)
SMALL_BLOCK = 64 << 10  # blocks up to this size are asked for together (blocks?)
SMALL_IN_FLIGHT = 4  # blocks? requests outstanding
RECORDS_IN_FLIGHT = 4  # records? requests outstanding
RECORDS_WAITING = 4  # records answers received and waiting to be stored, at most
LOG_IN_FLIGHT = 4  # log? requests outstanding
ANSWER_TIMEOUT = 60  # seconds a puller waits for an answer
# A log round (entries fetched, verified and stored together, SPEC 11.6.2) ends at whichever
# comes first: MAX_LOG_ROUND entries, or the answer that brings it to ROUND_BYTES of entries.
# A batch entry is ~37 KB (1,024 item ids), so a count alone would let one round hold gigabytes.
MAX_LOG_ROUND = 200_000
ROUND_BYTES = 32 << 20
# At most: ROUND_BYTES less one byte, then the answers already on their way (each capped).
MAX_ROUND_BYTES = ROUND_BYTES + LOG_IN_FLIGHT * msg.MAX_ENTRIES_RESPONSE
HAVE_PER_MESSAGE = 500
BLOCK_BATCH_BYTES = 16 << 20


class Stream(Protocol):
    peer_id: str

    async def send(self, payload: bytes) -> None: ...

    async def recv(self, max_size: int) -> bytes: ...


class PeerViolation(Exception):
    """A peer sent something that breaks the protocol or fails verification."""


class ForkDetected(PeerViolation):
    """The owner signed two different entries at one position: kept as evidence, an alarm.

    Not the peer's fault (the owner's key was used twice, e.g. a restored identity appending
    before it synced): the peer is not disconnected for it."""


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    """The error that ended a nursery (the network side or the storer), as callers expect it."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        violations = first.subgroup(PeerViolation)
        first = (violations or first).exceptions[0]
    return first


class _Fork(Exception):
    def __init__(self, entry: Entry) -> None:
        self.entry = entry


def _named_in(txn: lmdb.Transaction, db: dict, col: bytes, item_id: bytes) -> bool:
    """Whether an "item" entry of `col`'s log stored here names `item_id`."""
    where = txn.get(item_id, db=db["items"])
    if where is not None and bytes(where[:-8]) == col:
        return True
    return txn.get(col + item_id, db=db["foreign"]) is not None


def _make_home(txn: lmdb.Transaction, db: dict, col: bytes, item_id: bytes, seq: int) -> None:
    """Point the `items` index at `col`, whose record of the item has just been stored; the
    log that named it first, if another, keeps its naming in `foreign`."""
    home = col + seq.to_bytes(8, "big")
    where = txn.get(item_id, db=db["items"])
    if where == home:
        return  # `col` named it first (the usual case): nothing in `foreign` to move
    if where is not None and bytes(where[:-8]) != col:
        txn.put(bytes(where[:-8]) + item_id, bytes(where[-8:]), db=db["foreign"])
    txn.delete(col + item_id, db=db["foreign"])
    txn.put(item_id, home, db=db["items"])


def _verified_prefix(batch: list[tuple[bytes, bytes]]) -> int:
    """How many blocks at the start of `batch` hash to their ids (all of them, unless a peer
    sent a wrong one: what came before it is still stored, so a resumed pull skips it)."""
    for n, (block_id, data) in enumerate(batch):
        if ids.sha256_id(data) != block_id:
            return n
    return len(batch)


# --- pulling ------------------------------------------------------------------------------------


_reported_invalid: set[bytes] = set()  # items logged as invalid by this process (Puller._invalid)


async def _pipeline(
    capacity: int,
    request: Callable[[trio.MemorySendChannel], Awaitable[None]],
    store: Callable[[trio.MemoryReceiveChannel], Awaitable[None]],
) -> None:
    """Run `request` (the network side) beside `store`, joined by a channel of `capacity`.
    If the network fails, `store` still stores what arrived (it drains the channel, then
    ends) before the failure is raised, so the next session resumes after it."""
    send, receive = trio.open_memory_channel(capacity)
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store, receive)
            async with send:
                try:
                    await request(send)
                except (PeerViolation, OSError, trio.BrokenResourceError) as exc:
                    failure = exc
    except BaseExceptionGroup as group:
        raise _first_leaf(group) from None
    if failure is not None:
        raise failure


@dataclass
class PullResult:
    peer_id: str
    collections: int = 0
    entries: int = 0
    records: int = 0
    blocks: int = 0
    bytes: int = 0
    forks: list[str] = field(default_factory=list)
    # Items whose record is the one the owner's log names but is not a valid record of the
    # collection: the owner's doing, reported and skipped (SPEC 11.6.4).
    invalid: list[str] = field(default_factory=list)


@dataclass
class _Wants:
    """What one pull of a collection still needs of its items: found by one scan of the log
    after the complete marker, then grown as records and manifests arrive (each names more).
    `gaps` counts what was wanted and not obtained; with none, the collection is complete at
    `length` (the log length scanned) without another scan."""

    length: int
    records: list[tuple[bytes, int]] = field(default_factory=list)  # (item, log position)
    # (item, manifest block): every pair, as references to content blocks count per item
    manifests: list[tuple[bytes, bytes]] = field(default_factory=list)
    blocks: list[tuple[bytes, bytes, int]] = field(default_factory=list)  # (item, block, size)
    seen: set[bytes] = field(default_factory=set)  # blocks listed: each is fetched once
    gaps: int = 0


class Puller:
    def __init__(self, node: Node, stream: Stream) -> None:
        self.node = node
        self.stream = stream
        self.me = node.public_key
        self.mirror = node.config.role == "mirror"
        self.result = PullResult(stream.peer_id)

    async def _recv(self, max_size: int) -> bytes:
        with trio.move_on_after(ANSWER_TIMEOUT) as late:
            frame = await self.stream.recv(max_size)
        if late.cancelled_caught:
            raise PeerViolation(f"no answer within {ANSWER_TIMEOUT} s")
        return frame

    async def _answer(self, expect: str, max_size: int) -> dict:
        """The next answer, of type `expect`; anything else ends the session as a violation."""
        frame = await self._recv(max_size)
        if not frame:
            raise PeerViolation("the peer closed the stream")
        try:
            return msg.decode(frame, max_size, (expect, "error"))
        except FormatError as exc:
            raise PeerViolation(str(exc)) from None

    async def _ask(self, request: bytes, expect: str, max_size: int) -> dict:
        await self.stream.send(request)
        return await self._answer(expect, max_size)

    async def run(self, only: Iterable[bytes] | None = None) -> PullResult:
        wanted = set(only) if only is not None else None
        peer_key = ids.public_key_from_peer_id(self.stream.peer_id)
        after: bytes | None = None
        while True:  # one page of heads at a time (SPEC 11.5): memory bounded by a page
            request = msg.encode("heads?") if after is None else msg.encode("heads?", after=after)
            page = await self._ask(request, "heads", msg.MAX_HEADS)
            heads = page["cols"]
            if after is not None and heads and heads[0][0] <= after:
                raise PeerViolation("the heads answer goes back before the collection asked after")
            done = []
            for col, length, head, complete in heads:
                if wanted is not None and col not in wanted:
                    continue
                try:
                    await self.collection(col, length, head)
                except ForkDetected:
                    continue  # evidence kept and reported; go on with the other collections
                mine = await trio.to_thread.run_sync(
                    self._record_heads, col, peer_key, length, head, complete
                )
                if mine is not None:
                    done.append(mine)
            # tell the peer what we now hold, for its status and copy count (bounded messages)
            for i in range(0, len(done), HAVE_PER_MESSAGE):
                have = msg.encode("have", cols=done[i : i + HAVE_PER_MESSAGE])
                await self._ask(have, "ok", 1024)
            if not page.get("more"):
                break
            after = heads[-1][0]
        if self.result.forks:
            raise ForkDetected("; ".join(self.result.forks))
        return self.result

    def _record_heads(
        self, col: bytes, peer_key: bytes, length: int, head: bytes, complete: bool
    ) -> list | None:
        with self.node.store.write() as txn:
            status.record(self.node, txn, col, peer_key, length, head, complete)
            state = self.node.archive.state(txn, col)
            if state is None:
                return None
            return [col, state.length, state.head, status.is_complete(self.node, txn, state)]

    async def collection(self, col: bytes, length: int, head: bytes) -> None:
        with self.node.store.read() as txn:
            state = self.node.archive.state(txn, col)
            ours = state.length if state else 0
            if state and ours >= length:
                if self.node.archive.entry(txn, col, length - 1).id != head:
                    await self._find_fork(col, length)
                if self.node.archive.complete_at(txn, col) == ours:
                    return  # in sync and complete: nothing to scan, nothing to fetch
        granted = await trio.to_thread.run_sync(self._granted, col)
        surveyed: dict[int, bytes] = {}  # the end of each round surveyed -> its last entry's id
        while ours < length:
            owner = await trio.to_thread.run_sync(self._owner, col)
            if surveyed:
                end = min(e for e in surveyed if e > ours)
                checks, reached = await self._fetch_log(col, ours, end, owner, exact=True)
            else:
                end = min(length, ours + MAX_LOG_ROUND)
                checks, reached = await self._fetch_log(col, ours, end, owner)
                if reached < length and not granted:
                    # Each round is stored only if the log so far grants us (a peer must not
                    # make us hold what we were never given); a grant beyond this round is
                    # found first by surveying the whole log, then it is fetched again.
                    await self._parsed(checks)  # let its checks end; a malformed entry counts
                    surveyed = await self._survey_log(col, ours, length, head)
                    continue
            entries = await self._parsed(checks)
            if surveyed and entries[-1].id != surveyed[reached]:
                raise PeerViolation("the log sent differs from the one surveyed")
            await self._store_entries(
                col, ours, entries, checks, provisional=bool(surveyed) and reached < length
            )
            ours = reached
        wants = await trio.to_thread.run_sync(self._survey_items, col)
        await self._pull_records(col, wants)
        await self._pull_blocks(wants)
        self.result.collections += 1
        await trio.to_thread.run_sync(self._mark_if_complete, col, wants)

    def _mark_if_complete(self, col: bytes, wants: _Wants) -> None:
        """Mark the collection complete up to the length surveyed if this pull obtained all it
        wanted; after any gap, only if a scan finds it complete (another session may have
        filled it). Never moves the marker back."""
        with self.node.store.write() as txn:
            marker = self.node.archive.complete_at(txn, col) or 0
            if not wants.gaps:
                if marker < wants.length:
                    self.node.archive.mark_complete(txn, col, wants.length)
                return
            state = self.node.archive.require(txn, col)
            if marker < state.length and status.is_complete(self.node, txn, state):
                self.node.archive.mark_complete(txn, col, state.length)

    async def _peer_entry(self, col: bytes, seq: int) -> Entry:
        reply = await self._ask(
            msg.encode("log?", col=col, limit=1, **{"from": seq}),
            "entries",
            msg.MAX_ENTRIES_RESPONSE,
        )
        if reply["col"] != col or reply["from"] != seq or len(reply["entries"]) != 1:
            raise PeerViolation("the log range answered is not the one asked for")
        try:
            entry = log.parse_entry(reply["entries"][0])
        except FormatError as exc:
            raise PeerViolation(f"invalid log entry at {seq}: {exc}") from None
        if entry.seq != seq or (seq > 0 and entry.body["col"] != col):
            raise PeerViolation(f"the entry answered for position {seq} is not at that position")
        return entry

    async def _find_fork(self, col: bytes, upto: int) -> None:
        """Our log and the peer's differ below `upto`: find the first position where they do,
        keep the peer's owner-signed entry there as evidence, and raise ForkDetected."""

        def ours_at(seq: int) -> bytes:
            with self.node.store.read() as txn:
                return self.node.archive.entry(txn, col, seq).id

        hi = upto - 1  # known to differ (or assumed so: the caller saw it)
        step = 1
        lo = 0  # genesis is the collection id itself: equal on both sides
        while hi - step > 0:
            probe = hi - step
            if (await self._peer_entry(col, probe)).id == ours_at(probe):
                lo = probe
                break
            hi = probe
            step *= 2
        while hi - lo > 1:  # lo equal, hi different: bisect to the first difference
            mid = (lo + hi) // 2
            if (await self._peer_entry(col, mid)).id == ours_at(mid):
                lo = mid
            else:
                hi = mid
        theirs = await self._peer_entry(col, hi)
        await trio.to_thread.run_sync(self._keep_fork, col, theirs)
        raise ForkDetected(self.result.forks[-1] if self.result.forks else "fork")

    def _fork(self, col: bytes, seq: int, why: str) -> None:
        text = f"fork in {ids.to_text('col', col)} at position {seq}: {why}"
        logger.error("ALARM %s (seen from peer %s)", text, self.stream.peer_id)
        self.result.forks.append(text)

    def _may_hold(self, state: CollectionState, held_before: bool) -> bool:
        """Whether a log ending in `state` may be stored here: we own the collection or are
        granted it, or were granted it and already hold it (a revoked peer stores the log that
        revokes it, but a peer revoked before it ever pulled gets nothing)."""
        return (
            state.owner == self.me
            or self.me in state.grants
            or (held_before and self.me in state.former)
        )

    def _granted(self, col: bytes) -> bool:
        """Whether the log we hold of `col` already lets us hold it (False if we hold none)."""
        with self.node.store.read() as txn:
            state = self.node.archive.state(txn, col)
        return state is not None and self._may_hold(state, held_before=True)

    async def _survey_log(
        self, col: bytes, start: int, length: int, head: bytes
    ) -> dict[int, bytes]:
        """Verify the peer's log [start, length) round by round without storing it, and make
        sure it ends at `head` in a state that grants us. Returns the id of the last entry of
        every round: storing then checks each round against it, so the log stored round by round
        is the one surveyed. Memory: one round at a time, as when storing."""
        with self.node.store.read() as txn:
            state = self.node.archive.state(txn, col)
        held_before = state is not None
        ends: dict[int, bytes] = {}
        position = start
        while position < length:
            owner = state.owner if state is not None else None
            end = min(length, position + MAX_LOG_ROUND)
            checks, end = await self._fetch_log(col, position, end, owner)
            entries = await self._parsed(checks)
            state = await trio.to_thread.run_sync(self._replay, col, state, entries, checks)
            ends[end] = entries[-1].id
            position = end
        if state is None or state.head != head:
            raise PeerViolation("the log surveyed does not end at the head announced")
        if not self._may_hold(state, held_before):
            raise PeerViolation(
                f"the peer sent {ids.to_text('col', col)}, which this node was never granted"
            )
        return ends

    @staticmethod
    def _replay(
        col: bytes, state: CollectionState | None, entries: list[Entry], checks: EntryChecks
    ) -> CollectionState:
        """`state` (None before genesis) advanced over `entries`, every rule checked."""
        try:
            if state is None:
                if entries[0].type != "genesis" or entries[0].id != col:
                    raise PeerViolation("the first entry is not this collection's genesis")
                state = CollectionState.from_genesis(entries[0])
                entries = entries[1:]
            if checks.owner != state.owner:
                raise PeerViolation("log entries signed by another key than the owner's")
            bad_signature = checks.wait()[1]
            if bad_signature is not None:
                raise bad_signature
            for entry in entries:
                state.apply(entry, signature_checked=True)
        except FormatError as exc:
            raise PeerViolation(f"log entry rejected: {exc}") from None
        return state

    async def _fetch_log(
        self, col: bytes, start: int, length: int, owner: bytes | None, exact: bool = False
    ) -> tuple[EntryChecks, int]:
        """Fetch one round of entries from `start`: up to `length`, or fewer once ROUND_BYTES
        have arrived (`exact`: all of them, a round surveyed before). Returns its checks and
        where it ends. LOG_IN_FLIGHT requests are on their way; each answer is parsed and its
        signatures checked against `owner` (None: the key the genesis entry names) on other
        threads while the next ones arrive (`_parsed` collects them)."""
        asked: list[int] = []  # the `from` of each request on its way, in order
        position = start  # the next entry to receive
        next_ask = start
        received = 0  # bytes of the entries received
        checks = EntryChecks(owner) if owner is not None else None
        while position < length:
            if not asked:  # every answer is in: ask on from the first entry still missing
                next_ask = position
            while (
                next_ask < length
                and len(asked) < LOG_IN_FLIGHT
                and (exact or received < ROUND_BYTES)
            ):
                limit = min(msg.ENTRIES_PER_RESPONSE, length - next_ask)
                await self.stream.send(
                    msg.encode("log?", col=col, limit=limit, **{"from": next_ask})
                )
                asked.append(next_ask)
                next_ask += limit
            if not asked:
                break  # the round is full (ROUND_BYTES) and every answer is in
            reply = await self._answer("entries", msg.MAX_ENTRIES_RESPONSE)
            if reply["col"] != col or reply["from"] != asked.pop(0) or not reply["entries"]:
                raise PeerViolation("the log range answered is not the one asked for")
            if reply["from"] != position:
                # An earlier answer was shorter than asked for (the peer's size cap): this one
                # does not follow on; the gap is asked for once the answers on their way are in.
                continue
            got = reply["entries"][: length - position]
            received += sum(map(len, got))
            if received > MAX_ROUND_BYTES:  # only a round surveyed smaller can get here
                raise PeerViolation("the log round sent is larger than the one surveyed")
            if checks is None:  # a new collection: the genesis entry names its owner
                try:
                    genesis = log.parse_entry(got[0])
                except FormatError as exc:
                    raise PeerViolation(f"invalid log entry at {position}: {exc}") from None
                if genesis.type != "genesis":
                    raise PeerViolation("the first entry is not this collection's genesis")
                checks = EntryChecks(genesis.body["owner"])
            checks.start(got, position)
            position += len(got)
        assert checks is not None  # length > start: at least one answer was received
        return checks, position

    @staticmethod
    async def _parsed(checks: EntryChecks) -> list[Entry]:
        """The entries `checks` parses, once all are; a malformed one is the peer's violation.
        (Their signatures are judged when they are applied, against the collection's owner.)"""
        try:
            return (await trio.to_thread.run_sync(checks.wait))[0]
        except FormatError as exc:
            raise PeerViolation(str(exc)) from None

    def _owner(self, col: bytes) -> bytes | None:
        with self.node.store.read() as txn:
            state = self.node.archive.state(txn, col)
            return state.owner if state is not None else None

    async def _store_entries(
        self,
        col: bytes,
        start: int,
        entries: list[Entry],
        checks: EntryChecks | None,
        provisional: bool = False,
    ) -> None:
        try:
            await trio.to_thread.run_sync(
                self._store_entries_txn, col, start, entries, checks, provisional
            )
        except _Fork:
            await self._find_fork(col, start + 1)

    def _store_entries_txn(
        self,
        col: bytes,
        start: int,
        entries: list[Entry],
        checks: EntryChecks | None,
        provisional: bool = False,
    ) -> None:
        """Store entries [start, start + len) all or nothing, each checked against the log.
        `checks` holds their signature checks, already started against an owner key: waited
        for before the write transaction (which would keep every other writer waiting
        meanwhile). `provisional`: a round of a log surveyed whole, whose end grants us; this
        round alone may not yet."""
        archive = self.node.archive
        count = len(entries)
        # Waited for (already done, after _parsed) before the write transaction; a bad
        # signature counts only if they were checked against the collection's owner.
        bad_signature = checks.wait()[1] if checks is not None else None
        with self.node.store.write() as txn:
            state = archive.state(txn, col)
            existed = state is not None
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
                if checks is None or checks.owner != state.owner:
                    check_signatures(entries, state.owner)  # none started, or another key
                elif bad_signature is not None:
                    raise bad_signature
                for entry in entries:
                    archive.append_entry(
                        txn, state, entry, signature_checked=True, save_state=False
                    )
                    self._side_effects(txn, col, entry)
                archive.save_state(txn, state)
            except FormatError as exc:
                raise PeerViolation(f"log entry rejected: {exc}") from None
            if not (self._may_hold(state, held_before=existed) or provisional):
                raise PeerViolation(
                    f"the peer sent {ids.to_text('col', col)}, which this node was never granted"
                )
            if self.mirror and state.tier != "public":
                raise PeerViolation("the peer sent a non-public collection to a mirror")
        self.result.entries += count

    def _keep_fork(self, col: bytes, entry: Entry) -> None:
        """Keep a conflicting, owner-signed entry as evidence, beside our own at that position.
        Only proof is kept: signed by the owner, at that position of C, following our entry
        before it and differing from ours (SPEC 11.7, step 2); else the peer lied."""
        with self.node.store.write() as txn:
            state = self.node.archive.state(txn, col)
            try:
                log.verify_entry(entry, state.owner)
            except FormatError:
                raise PeerViolation(
                    f"the peer's entry at position {entry.seq} is not signed by the owner"
                ) from None
            if not 0 < entry.seq < state.length:  # its entry before ours agreed, yet did not chain
                raise PeerViolation(f"the peer's log answers disagree at position {entry.seq}")
            ours = self.node.archive.entry(txn, col, entry.seq)
            before = self.node.archive.entry(txn, col, entry.seq - 1)
            if entry.body["prev"] != before.id or entry.id == ours.id:
                raise PeerViolation(
                    f"the peer's entry at position {entry.seq} is no fork of ours: "
                    "it does not follow our entry before it, or it is ours"
                )
            self._fork(col, entry.seq, "two different owner-signed entries")
            key = col + entry.seq.to_bytes(8, "big") + entry.id
            txn.put(key, entry.raw, db=self.node.store.db["forks"])

    def _side_effects(self, txn: lmdb.Transaction, col: bytes, entry: Entry) -> None:
        db = self.node.store.db
        b = entry.body
        # Any log may name any item id; only the item's record says which collection is its
        # home. So whether C's log names an item, and whether C redacted it, is kept per
        # collection: the `items` index (the home once the record is here, else the first log
        # that named it) and `foreign` (C + item) for the other logs. A redaction in C only
        # ever hides or deletes the item if C is its home.
        if entry.type == "item":
            seq = entry.seq.to_bytes(8, "big")
            foreign: list[bytes] = []
            for item_id in log.named_items(b):  # distinct within the entry (checked parsing it)
                if _named_in(txn, db, col, item_id):
                    raise FormatError("the same item is added twice")
                if txn.get(item_id, db=db["items"]) is None:
                    txn.put(item_id, col + seq, db=db["items"])
                else:
                    txn.put(col + item_id, seq, db=db["foreign"])
                    foreign.append(item_id)
            if foreign:  # one line per entry, however many of its items
                logger.warning(
                    "%s lists %d item(s) that another collection's log named first, from %s",
                    ids.to_text("col", col),
                    len(foreign),
                    ids.to_text("itm", foreign[0]),
                )
        elif entry.type == "redact":
            if not _named_in(txn, db, col, b["item"]):
                raise FormatError("redaction of an item not in this collection")
            if txn.get(col + b["item"], db=db["redacted"]) is not None:
                raise FormatError("the item is already redacted")
            txn.put(col + b["item"], entry.seq.to_bytes(8, "big"), db=db["redacted"])
            raw = txn.get(b["item"], db=db["records"])
            if raw is not None:
                record = item_mod.parse_record(bytes(raw))
                if record.collection == col:  # its home: else another owner's item, untouched
                    doomed = known_blocks(self.node, txn, record)
                    txn.delete(b["item"], db=db["records"])
                    release_refs(self.node, txn, doomed)

    def _survey_items(self, col: bytes) -> _Wants:
        """One pass over the log after the complete marker: the records missing here, and the
        blocks missing of the items whose records are here (a pull cut short, or that the
        peer lacked). What arriving records name is added as they are stored."""
        db = self.node.store.db
        with self.node.store.read() as txn:
            state = self.node.archive.require(txn, col)
            wants = _Wants(state.length)
            marker = self.node.archive.complete_at(txn, col)
            for seq, raw in self.node.archive.raw_entries(txn, col, marker or 1):
                body = log.stored_body(bytes(raw))
                if body["type"] != "item":
                    continue
                for i in log.named_items(body):
                    if txn.get(col + i, db=db["redacted"]) is not None:
                        continue  # not wanted, as for status.is_complete
                    rec = txn.get(i, db=db["records"])
                    if rec is None:
                        wants.records.append((i, seq))
                    else:
                        self._list_blocks(txn, item_mod.stored_record(bytes(rec), i), wants)
        return wants

    def _list_blocks(
        self, txn: lmdb.Transaction, record: item_mod.ItemRecord, wants: _Wants
    ) -> None:
        """Add to `wants` the item's blocks not here: its manifests if any is missing (what
        they name is listed once they are here), else its content blocks."""
        blocks = record.inline_blocks()
        if blocks is None:
            missing = [m for m in record.manifest_ids() if not self.node.blobs.has(txn, m)]
            if missing:
                wants.manifests.extend((record.id, m) for m in missing)
                return
            blocks = []
            for m in record.manifest_ids():
                content = self._manifest_content(txn, record, m)
                if content is None:  # held but damaged, or not a manifest of this item
                    wants.gaps += 1
                    return
                blocks.extend(content)
        tag = crypto.TAG_LEN if record.encrypted else 0
        for index, b in enumerate(blocks):
            if b not in wants.seen and not self.node.blobs.has(txn, b):
                size = min(item_mod.CHUNK_SIZE, record.size - index * item_mod.CHUNK_SIZE)
                wants.blocks.append((record.id, b, size + tag))
                wants.seen.add(b)

    async def _pull_records(self, col: bytes, wants: _Wants) -> None:
        """Fetch missing records, RECORDS_IN_FLIGHT requests on their way, while a worker
        thread stores those that came. Whatever arrived is stored even when the peer fails
        midway (resumption starts after it)."""
        await _pipeline(
            RECORDS_WAITING,
            functools.partial(self._request_records, wants),
            functools.partial(self._records_storer, col, wants),
        )

    async def _request_records(self, wants: _Wants, answers: trio.MemorySendChannel) -> None:
        queue, wants.records = wants.records, []
        pending: list[list[tuple[bytes, int]]] = []
        while queue or pending:
            while queue and len(pending) < RECORDS_IN_FLIGHT:
                batch, queue = queue[: msg.RECORDS_PER_REQUEST], queue[msg.RECORDS_PER_REQUEST :]
                await self.stream.send(msg.encode("records?", ids=[i for i, _ in batch]))
                pending.append(batch)
            reply = await self._answer("records", msg.MAX_RECORDS_RESPONSE)
            batch = pending.pop(0)
            answered = reply["records"]
            if not answered or len(answered) > len(batch):
                raise PeerViolation("records answered do not match those asked for")
            # A prefix may come back (the response cap); the rest is asked for again.
            queue.extend(batch[len(answered) :])
            await answers.send(list(zip(batch, answered, strict=False)))

    async def _records_storer(
        self, col: bytes, wants: _Wants, answers: trio.MemoryReceiveChannel
    ) -> None:
        """Store answers in a worker thread; all those waiting when it is free go into one
        transaction: fewer commits, each a disk sync (~4 ms here, for 256 records)."""
        async with answers:
            async for first in answers:
                got = list(first)
                while True:
                    try:
                        got.extend(answers.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await trio.to_thread.run_sync(self._store_records, col, got, wants)

    def _store_records(
        self, col: bytes, answered: list[tuple[tuple[bytes, int], bytes | None]], wants: _Wants
    ) -> None:
        """Store the records answered ((item, position), record or None), each checked against
        its id (those before a wrong one are stored, then the peer is refused), and add the
        blocks each names that are missing here to `wants`. What is not stored is a gap."""
        bad = None
        for n, ((item_id, _), raw) in enumerate(answered):
            if raw is not None and ids.sha256_id(raw) != item_id:
                bad, answered = item_id, answered[:n]
                break
        self._store_checked_records(col, answered, wants)
        if bad is not None:
            raise PeerViolation(f"record does not match {ids.to_text('itm', bad)}")

    def _store_checked_records(
        self, col: bytes, answered: list[tuple[tuple[bytes, int], bytes | None]], wants: _Wants
    ) -> None:
        db = self.node.store.db
        with self.node.store.write() as txn:
            state = self.node.archive.require(txn, col)
            for (item_id, seq), raw in answered:
                if raw is None:
                    wants.gaps += 1  # the peer lacks it; another holder may have it
                    continue
                # From here the record is exactly the one the owner's signed entry names: if it
                # is not a valid record of this collection, the owner made it so, not the peer.
                try:
                    record = item_mod.parse_record(raw, item_id)  # hashed by _store_records
                except FormatError as exc:
                    self._invalid(col, item_id, f"not a valid item record: {exc}")
                    wants.gaps += 1
                    continue
                if record.collection != col:
                    wants.gaps += 1  # this log lists another collection's item: not ours to keep
                    continue
                try:
                    check_fits(record, state)
                except DamagedError as exc:
                    self._invalid(col, item_id, f"does not fit its collection: {exc}")
                    wants.gaps += 1
                    continue
                if txn.get(col + item_id, db=db["redacted"]) is not None:
                    continue
                _make_home(txn, db, col, item_id, seq)
                txn.put(item_id, raw, db=db["records"])
                refs = list(record.inline_blocks() or []) + record.manifest_ids()
                for m in record.manifest_ids():  # manifests already here name content blocks too
                    refs.extend(self._manifest_content(txn, record, m) or [])
                add_refs(txn, db["refs"], refs)
                self.result.records += 1
                self._list_blocks(txn, record, wants)

    def _invalid(self, col: bytes, item_id: bytes, why: str) -> None:
        text = ids.to_text("itm", item_id)
        # The record is asked for again at every pull (its bytes can only be these): the
        # problem is logged once per process as an error, then quietly.
        level = logging.DEBUG if item_id in _reported_invalid else logging.ERROR
        _reported_invalid.add(item_id)
        logger.log(
            level,
            "item %s of %s, as its owner signed it, is invalid and is not kept: %s",
            text,
            ids.to_text("col", col),
            why,
        )
        self.result.invalid.append(text)

    def _manifest_content(
        self, txn: lmdb.Transaction, record: item_mod.ItemRecord, m: bytes
    ) -> list[bytes] | None:
        data = self.node.blobs.get(txn, m)
        if data is None or ids.sha256_id(data) != m:
            return None
        try:
            return item_mod.decode_manifest(bytes(data), item_mod.manifest_len(record, m))
        except FormatError:
            return None

    async def _pull_blocks(self, wants: _Wants) -> None:
        """Fetch the blocks wanted: manifests first, as they name the rest. Every item listing
        a manifest counts references to the content blocks it names once that manifest is
        here; then its content blocks missing here are wanted too."""
        if wants.manifests:
            pairs, wants.manifests = wants.manifests, []
            unique = list({m: (i, m) for i, m in pairs}.values())
            await self._fetch(unique, wants)
            await trio.to_thread.run_sync(self._after_manifests, pairs, wants)
        blocks, wants.blocks = wants.blocks, []
        await self._fetch(blocks, wants)

    def _after_manifests(self, pairs: list[tuple[bytes, bytes]], wants: _Wants) -> None:
        db = self.node.store.db
        with self.node.store.write() as txn:
            records: dict[bytes, item_mod.ItemRecord] = {}
            for item_id, m in pairs:
                raw = txn.get(item_id, db=db["records"])
                if raw is None:
                    continue
                record = records.setdefault(item_id, item_mod.stored_record(bytes(raw), item_id))
                content = self._manifest_content(txn, record, m)
                if content:
                    add_refs(txn, db["refs"], content)
            for record in records.values():
                self._list_blocks(txn, record, wants)
        wants.gaps += len(wants.manifests)  # still missing: the peer lacked them
        wants.manifests = []

    async def _fetch(
        self, wanted: list[tuple[bytes, bytes]] | list[tuple[bytes, bytes, int]], wants: _Wants
    ) -> None:
        """Fetch blocks, many requests in flight (up to IN_FLIGHT, and about IN_FLIGHT_BYTES by
        the sizes records announce), while a worker thread verifies and stores the previous
        batch: network and disk overlap."""
        small = [w for w in wanted if len(w) > 2 and w[2] <= SMALL_BLOCK]
        large = [w for w in wanted if not (len(w) > 2 and w[2] <= SMALL_BLOCK)]

        async def request(batches: trio.MemorySendChannel) -> None:
            if small:
                await self._request_small(small, batches, wants)
            await self._request_all(large, batches, wants)

        await _pipeline(1, request, self._verifier)  # at most one batch waiting for a hash

    async def _verifier(self, batches: trio.MemoryReceiveChannel) -> None:
        """Hash each batch in a worker thread, then hand it to the storer: a batch is hashed
        while the one before is committed (hashlib and LMDB's sync both release the GIL), so
        the disk's sync time, the longest stage, is the only one on the storing path."""
        send, receive = trio.open_memory_channel(1)  # at most one hashed batch waiting
        bad: bytes | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._storer, receive)
            async with send, batches:
                async for batch in batches:
                    good = await trio.to_thread.run_sync(_verified_prefix, batch)
                    if good:
                        await send.send(batch[:good])
                    if good < len(batch):
                        bad = batch[good][0]
                        break  # the storer still stores what came before it, then ends
        if bad is not None:
            raise PeerViolation(f"block {ids.to_text('blk', bad)} does not match its id")

    async def _storer(self, batches: trio.MemoryReceiveChannel) -> None:
        async with batches:
            async for batch in batches:
                await trio.to_thread.run_sync(self._store_blocks, batch)

    async def _request_small(
        self, wanted: list, batches: trio.MemorySendChannel, wants: _Wants
    ) -> None:
        """Small blocks (a few KiB: documents, photos' thumbnails) are asked for by the hundred
        with `blocks?`: one round trip, one frame each way, instead of one per block."""
        queue = [(i, b) for i, b, *_ in wanted]
        pending: list[list[tuple[bytes, bytes]]] = []
        batch: list[tuple[bytes, bytes]] = []
        batch_bytes = 0
        try:
            while queue or pending:
                while queue and len(pending) < SMALL_IN_FLIGHT:
                    part, queue = queue[: msg.BLOCKS_PER_REQUEST], queue[msg.BLOCKS_PER_REQUEST :]
                    await self.stream.send(msg.encode("blocks?", want=[list(p) for p in part]))
                    pending.append(part)
                reply = await self._answer("blocks", msg.MAX_BLOCKS_RESPONSE + 1024)
                asked = pending.pop(0)
                got = reply["blocks"]
                if not got or len(got) > len(asked):
                    raise PeerViolation("blocks answered do not match those asked for")
                queue.extend(asked[len(got) :])  # the rest of a capped answer, asked again
                for (_, block_id), data in zip(asked, got, strict=False):
                    if data is not None:
                        batch.append((block_id, data))
                        batch_bytes += len(data)
                    else:
                        wants.gaps += 1  # the peer lacks it; another holder may have it
                if len(batch) >= BLOCK_BATCH_COUNT or batch_bytes >= BLOCK_BATCH_BYTES:
                    await batches.send(batch)
                    batch, batch_bytes = [], 0
        finally:
            if batch:
                with trio.CancelScope(shield=True):
                    await batches.send(batch)

    async def _request_all(
        self, wanted: list, batches: trio.MemorySendChannel, wants: _Wants
    ) -> None:
        """Keep requests in flight and hand received blocks to the storer in batches. Whatever
        arrived is handed over even when the peer fails midway (resumption starts after it)."""
        pending: list[tuple[bytes, int]] = []  # (block id, size estimate), in request order
        in_flight = 0  # estimated bytes of answers on their way
        sent = 0
        batch: list[tuple[bytes, bytes]] = []
        batch_bytes = 0
        try:
            while True:
                while (
                    sent < len(wanted)
                    and len(pending) < IN_FLIGHT
                    and (not pending or in_flight < IN_FLIGHT_BYTES)
                ):
                    item_id, block_id, *size = wanted[sent]
                    estimate = size[0] if size else item_mod.MAX_BLOCK_SIZE
                    await self.stream.send(msg.encode("block?", item=item_id, id=block_id))
                    pending.append((block_id, estimate))
                    in_flight += estimate
                    sent += 1
                if not pending:
                    return
                reply = await self._answer("block", msg.MAX_BLOCK_RESPONSE)
                expected, estimate = pending.pop(0)
                in_flight -= estimate
                if reply["id"] != expected:
                    raise PeerViolation("blocks answered out of order")
                if reply["data"] is None:
                    wants.gaps += 1  # the peer lacks it; another holder may have it
                    continue
                batch.append((expected, reply["data"]))  # hashed by the storer, off this loop
                batch_bytes += len(reply["data"])
                if batch_bytes >= BLOCK_BATCH_BYTES or len(batch) >= BLOCK_BATCH_COUNT:
                    await batches.send(batch)
                    batch, batch_bytes = [], 0
        finally:
            if batch:
                with trio.CancelScope(shield=True):
                    await batches.send(batch)

    def _store_blocks(self, batch: list[tuple[bytes, bytes]]) -> None:
        """Store blocks `_verifier` has hashed, in one transaction."""
        if not batch:
            return
        with self.node.store.write() as txn:
            for block_id, data in batch:
                self.node.blobs.put(txn, data, expect=block_id, verified=True)
                self.result.blocks += 1
                self.result.bytes += len(data)
        self.node.store.trim_map()
