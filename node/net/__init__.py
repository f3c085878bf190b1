"""The node's network layer: the only package in Amanah that imports libp2p.

TCP + Noise + yamux between trusted peers only, length-prefixed frames on every stream.

    from amanah.node.net import Network, FramedStream

    net = Network(seed, ["/ip4/0.0.0.0/tcp/4001"], is_trusted=lambda peer_id: ...)
    net.handle("/amanah/sync/1", handler)          # async def handler(s: FramedStream) -> None
    addrs = await nursery.start(net.serve)         # runs until cancelled
    s = await net.open(peer_id, addrs, "/amanah/sync/1")
    await s.send(b"..."); reply = await s.recv(max_size=1 << 20); await s.close()

Modules, one concept each:

- host.py     `Network`: the libp2p host, its trust checks on streams, dialing
- framing.py  `FramedStream` (4-byte length + payload, capped reads), `memory_pair()` for tests
- gate.py     the Noise transport that refuses untrusted peers right after the handshake
- fastio.py   throughput levers (read-ahead TCP, batching Noise session, yamux window updates)
- compat.py   every libp2p 0.8.1 workaround and private name, in one place
- errors.py   `NetError` and its subclasses (the hierarchy is drawn there)
- slots.py    `PeerSlots`: per-peer counts of open streams or sessions, with a ceiling

The design and the traps it avoids: shared/notes/libp2p-0.8.1.md and shared/DESIGN.md (Network).

`Network` is imported on first use: importing libp2p takes ~0.7 s, which the framing, the
errors and code that only handles `FramedStream`s (and their tests) should not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    DialError,
    FrameError,
    NetError,
    StreamBroken,
    StreamClosed,
    StreamRefused,
    UntrustedPeer,
)
from .framing import MAX_FRAME, ByteStream, FramedStream, TrioByteStream, memory_pair
from .slots import PeerSlots

if TYPE_CHECKING:
    from .host import Network

__all__ = [
    "MAX_FRAME",
    "ByteStream",
    "DialError",
    "FrameError",
    "FramedStream",
    "NetError",
    "Network",
    "PeerSlots",
    "StreamBroken",
    "StreamClosed",
    "StreamRefused",
    "TrioByteStream",
    "UntrustedPeer",
    "memory_pair",
]


def __getattr__(name: str) -> Any:
    if name == "Network":
        from .host import Network

        return Network
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
