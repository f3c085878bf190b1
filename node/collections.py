"""Creating, finding and describing collections."""

from __future__ import annotations

import os
import time

from amanah.protocol import ids, log
from amanah.protocol.errors import FormatError

from .archive import CollectionInfo
from .errors import InvalidInput, NotFound
from .home import Node


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def create(node: Node, name: str, tier: str) -> CollectionInfo:
    if tier not in log.TIERS:
        raise InvalidInput(f"tier must be one of {', '.join(log.TIERS)}")
    name = name.strip()
    try:
        log.check_text(name, "collection name", log.MAX_NAME)
    except FormatError as exc:
        raise InvalidInput(str(exc)) from None
    identity = node.identity
    for info in list_all(node):
        if info.name == name and info.state.owner == identity.public_key:
            raise InvalidInput(f"you already have a collection named {name!r} ({info.id_text})")
    epoch_key = os.urandom(32) if tier != "public" else None
    genesis = log.genesis(identity.signing_key, name, tier, now_ms(), os.urandom(16), epoch_key)
    with node.store.write() as txn:
        state = node.archive.create(txn, genesis)
    return CollectionInfo(state, name)


def list_all(node: Node) -> list[CollectionInfo]:
    """Every collection this node holds; names of unreadable ones are None."""
    with node.store.read() as txn:
        states = node.archive.states(txn)
        needs_key = any(s.tier != "public" for s in states)
        identity = node.identity if needs_key else None
        return [node.archive.info(txn, s, identity) for s in states]


def resolve(node: Node, ref: str) -> CollectionInfo:
    """A collection by id (col_…) or by its unique name."""
    if ref.startswith("col_"):
        try:
            raw = ids.from_text(ref, "col")
        except FormatError as exc:
            raise InvalidInput(str(exc)) from None
        with node.store.read() as txn:
            state = node.archive.require(txn, raw)
            needs_key = state.tier != "public"
            return node.archive.info(txn, state, node.identity if needs_key else None)
    matches = [c for c in list_all(node) if c.name == ref]
    if not matches:
        raise NotFound(f"no collection named {ref!r} on this node (amanah collection list)")
    if len(matches) > 1:
        listed = ", ".join(c.id_text for c in matches)
        raise InvalidInput(f"several collections are named {ref!r}; use an id: {listed}")
    return matches[0]


def describe(node: Node, info: CollectionInfo) -> dict:
    """What `collection show` prints."""
    s = info.state
    items = redacted = 0
    with node.store.read() as txn:
        for _, raw in node.archive.raw_entries(txn, s.id):
            entry = log.parse_entry(bytes(raw))
            if entry.type == "item":
                items += len(log.named_items(entry.body))
            redacted += entry.type == "redact"
    return {
        **summary(info),
        "owner": ids.peer_id_from_public_key(s.owner),
        "owned": s.owner == node.public_key,
        "log_length": s.length,
        "head": ids.to_text("ent", s.head),
        "key_epoch": s.epoch,
        "items": items - redacted,
        "redacted": redacted,
        "grants": [
            {"peer_id": ids.peer_id_from_public_key(p), "role": r}
            for p, r in sorted(s.grants.items())
        ],
    }


def summary(info: CollectionInfo) -> dict:
    return {"id": info.id_text, "name": info.name, "tier": info.state.tier}
