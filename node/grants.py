"""Grants: who may hold a collection, who may read it, which mirror may publish it.

A grant is an entry in the collection's log, signed by its owner: every holder can check, from
the log alone, whom it may serve. A read grant carries the current collection key sealed to the
reader. Revoking a reader appends a new key epoch wrapped to the remaining readers (and
chained to the old key), so the revoked peer reads nothing added afterwards.
"""

from __future__ import annotations

import os

from amanah.protocol import crypto, log
from amanah.protocol.errors import FormatError
from amanah.protocol.log import Entry

from . import peers as peers_mod
from .archive import CollectionInfo
from .collections import now_ms
from .errors import InvalidInput, NotFound
from .home import Node


def share(node: Node, info: CollectionInfo, peer_ref: str, read: bool = False) -> Entry:
    try:
        peer = peers_mod.get(node, peer_ref)
    except NotFound:
        # A partner of a partner: granted by peer id, served by whichever holder it connects to.
        peer = peers_mod.Peer(peers_mod.parse_peer_id(peer_ref))
    identity = node.identity
    state = info.state
    if state.owner != identity.public_key:
        raise InvalidInput("only the collection's owner can share it")
    if peer.role == "mirror":
        if state.tier != "public":
            raise InvalidInput(
                f"{peer.peer_id} is a mirror; only public collections may be sent to a mirror"
            )
        role = "mirror"
    elif read:
        if state.tier == "closed":
            raise InvalidInput("a closed collection has no readers but its owner; share it to hold")
        role = "read"
    else:
        role = "hold"
    with node.store.write() as txn:
        state = node.archive.require(txn, state.id)
        if state.grants.get(peer.public_key) == role:
            raise InvalidInput(f"{peer.peer_id} already has the {role} grant")
        fields: dict = {"peer": peer.public_key, "role": role}
        if state.grants.get(peer.public_key) == "read" and role != "read":
            raise InvalidInput("to take read access away, use unshare (it rotates the key)")
        if role == "read" and state.tier != "public":
            key = node.archive.epoch_key(txn, state, state.epoch, identity)
            fields.update(epoch=state.epoch, wrap=crypto.wrap_key(peer.public_key, key))
        return _append(node, txn, state, "grant", fields)


def unshare(node: Node, info: CollectionInfo, peer_ref: str) -> Entry:
    """Revoke a peer's grant; if it could read, rotate the collection key."""
    key = _peer_key(node, peer_ref)
    identity = node.identity
    with node.store.write() as txn:
        state = node.archive.require(txn, info.state.id)
        if state.owner != identity.public_key:
            raise InvalidInput("only the collection's owner can unshare it")
        role = state.grants.get(key)
        if role is None:
            raise InvalidInput("that peer holds no grant on this collection")
        fields: dict = {"peer": key}
        if role == "read" and state.tier != "public":
            old = node.archive.epoch_key(txn, state, state.epoch, identity)
            new = os.urandom(32)
            remaining = [r for r in state.readers() if r != key]
            fields["key"] = log.key_epoch(state.epoch + 1, new, remaining, state.id, old)
        return _append(node, txn, state, "revoke", fields)


def _peer_key(node: Node, ref: str) -> bytes:
    try:
        return peers_mod.get(node, ref).public_key
    except (NotFound, InvalidInput):
        # A removed peer can still be unshared by its peer id.
        return peers_mod.parse_peer_id(ref)


def _append(node: Node, txn: object, state: log.CollectionState, type_: str, fields: dict) -> Entry:
    try:
        return node.archive.append(txn, state, node.identity, type_, now_ms(), **fields)
    except FormatError as exc:
        raise InvalidInput(f"refused: {exc}") from None
