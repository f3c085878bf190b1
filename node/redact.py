"""Redaction: a signed tombstone in the log, and the item's record and blocks erased.

The "item" entry stays (the log is the custody record and must stay verifiable), but the
record, with its metadata, and every block no other live item uses are removed from this node;
peers do the same when the tombstone reaches them.
"""

from __future__ import annotations

from amanah.protocol import crypto, log
from amanah.protocol.errors import FormatError

from .collections import now_ms
from .errors import InvalidInput, NotFound
from .home import Node
from .ingest import release_refs
from .items import known_blocks, load_record, locate, redaction


def redact(node: Node, ref: str, reason: str) -> log.Entry:
    located = locate(node, ref)
    try:
        reason = log.check_text(reason.strip(), "redaction reason", log.MAX_REASON)
    except FormatError as exc:
        raise InvalidInput(str(exc)) from None
    identity = node.identity
    with node.store.write() as txn:
        state = node.archive.require(txn, located.collection)
        if state.owner != identity.public_key:
            raise InvalidInput("only the collection's owner can redact its items")
        if redaction(node, txn, located.collection, located.id) is not None:
            raise NotFound(f"item {located.id_text} is already redacted")
        record = load_record(node, txn, located.id)
        doomed = known_blocks(node, txn, record)
        seq = state.length
        fields: dict = {"item": located.id}
        if state.tier == "public":
            fields["reason"] = reason
        else:
            key = node.archive.epoch_key(txn, state, state.epoch, identity)
            fields["epoch"] = state.epoch
            fields["reason_enc"] = crypto.seal_log_text(
                key, log.reason_context(state.id, seq), reason
            )
        entry = node.archive.append(txn, state, identity, "redact", now_ms(), **fields)
        key = located.collection + located.id
        txn.put(key, seq.to_bytes(8, "big"), db=node.store.db["redacted"])
        txn.delete(located.id, db=node.store.db["records"])
        release_refs(node, txn, doomed)
    return entry


def reason_of(node: Node, collection: bytes, seq: int) -> str:
    """The redaction reason at `seq`, decrypted if needed and possible."""
    with node.store.read() as txn:
        body = node.archive.entry(txn, collection, seq).body
        if "reason" in body:
            return body["reason"]
        state = node.archive.require(txn, collection)
        key = node.archive.epoch_key(txn, state, body["epoch"], node.identity)
        return crypto.open_log_text(key, log.reason_context(collection, seq), body["reason_enc"])
