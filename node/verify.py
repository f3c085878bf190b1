"""`verify`: re-hash every stored block, check every signature and the hash chain, list damage.

No key is needed: block ids are hashes of the stored bytes (ciphertext for non-public tiers) and
the log is signed in the clear, so any holder can audit what it keeps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import lmdb
from amanah.protocol import ids, log
from amanah.protocol.errors import FormatError
from amanah.protocol.log import CollectionState

from .errors import DamagedError
from .home import Node
from .items import Located, block_ids, check_fits, load_record, redaction, verified_block


@dataclass
class Damage:
    kind: str  # "entry", "record", "block", "manifest", "log"
    collection: str
    problem: str
    item: str | None = None
    id: str | None = None
    position: int | None = None


@dataclass
class Report:
    collections: int = 0
    entries: int = 0
    items: int = 0
    blocks: int = 0
    bytes: int = 0
    damaged: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checked": {
                "collections": self.collections,
                "entries": self.entries,
                "items": self.items,
                "blocks": self.blocks,
                "bytes": self.bytes,
            },
            "damaged": [
                {k: v for k, v in asdict(d).items() if v is not None} for d in self.damaged
            ],
        }


def verify_all(node: Node) -> Report:
    report = Report()
    with node.store.read() as txn:
        states = node.archive.states(txn)
    for state in states:
        verify_collection(node, state, report)
    return report


def verify_collection(node: Node, state: CollectionState, report: Report) -> Report:
    col = ids.to_text("col", state.id)
    report.collections += 1
    items: list[tuple[bytes, int]] = []
    with node.store.read() as txn:
        current: CollectionState | None = None
        resync = False
        expected = 0
        for seq, raw in node.archive.raw_entries(txn, state.id):
            report.entries += 1
            if seq != expected:
                report.damaged.append(
                    Damage("log", col, f"entries {expected} to {seq - 1} are missing")
                )
                resync = True
            expected = seq + 1
            try:
                entry = log.parse_entry(bytes(raw))
                if entry.seq != seq:
                    raise FormatError(f"entry claims position {entry.seq}")
                if current is None:
                    if seq != 0:
                        raise FormatError("the genesis entry is missing")
                    current = CollectionState.from_genesis(entry)
                    if current.id != state.id:
                        raise FormatError("genesis does not hash to the collection id")
                else:
                    if resync:
                        current.length, current.head = seq, entry.body["prev"]
                    current.apply(entry)
                resync = False
            except FormatError as exc:
                report.damaged.append(Damage("entry", col, str(exc), position=seq))
                resync = True
                if current is None:
                    break
                continue
            if entry.type == "item":
                items.extend((item_id, seq) for item_id in log.named_items(entry.body))
        if expected < state.length:
            report.damaged.append(
                Damage("log", col, f"entries {expected} to {state.length - 1} are missing")
            )
        for item_id, seq in items:
            home = txn.get(item_id, db=node.store.db["items"])
            if home is not None and bytes(home[:-8]) != state.id:
                continue  # this log lists another collection's item (SPEC 11.6.3): not ours
            if redaction(node, txn, state.id, item_id) is None:
                _verify_item(node, txn, Located(item_id, state.id, seq), report)
    return report


def verify_item(node: Node, located: Located) -> Report:
    """Check one item: its entry's signature and link, its record and every block."""
    report = Report()
    col = ids.to_text("col", located.collection)
    with node.store.read() as txn:
        state = node.archive.require(txn, located.collection)
        try:
            entry = log.parse_entry(bytes(txn.get(_key(located), db=node.store.db["log"]) or b""))
            log.verify_entry(entry, state.owner)
            previous = node.archive.entry(txn, located.collection, located.seq - 1)
            if entry.body["prev"] != previous.id:
                raise FormatError("entry does not chain to the one before it")
            if entry.type != "item" or located.id not in log.named_items(entry.body):
                raise FormatError("entry does not name the item")
            report.entries = 1
        except (FormatError, DamagedError) as exc:
            report.damaged.append(Damage("entry", col, str(exc), position=located.seq))
        if redaction(node, txn, located.collection, located.id) is None:
            _verify_item(node, txn, located, report)
    return report


def _key(located: Located) -> bytes:
    return located.collection + located.seq.to_bytes(8, "big")


def _verify_item(node: Node, txn: lmdb.Transaction, located: Located, report: Report) -> None:
    col = ids.to_text("col", located.collection)
    item = located.id_text
    report.items += 1
    try:
        record = load_record(node, txn, located.id)
        check_fits(record, node.archive.require(txn, located.collection))
        blocks = block_ids(node, txn, record)
    except DamagedError as exc:
        report.damaged.append(Damage("record", col, str(exc), item=item))
        return
    report.blocks += len(record.manifest_ids())  # verified by block_ids above
    for b in blocks:
        report.blocks += 1
        if report.blocks % 16 == 0:
            node.store.trim_map()  # constant memory over a large store (Store.trim_map)
        try:
            report.bytes += len(verified_block(node, txn, b))
        except DamagedError as exc:
            report.damaged.append(
                Damage("block", col, str(exc), item=item, id=ids.to_text("blk", b))
            )
