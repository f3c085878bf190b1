"""What the network layer raises. Callers never need to import libp2p to handle a failure.

Hierarchy::

    AmanahError                 (amanah.node.errors)
    └── NetError                the root of this package
        ├── UntrustedPeer       we refused to talk to a peer our allow-list does not trust
        ├── DialError           no connection to the peer could be made (unreachable, refused,
        │                       not the peer we asked for, or it does not trust us)
        ├── StreamRefused       connected, but the peer would not open a stream for the protocol
        ├── StreamClosed        this side already closed or reset the stream (a bug in the caller)
        ├── StreamBroken        the stream was reset by the peer or its connection died
        └── FrameError          the peer broke the framing: a length over the cap, a stream that
                                ended inside a frame, or an empty frame; the stream is reset

`FrameError` and `StreamBroken` both mean "stop using this stream"; the first says the peer sent
something it must not, the second only that the stream is gone.
"""

from __future__ import annotations

from ..errors import AmanahError


class NetError(AmanahError):
    """A network operation with a peer failed."""


class UntrustedPeer(NetError):
    """That peer is not on this node's list of trusted peers."""


class DialError(NetError):
    """Could not connect to the peer at any of the addresses given."""


class StreamRefused(NetError):
    """The peer is connected but refused to open a stream for this protocol."""


class StreamClosed(NetError):
    """This side already closed or reset the stream."""


class StreamBroken(NetError):
    """The peer reset the stream, or the connection to it was lost."""


class FrameError(NetError):
    """The peer sent a malformed or oversized frame; the stream was reset."""
