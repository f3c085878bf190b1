"""Replication status: what each granted peer is known to hold, and how many full copies exist.

Peers learn each other's state during sync: the puller records the heads the server announced
(with whether the server holds every block), and tells the server what it now holds itself. So
each node knows, per collection and granted peer, the last length, head and completeness seen,
and when. A copy counts when it is complete at our current head.
"""

from __future__ import annotations

import time

import lmdb
from amanah.protocol import cbor, ids, log
from amanah.protocol import item as item_mod
from amanah.protocol.log import CollectionState

from .home import Node
from .items import known_blocks, redaction


def record(
    node: Node,
    txn: lmdb.Transaction,
    col: bytes,
    peer_key: bytes,
    length: int,
    head: bytes,
    complete: bool,
) -> None:
    value = {"length": length, "head": head, "complete": complete, "seen": int(time.time())}
    txn.put(col + peer_key, cbor.encode(value), db=node.store.db["peerstate"])


def peer_states(node: Node, txn: lmdb.Transaction, col: bytes) -> dict[bytes, dict]:
    out = {}
    cursor = txn.cursor(node.store.db["peerstate"])
    if cursor.set_range(col):
        for key, value in cursor:
            if key[: len(col)] != col:
                break
            out[bytes(key[len(col) :])] = cbor.decode(bytes(value), 4096)
    return out


def is_complete(node: Node, txn: lmdb.Transaction, state: CollectionState) -> bool:
    """Whether this node holds every record and block of every live item of the collection.

    Answered from the `complete` marker when it is at the current length (a resync with
    nothing new must not rescan 100,000 items), else by scanning.
    """
    marker = node.archive.complete_at(txn, state.id)
    if marker == state.length:
        return True
    db = node.store.db
    # Items before the marker were all here when it was set: only later entries are scanned.
    start = marker if marker is not None and marker < state.length else 1
    for _, raw in node.archive.raw_entries(txn, state.id, start):
        body = log.stored_body(bytes(raw))
        if body["type"] != "item":
            continue
        for item_id in log.named_items(body):
            if redaction(node, txn, state.id, item_id) is not None:
                continue
            rec = txn.get(item_id, db=db["records"])
            if rec is None:
                return False
            record_ = item_mod.stored_record(bytes(rec), item_id)  # checked when stored
            blocks = known_blocks(node, txn, record_)
            if len(blocks) < record_.block_count + len(record_.manifest_ids()):
                return False  # a manifest is still missing
            if any(not node.blobs.has(txn, b) for b in blocks):
                return False
    return True


def collection_status(node: Node, state: CollectionState) -> dict:
    from . import peers as peers_mod

    names = {p.public_key: p.name for p in peers_mod.all_peers(node)}
    with node.store.read() as txn:
        complete = is_complete(node, txn, state)
        known = peer_states(node, txn, state.id)
    granted = sorted((set(state.grants) | {state.owner}) - {node.public_key})
    peers = []
    copies = 1 if complete else 0
    for key in granted:
        k = known.get(key)
        row = {
            "peer_id": ids.peer_id_from_public_key(key),
            "name": names.get(key, ""),
            "role": "owner" if key == state.owner else state.grants.get(key),
            "length": k["length"] if k else None,
            "head": ids.to_text("ent", k["head"]) if k else None,
            "complete": bool(k and k["complete"] and k["length"] >= state.length),
            "last_contact": k["seen"] if k else None,
        }
        copies += row["complete"] and row["length"] == state.length
        peers.append(row)
    return {
        "id": ids.to_text("col", state.id),
        "tier": state.tier,
        "log_length": state.length,
        "head": ids.to_text("ent", state.head),
        "complete": complete,
        "copies": copies,
        "peers": peers,
    }
