"""Trusted peers: the partners this node connects to and accepts connections from.

A peer is identified by its libp2p peer id (an Ed25519 key); adding one is an act of trust by
the operator, never the result of discovery. Its role says what it may be sent: a "partner"
may hold any collection granted to it, a "mirror" only public ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from amanah.protocol import cbor, ids
from amanah.protocol.errors import FormatError

from .errors import InvalidInput, NotFound
from .home import Node

ROLES = ("partner", "mirror")
MAX_ADDRS = 16
MAX_PEER_RECORD = 8_192


@dataclass
class Peer:
    public_key: bytes
    name: str = ""
    addrs: list[str] = field(default_factory=list)
    role: str = "partner"
    added: int = 0

    @property
    def peer_id(self) -> str:
        return ids.peer_id_from_public_key(self.public_key)

    def as_dict(self) -> dict:
        return {"peer_id": self.peer_id, "name": self.name, "addrs": self.addrs, "role": self.role}

    def encode(self) -> bytes:
        return cbor.encode(
            {"name": self.name, "addrs": self.addrs, "role": self.role, "added": self.added}
        )

    @classmethod
    def decode(cls, public_key: bytes, raw: bytes) -> Peer:
        v = cbor.decode(raw, MAX_PEER_RECORD)
        return cls(public_key, v["name"], list(v["addrs"]), v["role"], v["added"])


def parse_peer_id(text: str) -> bytes:
    try:
        return ids.public_key_from_peer_id(text.strip())
    except FormatError:
        raise InvalidInput(f"{text!r} is not an Ed25519 libp2p peer id (12D3KooW…)") from None


def check_addr(addr: str, peer_id: str | None = None) -> str:
    """A dialable multiaddr: /ip4|ip6|dns…/tcp/PORT, optionally ending in this peer's /p2p/ id."""
    parts = addr.strip().split("/")
    if len(parts) < 5 or parts[0] != "" or parts[1] not in ("ip4", "ip6", "dns", "dns4", "dns6"):
        raise InvalidInput(f"{addr!r} is not a TCP multiaddr such as /ip4/192.0.2.7/tcp/4710")
    if parts[3] != "tcp" or not parts[4].isdigit() or not 0 < int(parts[4]) < 65536:
        raise InvalidInput(f"{addr!r} is not a TCP multiaddr such as /ip4/192.0.2.7/tcp/4710")
    rest = parts[5:]
    if rest and (len(rest) != 2 or rest[0] != "p2p" or (peer_id and rest[1] != peer_id)):
        raise InvalidInput(f"{addr!r} names another peer or has extra parts")
    return "/".join(parts[:5])


def add(node: Node, peer_id: str, addrs: list[str], name: str = "", role: str = "partner") -> Peer:
    """Trust a peer (or update its addresses, name and role)."""
    key = parse_peer_id(peer_id)
    if key == node.public_key:
        raise InvalidInput("that is this node's own peer id")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    clean = list(dict.fromkeys(check_addr(a, peer_id) for a in addrs))
    if len(clean) > MAX_ADDRS:
        raise InvalidInput(f"at most {MAX_ADDRS} addresses per peer")
    with node.store.write() as txn:
        old = txn.get(key, db=node.store.db["peers"])
        peer = Peer(key, name, clean, role, int(time.time()))
        if old is not None:
            prev = Peer.decode(key, bytes(old))
            peer.added = prev.added
            peer.name = name or prev.name
            peer.addrs = list(dict.fromkeys(clean + prev.addrs))[:MAX_ADDRS]
        txn.put(key, peer.encode(), db=node.store.db["peers"])
    return peer


def all_peers(node: Node) -> list[Peer]:
    with node.store.read() as txn:
        return [Peer.decode(bytes(k), bytes(v)) for k, v in txn.cursor(node.store.db["peers"])]


def get(node: Node, ref: str) -> Peer:
    """A trusted peer by peer id or by its unique name."""
    peers = all_peers(node)
    for p in peers:
        if p.peer_id == ref.strip():
            return p
    named = [p for p in peers if p.name and p.name == ref]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise InvalidInput(f"several peers are named {ref!r}; use a peer id")
    raise NotFound(f"{ref!r} is not one of this node's peers (amanah peer list)")


def remove(node: Node, ref: str) -> Peer:
    peer = get(node, ref)
    with node.store.write() as txn:
        txn.delete(peer.public_key, db=node.store.db["peers"])
    return peer


def is_trusted(node: Node, public_key: bytes) -> bool:
    with node.store.read() as txn:
        return txn.get(public_key, db=node.store.db["peers"]) is not None
