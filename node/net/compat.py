"""Every workaround for libp2p 0.8.1, in one place (see shared/notes/libp2p-0.8.1.md).

Importing this module imports libp2p and applies the process-wide fixes:

- trap 4: `swarm._HAPPY_EYEBALLS_DELAY = 0`. Every dial otherwise waits 250 ms after its (only)
  address before giving up on a second one that we never have.
- trap 8: the `libp2p` logger is left with `propagate=False` and no handler, so its warnings go
  raw to stderr; we let them propagate into the node's logging instead.

The per-host fixes are functions used by host.py:

- `ended_cleanly()`: libp2p reports a reset stream and a lost connection as a clean end of
  stream; yamux's flags on the stream tell them apart, so a peer that vanishes at a frame
  boundary is `StreamBroken`, not a complete conversation.
- trap 7: `forget_addrs()` clears a peer's addresses and lifts the 60 s negative dial cache
  before we dial it at a fresh address (a restarted peer on a new port).
- the dial retry loop is turned off (`no_dial_retries`): three retries with back-off turned
  every refused dial into ~0.7 s and four handshakes; the caller (sync) owns retrying.
- the auto-connector is stopped (`stop_auto_connector`): it re-dials any peer in the
  peerstore on a timer, which would undo `Network.disconnect()` and dial peers the node never
  asked for. The node connects only when its own code asks.

Trap 5 (the varint reader) is avoided by never using libp2p's message readers: framing.py.
Private names touched here (`_HAPPY_EYEBALLS_DELAY`, and in fastio.py the Noise session's
attributes) are pinned to LIBP2P_VERSION and checked by tests/test_net_internals.py.
"""

from __future__ import annotations

import logging
from importlib.metadata import version

import libp2p  # noqa: F401  (runs libp2p's own logging setup first, so ours wins)
import libp2p.network.swarm as _swarm
from libp2p.abc import IHost, INetStream
from libp2p.network.config import RetryConfig
from libp2p.peer.id import ID

LIBP2P_VERSION = "0.8.1"
INSTALLED_VERSION = version("libp2p")

log = logging.getLogger("amanah.net")


def _apply_process_fixes() -> None:
    if INSTALLED_VERSION != LIBP2P_VERSION:
        log.warning(
            "libp2p %s is installed but this node was built and tested against %s",
            INSTALLED_VERSION,
            LIBP2P_VERSION,
        )
    _swarm._HAPPY_EYEBALLS_DELAY = 0
    libp2p_logger = logging.getLogger("libp2p")
    libp2p_logger.propagate = True
    # Without LIBP2P_DEBUG libp2p installs no handler; with it, it adds its own stderr and file
    # handlers. Either way the node's logging configuration decides where records go.
    libp2p_logger.handlers.clear()
    # libp2p pins this one logger to INFO; let it inherit WARNING like the rest.
    logging.getLogger("libp2p.network.auto_connector").setLevel(logging.NOTSET)


def no_dial_retries(host: IHost) -> None:
    """Fail a dial on the first error instead of retrying with back-off."""
    host.get_network().retry_config = RetryConfig(max_retries=0)  # type: ignore[attr-defined]


async def stop_auto_connector(host: IHost) -> None:
    """Stop libp2p from dialing peers on its own (call once the host runs)."""
    await host.get_network().auto_connector.stop()  # type: ignore[attr-defined]


def ended_cleanly(stream: INetStream) -> bool:
    """Did the peer really close this stream (FIN), rather than reset it or lose the connection?

    libp2p 0.8.1 reports all three as end of stream (`StreamEOF`) once the reader has drained
    what was buffered: yamux forgets a reset stream, and then says "closed". Its stream object
    still has the flags: a FIN sets `recv_closed`; a RST, or the connection dying, sets
    `reset_received` (which our own reset sets too, but we never read after that).
    """
    muxed = getattr(stream, "muxed_stream", None)
    if muxed is None or not hasattr(muxed, "reset_received"):
        return True  # not yamux: trust the EOF
    return bool(muxed.recv_closed) and not muxed.reset_received


def forget_addrs(host: IHost, peer: ID) -> None:
    """Drop what we knew of a peer's addresses and its negative dial cache entry."""
    host.get_peerstore().clear_addrs(peer)
    host.get_network().unblock_peer(peer)  # type: ignore[attr-defined]


_apply_process_fixes()
