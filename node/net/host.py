"""`Network`: the node's libp2p host, reduced to what replication needs.

One `Network` per node, run by `serve()` in a trio task. It listens on TCP only, secures every
connection with Noise only (no plaintext, TLS or secio offered) and multiplexes with yamux only;
no QUIC, mplex, mDNS, UPnP or bootstrap. Only peers for which `is_trusted(peer_id)` is true get
a connection (gate.py), and every inbound stream is checked again before its handler runs: a
peer that left the allow-list while connected has its stream reset and is disconnected.

Streams are `FramedStream`s (framing.py): length-prefixed frames with a cap on every read.

    net = Network(seed, ["/ip4/127.0.0.1/tcp/0"], is_trusted=allow_list.__contains__)
    net.handle("/amanah/sync/1", serve_sync)           # async def serve_sync(s: FramedStream)
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(net.serve)          # real addrs, ending in /p2p/<id>
        async with await net.open(peer_id, peer_addrs, "/amanah/sync/1") as s:
            await s.send(request)
            reply = await s.recv(max_size=1 << 20)

Handlers run in their own task per stream; the stream is closed when the handler returns (reset
if it raised). Nothing here retries: a failed `open` raises at once and the caller decides.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.transport.tcp.tcp import TCP
from multiaddr import Multiaddr

from . import compat
from .errors import DialError, NetError, StreamBroken, StreamRefused, UntrustedPeer
from .fastio import BufferedTCP, tune_yamux
from .framing import MAX_FRAME, FramedStream
from .gate import TrustedNoise, check_trust
from .slots import PeerSlots

Handler = Callable[[FramedStream], Awaitable[None]]
DIAL_TIMEOUT = 10.0
# Inbound streams one peer may have open in our handlers at once, all protocols together (a
# puller uses one sync stream, a notice one short stream); more are reset on arrival.
MAX_INBOUND_STREAMS = 64
_CLOSE_TIMEOUT = 5.0
_ADDR_TTL = 3600  # seconds; every fresh dial replaces the peer's addresses anyway


class Network:
    """The node's peer-to-peer endpoint: serve, handle protocols, open streams to peers.

    `seed` is the node's 32-byte Ed25519 seed: the libp2p peer id is derived from it, so it is
    the same id as the node's identity. `listen` is a list of TCP multiaddrs (port 0 picks a
    free port).

    `is_trusted(peer_id)` is asked on every connection, every inbound stream and every `open`;
    it runs on the trio thread, so it must be quick, never block, and be safe to call while
    another thread changes the allow-list (reading a set or frozenset that is replaced whole is).
    An exception from it counts as "not trusted".

    `fast_io` turns on the measured throughput levers of fastio.py (wire-compatible with stock
    peers); turn it off to run the stock libp2p code paths. `max_frame` caps the frames our
    streams send; `dial_timeout` bounds each address tried by `open`. `logger` (default
    "amanah.net") gets refusals as warnings.

    A handler must keep reading its stream: yamux resets a stream whose sender has waited 5 s
    for window (trap 6), so slow work belongs after the read loop or in another task.
    """

    def __init__(
        self,
        seed: bytes,
        listen: Sequence[str],
        is_trusted: Callable[[str], bool],
        *,
        fast_io: bool = True,
        max_frame: int = MAX_FRAME,
        dial_timeout: float = DIAL_TIMEOUT,
        logger: logging.Logger | None = None,
    ) -> None:
        if len(seed) != 32:
            raise ValueError("the Ed25519 seed must be 32 bytes")
        self._key_pair = create_new_key_pair(seed)
        self.peer_id: str = ID.from_pubkey(self._key_pair.public_key).to_base58()
        self._listen = [_tcp_multiaddr(a) for a in listen]
        self._is_trusted = is_trusted
        self.fast_io = fast_io
        self.max_frame = max_frame
        self.dial_timeout = dial_timeout
        self.log = logger or logging.getLogger("amanah.net")
        self._handlers: dict[str, Handler] = {}
        self._inbound_open = PeerSlots(MAX_INBOUND_STREAMS)  # streams in our handlers
        self._host: IHost | None = None
        self._serving = False
        if fast_io:
            tune_yamux()

    # -- running ---------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the host until cancelled; `nursery.start(net.serve)` returns `addrs()`."""
        if self._serving:
            raise RuntimeError("this Network is already serving")
        for addr in self._listen:
            _check_port_free(addr)
        self._serving = True
        host = self._build_host()
        try:
            async with host.run(self._listen):
                listening = host.get_transport_addrs()
                if len(listening) < len(self._listen):
                    raise NetError(
                        f"could not listen on all of {[str(a) for a in self._listen]} "
                        f"(listening on {[str(a) for a in listening]}): is a port in use?"
                    )
                await compat.stop_auto_connector(host)
                self._host = host
                self.log.info("listening on %s", " ".join(self.addrs()))
                task_status.started(self.addrs())
                await trio.sleep_forever()
        finally:
            self._host = None
            self._serving = False
            # host.run() alone leaves the swarm open: its TCP listener lives in a trio system
            # task and would go on accepting (and handshaking) after we stopped.
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
                await host.close()

    def addrs(self) -> list[str]:
        """The addresses we listen on, each ending in /p2p/<our peer id> (empty when stopped)."""
        return [str(a) for a in self._host.get_addrs()] if self._host else []

    def handle(self, protocol: str, handler: Handler) -> None:
        """Serve `protocol` (e.g. "/amanah/sync/1") with `handler`, once per inbound stream."""
        if not protocol.startswith("/"):
            raise ValueError(f"a protocol id starts with '/': {protocol!r}")
        self._handlers[protocol] = handler
        if self._host is not None:
            self._host.set_stream_handler(TProtocol(protocol), self._inbound(protocol, handler))

    # -- peers -----------------------------------------------------------------------------

    async def open(self, peer_id: str, addrs: Sequence[str], protocol: str) -> FramedStream:
        """Open a stream for `protocol` to a trusted peer, dialing it first if not connected.

        `addrs` (multiaddrs, with or without /p2p/<peer_id>) replace what we knew of the peer's
        addresses and are tried one by one; empty means "use what we knew". Raises
        UntrustedPeer, DialError or StreamRefused.
        """
        host = self._running()
        if not check_trust(self._is_trusted, peer_id, self.log):
            raise UntrustedPeer(f"peer {peer_id} is not trusted")
        pid = _peer(peer_id)
        if not self._conns(pid):
            await self._dial(host, pid, [_dial_multiaddr(a, pid) for a in addrs])
        try:
            stream = await host.new_stream(pid, [TProtocol(protocol)])
        except StreamFailure as e:
            raise StreamRefused(f"peer {peer_id} refused a {protocol} stream") from e
        except Exception as e:
            raise DialError(f"no stream to {peer_id}: {_reason(e)}") from e
        return FramedStream(_Libp2pStream(stream), peer_id, protocol, max_frame=self.max_frame)

    def connected(self) -> list[str]:
        """Peer ids we have a live connection with."""
        if self._host is None:
            return []
        return [p.to_base58() for p in self._host.get_connected_peers() if self._conns(p)]

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to the peer (its open streams break). No error if none."""
        if self._host is None:
            return
        try:
            await self._host.disconnect(_peer(peer_id))
        except Exception as e:
            self.log.debug("disconnecting %s: %s", peer_id, e)

    async def drop_untrusted(self) -> list[str]:
        """Disconnect every connected peer the allow-list no longer trusts; returns their ids.

        Call it after removing peers from the allow-list: streams they open are refused anyway,
        this also ends the streams already open.
        """
        dropped = [p for p in self.connected() if not check_trust(self._is_trusted, p, self.log)]
        for p in dropped:
            self.log.warning("disconnecting peer %s: no longer trusted", p)
            await self.disconnect(p)
        return dropped

    # -- internals -------------------------------------------------------------------------

    def _running(self) -> IHost:
        if self._host is None:
            raise NetError("the network is not running")
        return self._host

    def _build_host(self) -> IHost:
        kp = self._key_pair
        host = new_host(
            key_pair=kp,
            # Explicit, or libp2p also offers TLS, secio and *plaintext* (trap 1).
            sec_opt={
                NOISE_PROTOCOL_ID: TrustedNoise(
                    kp, self._is_trusted, batching=self.fast_io, logger=self.log
                )
            },
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            # Explicit, so no transport is derived from the listen addresses (QUIC, ws, ...).
            transports=[BufferedTCP() if self.fast_io else TCP()],
            listen_addrs=self._listen,
            # Advertise what we listen on, never what peers say they see.
            disable_identify_address_discovery=True,
        )
        compat.no_dial_retries(host)
        # libp2p's own protocols (identify, ping) are gated like ours.
        for proto, raw in list(host.get_mux().handlers.items()):
            if proto is not None and raw is not None:
                host.set_stream_handler(proto, self._gated(str(proto), raw))
        for proto, handler in self._handlers.items():
            host.set_stream_handler(TProtocol(proto), self._inbound(proto, handler))
        return host

    def _gated(
        self, protocol: str, raw: Callable[[INetStream], Awaitable[None]]
    ) -> Callable[[INetStream], Awaitable[None]]:
        async def gated(stream: INetStream) -> None:
            if await self._admit(stream, protocol):
                await raw(stream)

        return gated

    def _inbound(self, protocol: str, handler: Handler) -> Callable[[INetStream], Awaitable[None]]:
        async def inbound(stream: INetStream) -> None:
            if not await self._admit(stream, protocol):
                return
            remote = stream.muxed_conn.peer_id.to_base58()
            if not self._inbound_open.take(remote):
                # yamux accepts any number of inbound streams and buffers up to a window
                # (256 KiB) on each: a peer, even a trusted one, must not hold thousands.
                self.log.warning(
                    "peer %s has %d streams open: resetting a new %s stream",
                    remote,
                    self._inbound_open[remote],
                    protocol,
                )
                await _quietly(stream.reset())
                return
            framed = FramedStream(_Libp2pStream(stream), remote, protocol, max_frame=self.max_frame)
            try:
                await handler(framed)
            except NetError as e:
                self.log.info("%s stream from %s ended: %s", protocol, remote, e)
                await framed.reset()
            except Exception:
                self.log.exception("%s handler failed on a stream from %s", protocol, remote)
                await framed.reset()
            else:
                await framed.close()
            finally:
                self._inbound_open.release(remote)

        return inbound

    async def _admit(self, stream: INetStream, protocol: str) -> bool:
        """The second gate: is the peer on this stream still trusted? If not, cut it off."""
        remote = stream.muxed_conn.peer_id.to_base58()
        if check_trust(self._is_trusted, remote, self.log):
            return True
        self.log.warning(
            "refused %s stream from untrusted peer %s: disconnecting", protocol, remote
        )
        # Reset first: the peer then sees a reset stream, not an ambiguous end of stream.
        await _quietly(stream.reset())
        await self.disconnect(remote)
        return False

    def _conns(self, pid: ID) -> bool:
        host = self._host
        if host is None:
            return False
        conns = host.get_network().connections.get(pid, [])
        return any(not getattr(c, "is_closed", False) for c in conns)

    async def _dial(self, host: IHost, pid: ID, addrs: list[Multiaddr]) -> None:
        if not addrs:
            try:
                addrs = list(host.get_peerstore().addrs(pid))
            except Exception:
                addrs = []
        if not addrs:
            raise DialError(f"no known address for peer {pid.to_base58()}")
        failures = []
        # One address at a time: libp2p dials only one TCP address per peer (trap 7).
        for addr in addrs:
            compat.forget_addrs(host, pid)
            host.get_peerstore().add_addrs(pid, [addr], _ADDR_TTL)
            try:
                with trio.fail_after(self.dial_timeout):
                    # Not host.connect(): it returns early while a closed connection to the
                    # peer is still listed, and the stream then fails with "no connection".
                    for conn in await host.get_network().dial_peer(pid):
                        await conn.event_started.wait()  # type: ignore[attr-defined]
                return
            except trio.TooSlowError:
                failures.append(f"{addr}: timed out after {self.dial_timeout:g} s")
            except Exception as e:
                failures.append(f"{addr}: {_reason(e)}")
        raise DialError(f"could not connect to {pid.to_base58()}: " + "; ".join(failures))


class _Libp2pStream:
    """A libp2p stream as a framing.ByteStream: EOF is b"", every failure is StreamBroken."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int) -> bytes:
        try:
            return await self._stream.read(max_bytes)
        except EOFError as e:  # StreamEOF: a FIN, a reset or a lost connection
            if compat.ended_cleanly(self._stream):
                return b""
            raise StreamBroken("stream reset by the peer, or the connection was lost") from e
        except Exception as e:
            raise StreamBroken(f"stream broken: {_reason(e)}") from e

    async def write(self, data: bytes) -> None:
        try:
            await self._stream.write(data)
        except Exception as e:
            raise StreamBroken(f"stream broken: {_reason(e)}") from e

    async def close_write(self) -> None:
        await _quietly(self._stream.close_write())

    async def close(self) -> None:
        await _quietly(self._stream.close())

    async def reset(self) -> None:
        await _quietly(self._stream.reset())


