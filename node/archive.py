"""Collections and their logs in the store: the one write path for log entries, and key access.

Every entry that enters the store, made here or (later) received from a peer, passes through
`append_entry`, which checks it against the collection's state (position, chain, signature,
grant and key rules) before writing the entry, its indexes and the new state in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import lmdb
from amanah.protocol import crypto, ids, log
from amanah.protocol.errors import FormatError
from amanah.protocol.log import CollectionState, Entry

from .errors import DamagedError, NotFound, Unreadable
from .identity import Identity
from .store import Store, seq_key


@dataclass(frozen=True)
class CollectionInfo:
    state: CollectionState
    name: str | None  # None when encrypted and this node cannot read it

    @property
    def id(self) -> bytes:
        return self.state.id

    @property
    def id_text(self) -> str:
        return ids.to_text("col", self.state.id)


def _decode_state(collection: bytes, raw: bytes) -> CollectionState:
    try:
        state = CollectionState.from_cbor(bytes(raw))
        if state.id != collection:
            raise FormatError("state of another collection")
        return state
    except (FormatError, ValueError, TypeError, KeyError) as exc:
        raise DamagedError(
            f"the stored state of collection {ids.to_text('col', collection)} is damaged ({exc}); "
            "it can be rebuilt from its log"
        ) from None


class Archive:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._db = store.db
        self._keys: dict[tuple[bytes, int], bytes] = {}

    # --- reading ------------------------------------------------------------------------------

    def state(self, txn: lmdb.Transaction, collection: bytes) -> CollectionState | None:
        raw = txn.get(collection, db=self._db["cols"])
        return _decode_state(collection, raw) if raw is not None else None

    def states(self, txn: lmdb.Transaction) -> list[CollectionState]:
        return list(self.iter_states(txn))

    def iter_states(
        self, txn: lmdb.Transaction, after: bytes | None = None
    ) -> Iterator[CollectionState]:
        """The collections held, in ascending order of id; only those after `after` if given."""
        cursor = txn.cursor(self._db["cols"])
        if after is None:
            found = cursor.first()
        else:
            found = cursor.set_range(after)
            if found and bytes(cursor.key()) == after:
                found = cursor.next()
        while found:
            yield _decode_state(bytes(cursor.key()), cursor.value())
            found = cursor.next()

    def entry(self, txn: lmdb.Transaction, collection: bytes, seq: int) -> Entry:
        raw = txn.get(seq_key(collection, seq), db=self._db["log"])
        if raw is None:
            raise DamagedError(f"log entry {seq} of {ids.to_text('col', collection)} is missing")
        try:
            return log.parse_entry(bytes(raw))
        except FormatError as exc:
            raise DamagedError(
                f"log entry {seq} of {ids.to_text('col', collection)} is damaged: {exc}"
            ) from None

    def raw_entries(
        self, txn: lmdb.Transaction, collection: bytes, start: int = 0, reverse: bool = False
    ) -> Iterator[tuple[int, bytes]]:
        """(seq, raw entry) from `start` on, as stored (not verified); newest first if `reverse`
        (a page of the newest items must not walk the whole log)."""
        cursor = txn.cursor(self._db["log"])
        if reverse:
            # One step back from the first key past this collection's log (or from the last key).
            past = cursor.set_range(seq_key(collection, (1 << 64) - 1))
            if not (cursor.prev() if past else cursor.last()):
                return
            for key, value in cursor.iterprev():
                seq = int.from_bytes(key[-8:], "big")
                if key[:-8] != collection or seq < start:
                    return
                yield seq, value
            return
        if not cursor.set_range(seq_key(collection, start)):
            return
        for key, value in cursor:
            if key[:-8] != collection:
                return
            yield int.from_bytes(key[-8:], "big"), value

    # --- writing: the one path every log entry takes ------------------------------------------

    def create(self, txn: lmdb.Transaction, genesis: Entry) -> CollectionState:
        state = CollectionState.from_genesis(genesis)
        if txn.get(state.id, db=self._db["cols"]) is not None:
            raise FormatError("collection exists already")
        self._write(txn, state, genesis)
        self.save_state(txn, state)
        self.mark_complete(txn, state.id, 1)  # a genesis alone names no content
        return state

    def append_entry(
        self,
        txn: lmdb.Transaction,
        state: CollectionState,
        entry: Entry,
        signature_checked: bool = False,
        save_state: bool = True,
    ) -> None:
        """Check `entry` against `state` (which advances) and store it.

        `save_state=False` defers writing the advanced state to a later `save_state` call in the
        same transaction (a batch of appends writes it once).
        """
        state.apply(entry, signature_checked)
        self._write(txn, state, entry)
        if save_state:
            self.save_state(txn, state)

    def save_state(self, txn: lmdb.Transaction, state: CollectionState) -> None:
        txn.put(state.id, state.to_cbor(), db=self._db["cols"])

    def append(
        self,
        txn: lmdb.Transaction,
        state: CollectionState,
        identity: Identity,
        type_: str,
        at: int,
        save_state: bool = True,
        **fields: object,
    ) -> Entry:
        """Make, sign and store the next entry of a collection this node owns."""
        if state.owner != identity.public_key:
            raise FormatError("only the owner appends to a collection's log")
        body = log.next_body(state, type_, at, **fields)
        entry = log.make_entry(identity.signing_key, body, validate=type_ != "item")
        self.append_entry(txn, state, entry, signature_checked=True, save_state=save_state)
        if save_state:  # the owner's own append stores all it names: completeness carries over
            self.advance_complete(txn, state.id, state.length - 1, state.length)
        return entry

    def _write(self, txn: lmdb.Transaction, state: CollectionState, entry: Entry) -> None:
        key = seq_key(state.id, entry.seq)
        if not txn.put(key, entry.raw, db=self._db["log"], overwrite=False):
            raise FormatError("a log entry is already stored at that position")
        b = entry.body
        if "key" in b or "wrap" in b:
            txn.put(key, b"", db=self._db["keylog"])

    # --- completeness: "this node held every block of the collection at log length L" ---------

    def complete_at(self, txn: lmdb.Transaction, col: bytes) -> int | None:
        raw = txn.get(col, db=self._db["complete"])
        return int.from_bytes(raw, "big") if raw is not None else None

    def mark_complete(self, txn: lmdb.Transaction, col: bytes, length: int) -> None:
        txn.put(col, length.to_bytes(8, "big"), db=self._db["complete"])

    def advance_complete(self, txn: lmdb.Transaction, col: bytes, old: int, new: int) -> None:
        """After appends whose content is all stored (the owner's own): complete stays so."""
        if self.complete_at(txn, col) == old:
            self.mark_complete(txn, col, new)

    # --- keys ---------------------------------------------------------------------------------

    def epoch_key(
        self, txn: lmdb.Transaction, state: CollectionState, epoch: int, identity: Identity
    ) -> bytes:
        """The collection key of `epoch`, unwrapped with this node's identity, or Unreadable."""
        cached = self._keys.get((state.id, epoch))
        if cached is not None:
            return cached
        me = identity.public_key
        chained: dict[int, bytes] = {}  # epoch -> previous key sealed under this epoch's key
        direct: dict[int, bytes] = {}  # epoch -> key sealed to me
        cursor = txn.cursor(self._db["keylog"])
        if cursor.set_range(seq_key(state.id, 0)):
            for key in cursor.iternext(keys=True, values=False):
                if key[:-8] != state.id:
                    break
                body = self.entry(txn, state.id, int.from_bytes(key[-8:], "big")).body
                record = body.get("key")
                if record is not None:
                    if "prev" in record:
                        chained[record["epoch"]] = record["prev"]
                    for reader, sealed in record["wraps"]:
                        if reader == me:
                            direct[record["epoch"]] = sealed
                if body.get("peer") == me and "wrap" in body:
                    direct[body["epoch"]] = body["wrap"]
        usable = sorted(e for e in direct if e >= epoch)
        if not usable:
            raise Unreadable(
                f"this node holds {ids.to_text('col', state.id)} only as ciphertext: "
                f"it is a {state.tier} collection and this node is not one of its readers"
            )
        current = usable[0]
        key = crypto.unwrap_key(identity.signing_key, direct[current])
        self._keys[(state.id, current)] = key
        while current > epoch:
            key = crypto.chain_open(key, chained[current], state.id, current)
            current -= 1
            self._keys[(state.id, current)] = key
        return key

    def info(
        self, txn: lmdb.Transaction, state: CollectionState, identity: Identity | None
    ) -> CollectionInfo:
        genesis = self.entry(txn, state.id, 0)
        if state.tier == "public":
            return CollectionInfo(state, genesis.body["name"])
        if identity is None:
            return CollectionInfo(state, None)
        try:
            return CollectionInfo(
                state, log.open_name(genesis, self.epoch_key(txn, state, 0, identity))
            )
        except Unreadable:
            return CollectionInfo(state, None)

    def require(self, txn: lmdb.Transaction, collection: bytes) -> CollectionState:
        state = self.state(txn, collection)
        if state is None:
            raise NotFound(f"no collection {ids.to_text('col', collection)} on this node")
        return state