async def _quietly(op: Awaitable[None]) -> None:
    """Closing something already broken is not an error worth raising."""
    try:
        await op
    except Exception as e:
        logging.getLogger("amanah.net").debug("ignored while closing: %s", _reason(e))


def _reason(e: BaseException) -> str:
    """The innermost cause: libp2p wraps the useful message in layers of generic ones."""
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _peer(peer_id: str) -> ID:
    try:
        return ID.from_base58(peer_id)
    except Exception as e:
        raise ValueError(f"not a peer id: {peer_id!r}") from e


def _tcp_multiaddr(addr: str, hosts: tuple[str, ...] = ("ip4", "ip6")) -> Multiaddr:
    m = Multiaddr(addr)
    names = [p.name for p in m.protocols()]
    if len(names) != 2 or names[0] not in hosts or names[1] != "tcp":
        raise ValueError(f"not a TCP address ({'|'.join(hosts)} then tcp): {addr!r}")
    return m


def _check_port_free(addr: Multiaddr) -> None:
    """Refuse a fixed port another process listens on.

    libp2p's TCP listener sets SO_REUSEPORT, so binding a port another libp2p node already
    listens on *succeeds* and the kernel then splits inbound connections between the two
    nodes. A probe bind with SO_REUSEADDR only fails on a listening socket, not on the
    TIME_WAIT leftovers of our own previous run.
    """
    port = int(addr.value_for_protocol("tcp"))
    if port == 0:
        return
    ip6 = addr.protocols()[0].name == "ip6"
    host = addr.value_for_protocol("ip6" if ip6 else "ip4")
    with socket.socket(socket.AF_INET6 if ip6 else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise NetError(f"could not listen on {addr}: {e.strerror or e}") from e


def _dial_multiaddr(addr: str, pid: ID) -> Multiaddr:
    """A dialable TCP multiaddr; a /p2p/ part, if any, must name the peer we are dialing."""
    m = Multiaddr(addr)
    names = [p.name for p in m.protocols()]
    if names and names[-1] == "p2p":
        named = m.value_for_protocol("p2p")
        if named != pid.to_base58():
            raise ValueError(f"address {addr} is for peer {named}, not {pid.to_base58()}")
        m = m.decapsulate(Multiaddr(f"/p2p/{named}"))
    return _tcp_multiaddr(str(m), ("ip4", "ip6", "dns", "dns4", "dns6"))
