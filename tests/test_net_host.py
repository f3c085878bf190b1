"""Network over real libp2p hosts on 127.0.0.1: trust in both directions, framing, many streams,
reconnection. Every host listens on 127.0.0.1 port 0; every test runs under a deadline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import struct
import tracemalloc

import pytest
import trio
from amanah.node.net import (
    DialError,
    FramedStream,
    FrameError,
    NetError,
    StreamBroken,
    StreamRefused,
    UntrustedPeer,
)
from amanah.node.net import host as host_mod

from .netutil import AllowList, Recorder, node, serving, trio_test, trust_each_other

PROTO = "/amanah/test/1"
ID_RE = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]+$"


def untrusted_warnings(caplog, peer_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "amanah.net" and r.levelno == logging.WARNING and peer_id in r.getMessage()
    ]


@trio_test()
async def test_trusted_peers_exchange_frames_both_ways():
    a, b = node(), node()
    trust_each_other(a, b)
    at_a, at_b = Recorder(), Recorder()
    a.handle(PROTO, at_a)
    b.handle(PROTO, at_b)
    async with serving(a, b) as (a_addrs, b_addrs):
        assert all(x.endswith(f"/p2p/{a.peer_id}") for x in a_addrs)
        assert all(x.startswith("/ip4/127.0.0.1/tcp/") for x in a_addrs + b_addrs)
        assert a.addrs() == a_addrs
        # A opens to B, and B opens to A over the same connection.
        async with await a.open(b.peer_id, b_addrs, PROTO) as s:
            assert s.peer_id == b.peer_id and s.protocol == PROTO
            for size in (1, 1000, 200_000):
                msg = os.urandom(size)
                await s.send(msg)
                assert await s.recv(1 << 20) == msg
        async with await b.open(a.peer_id, [], PROTO) as s:
            await s.send(b"from b")
            assert await s.recv(100) == b"from b"
        assert a.connected() == [b.peer_id] and b.connected() == [a.peer_id]
        assert at_b.peers == [a.peer_id] and at_a.peers == [b.peer_id]
        await a.disconnect(b.peer_id)
        await trio.sleep(0.05)
        assert a.connected() == [] and b.connected() == []
    assert a.addrs() == [] and a.connected() == []


def test_peer_id_is_the_node_identity_peer_id():
    from amanah.node.identity import Identity

    identity = Identity.generate()
    a, b = node(seed=identity.seed), node(seed=identity.seed)
    assert a.peer_id == b.peer_id == identity.peer_id
    assert a.peer_id != node().peer_id
    assert a.peer_id.startswith("12D3KooW")


@trio_test()
async def test_untrusted_peer_dialing_us_is_refused_after_noise(caplog):
    caplog.set_level(logging.WARNING, logger="amanah.net")
    us, them = node(), node()
    them.allow.add(us.peer_id)  # they trust us; we do not trust them
    ours, theirs = Recorder(), Recorder()
    us.handle(PROTO, ours)
    them.handle(PROTO, theirs)
    async with serving(us, them) as (us_addrs, _):
        with pytest.raises(DialError):
            await them.open(us.peer_id, us_addrs, PROTO)
        await trio.sleep(0.05)
        assert us.connected() == [] and them.connected() == []
    assert ours.peers == [] and theirs.peers == []
    assert them.peer_id in us.allow.asked
    assert untrusted_warnings(caplog, them.peer_id)


@trio_test()
async def test_we_never_dial_an_untrusted_peer():
    us, them = node(), node()
    them.allow.add(us.peer_id)
    theirs = Recorder()
    them.handle(PROTO, theirs)
    async with serving(us, them) as (_, them_addrs):
        with pytest.raises(UntrustedPeer):
            await us.open(them.peer_id, them_addrs, PROTO)
        assert us.connected() == [] and them.connected() == []
    assert theirs.peers == []


@trio_test()
async def test_untrusted_peer_we_dial_is_refused_after_noise(caplog):
    """The outbound gate: the allow-list changes between `open`'s check and the handshake."""
    caplog.set_level(logging.WARNING, logger="amanah.net")

    class TrustedOnce(AllowList):
        def __call__(self, peer_id: str) -> bool:
            self.asked.append(peer_id)
            return len(self.asked) == 1

    us, them = node(TrustedOnce()), node()
    them.allow.add(us.peer_id)
    theirs = Recorder()
    them.handle(PROTO, theirs)
    async with serving(us, them) as (_, them_addrs):
        with pytest.raises(DialError):
            await us.open(them.peer_id, them_addrs, PROTO)
        await trio.sleep(0.05)
        assert us.connected() == [] and them.connected() == []
    assert us.allow.asked == [them.peer_id, them.peer_id]  # open(), then the Noise gate
    assert theirs.peers == []  # no stream, not a byte of application data
    assert untrusted_warnings(caplog, them.peer_id)


@trio_test()
async def test_peer_removed_while_connected_cannot_open_streams(caplog):
    caplog.set_level(logging.WARNING, logger="amanah.net")
    us, them = node(), node()
    trust_each_other(us, them)
    ours = Recorder()
    us.handle(PROTO, ours)
    async with serving(us, them) as (us_addrs, _):
        s = await them.open(us.peer_id, us_addrs, PROTO)
        await s.send(b"before")
        assert await s.recv(100) == b"before"

        us.allow.discard(them.peer_id)
        with pytest.raises(NetError):  # refused at negotiation, or reset right after
            s2 = await them.open(us.peer_id, [], PROTO)
            await s2.send(b"after")
            await s2.recv(100)
        assert ours.peers == [them.peer_id]  # the handler never ran for the second stream
        assert ours.frames == [b"before"]
        # The second gate also disconnected them, which ended the older stream too.
        await trio.sleep(0.05)
        assert us.connected() == []
        with pytest.raises(NetError):
            await s.send(b"still there?")
            await s.recv(100)
        # And they cannot come back: the connection gate refuses them now.
        with pytest.raises(DialError):
            await them.open(us.peer_id, us_addrs, PROTO)
    assert untrusted_warnings(caplog, them.peer_id)


@trio_test()
async def test_drop_untrusted_ends_open_streams():
    us, them = node(), node()
    trust_each_other(us, them)
    them.handle(PROTO, Recorder())
    async with serving(us, them) as (_, them_addrs):
        s = await us.open(them.peer_id, them_addrs, PROTO)
        await s.send(b"x")
        assert await s.recv(10) == b"x"
        assert await us.drop_untrusted() == []
        us.allow.discard(them.peer_id)
        assert await us.drop_untrusted() == [them.peer_id]
        assert us.connected() == []
        with pytest.raises(NetError):
            await s.send(b"y")
            await s.recv(10)


@trio_test()
async def test_plaintext_client_is_refused():
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
    from libp2p.stream_muxer.yamux.yamux import Yamux
    from multiaddr import Multiaddr

    kp = create_new_key_pair(os.urandom(32))
    us = node(AllowList(ID.from_pubkey(kp.public_key).to_base58()))  # trusted, even so
    ours = Recorder()
    us.handle(PROTO, ours)
    plain = new_host(
        key_pair=kp,
        sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)},
        muxer_opt={TProtocol(YAMUX): Yamux},
    )
    async with serving(us) as ([us_addrs]):
        async with plain.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            with pytest.raises(Exception):  # noqa: B017  (libp2p's own exception types)
                await plain.connect(info_from_p2p_addr(Multiaddr(us_addrs[0])))
            await trio.sleep(0.05)
            assert plain.get_connected_peers() == []
        assert us.connected() == []
    assert ours.peers == []


@trio_test()
async def test_garbage_on_the_port_is_dropped():
    us = node()
    async with serving(us) as ([us_addrs]):
        port = int(us_addrs[0].split("/")[4])
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        await sock.send_all(b"GET / HTTP/1.1\r\n\r\n" + os.urandom(100))
        with trio.fail_after(5):
            while await sock.receive_some(1000):
                pass  # the multistream error reply, then the connection is closed
        await sock.aclose()
        assert us.connected() == []


@trio_test()
async def test_oversized_frame_header_is_refused_fast_without_allocating():
    us, them = node(), node()
    trust_each_other(us, them)
    seen: list[object] = []

    async def handler(stream: FramedStream) -> None:
        tracemalloc.start()
        try:
            await stream.recv(1 << 20)
        except FrameError as e:
            seen.append(e)
            seen.append(tracemalloc.get_traced_memory()[1])
            raise
        finally:
            tracemalloc.stop()

    us.handle(PROTO, handler)
    async with serving(us, them) as (us_addrs, _):
        s = await them.open(us.peer_id, us_addrs, PROTO)
        # A lying header, written under the framing: 1 GiB announced, nothing follows.
        await s._stream.write(struct.pack(">I", 1 << 30))
        with trio.fail_after(2):
            with pytest.raises(StreamBroken):  # we reset the stream
                await s.recv(100)
    assert isinstance(seen[0], FrameError)
    assert seen[1] < 4 << 20  # peak traced memory during recv


@trio_test()
async def test_eof_inside_a_frame_raises_over_libp2p():
    us, them = node(), node()
    trust_each_other(us, them)
    seen: list[BaseException] = []

    async def handler(stream: FramedStream) -> None:
        assert await stream.recv(1000) == b"whole"
        try:
            await stream.recv(1000)
        except FrameError as e:
            seen.append(e)

    us.handle(PROTO, handler)
    async with serving(us, them) as (us_addrs, _):
        s = await them.open(us.peer_id, us_addrs, PROTO)
        await s.send(b"whole")
        await s._stream.write(struct.pack(">I", 100) + b"only ten b")
        await s.close_write()
        with trio.fail_after(5):
            while not seen:
                await trio.sleep(0.01)
    assert "ended inside a frame" in str(seen[0])


@trio_test()
async def test_handler_error_resets_the_stream_and_the_connection_survives():
    us, them = node(), node()
    trust_each_other(us, them)

    async def broken(stream: FramedStream) -> None:
        await stream.recv(100)
        raise RuntimeError("handler bug")

    us.handle(PROTO, broken)
    us.handle("/amanah/echo/1", Recorder())
    async with serving(us, them) as (us_addrs, _):
        s = await them.open(us.peer_id, us_addrs, PROTO)
        await s.send(b"x")
        with pytest.raises(StreamBroken):
            await s.recv(100)
        s = await them.open(us.peer_id, [], "/amanah/echo/1")
        await s.send(b"still fine")
        assert await s.recv(100) == b"still fine"
        with pytest.raises(StreamRefused):
            await them.open(us.peer_id, [], "/amanah/nothing/1")


@trio_test(timeout=40)
async def test_50_concurrent_streams_stay_correct():
    us, them = node(), node()
    trust_each_other(us, them)

    async def digest(stream: FramedStream) -> None:
        h = hashlib.sha256()
        while frame := await stream.recv(1 << 20):
            h.update(frame)
        await stream.send(h.digest())

    them.handle(PROTO, digest)
    results: dict[int, tuple[bytes, bytes]] = {}

    async def one(i: int, addrs: list[str]) -> None:
        rng = random.Random(i)
        frames = [rng.randbytes(rng.choice((1, 100, 5000, 70_000, 300_000))) for _ in range(4)]
        async with await us.open(them.peer_id, addrs, PROTO) as s:
            for f in frames:
                await s.send(f)
            await s.close_write()
            results[i] = (await s.recv(32), hashlib.sha256(b"".join(frames)).digest())

    async with serving(us, them) as (_, them_addrs):
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i, them_addrs)
        assert us.connected() == [them.peer_id]  # one connection, 50 streams
    assert len(results) == 50
    assert all(got == want for got, want in results.values())


@trio_test(timeout=30)
async def test_reconnect_after_the_peer_restarts_on_a_new_port():
    seed = os.urandom(32)
    us, them = node(), node(seed=seed)
    trust_each_other(us, them)
    them.handle(PROTO, Recorder())
    async with serving(us):
        async with serving(them) as ([old_addrs]):
            async with await us.open(them.peer_id, old_addrs, PROTO) as s:
                await s.send(b"one")
                assert await s.recv(10) == b"one"
        # They are gone: once we notice, a dial fails and libp2p puts them in its 60 s
        # negative cache, which would refuse any dial to them, at any address, for a minute.
        while us.connected():
            await trio.sleep(0.01)
        with pytest.raises(DialError):
            await us.open(them.peer_id, old_addrs, PROTO)
        negative_cache = us._host.get_network()._negative_peer_cache  # the trap is armed
        assert negative_cache.is_blocked(them.peer_id)
        # The same peer (same seed) comes back on a new port.
        again = node(them.allow, seed=seed)
        again.handle(PROTO, Recorder())
        async with serving(again) as ([new_addrs]):
            assert new_addrs != old_addrs
            async with await us.open(them.peer_id, new_addrs, PROTO) as s:
                await s.send(b"two")
                assert await s.recv(10) == b"two"


@trio_test()
async def test_address_of_another_peer_is_not_dialed_as_this_one():
    us, them, other = node(), node(), node()
    trust_each_other(us, them, other)
    async with serving(us, them, other) as (_, them_addrs, other_addrs):
        with pytest.raises(ValueError):  # a /p2p/ part naming someone else
            await us.open(them.peer_id, other_addrs, PROTO)
        bare = other_addrs[0].rsplit("/p2p/", 1)[0]
        with pytest.raises(DialError):  # Noise authenticates `other`, not `them`
            await us.open(them.peer_id, [bare], PROTO)
        # A bad address first, then a good one: each address is tried in turn.
        them.handle(PROTO, Recorder())
        s = await us.open(them.peer_id, [bare, them_addrs[0]], PROTO)
        await s.send(b"ok")
        assert await s.recv(10) == b"ok"


@trio_test()
async def test_listening_on_a_port_in_use_fails_loudly():
    a = node()
    async with serving(a) as ([a_addrs]):
        port = a_addrs[0].split("/")[4]
        from amanah.node.net import Network

        b = Network(os.urandom(32), [f"/ip4/127.0.0.1/tcp/{port}"], AllowList())
        # libp2p alone would share the port (SO_REUSEPORT) and split inbound connections.
        with pytest.raises(NetError, match="could not listen"):
            await b.serve()


def test_only_tcp_listen_addresses_are_accepted():
    from amanah.node.net import Network

    for addr in ("/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0/ws", "/dns4/x/tcp/1"):
        with pytest.raises(ValueError):
            Network(os.urandom(32), [addr], AllowList())
    with pytest.raises(ValueError):
        Network(b"short", ["/ip4/127.0.0.1/tcp/0"], AllowList())


@trio_test()
async def test_stopping_closes_the_listener():
    a = node()
    async with serving(a) as ([a_addrs]):
        port = int(a_addrs[0].split("/")[4])
    # libp2p's host.run() alone would leave the listener accepting connections.
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


@trio_test(timeout=40)
async def test_a_peer_holding_too_many_streams_has_new_ones_reset(caplog, monkeypatch):
    monkeypatch.setattr(host_mod, "MAX_INBOUND_STREAMS", 5)
    us, them = node(), node()
    trust_each_other(us, them)
    release = trio.Event()

    async def hold(stream: FramedStream) -> None:
        await stream.recv(100)
        await release.wait()
        await stream.send(b"done")

    them.handle(PROTO, hold)
    async with serving(us, them) as (_, them_addrs):
        held = []
        for _ in range(5):
            s = await us.open(them.peer_id, them_addrs, PROTO)
            await s.send(b"x")
            held.append(s)
        await trio.sleep(0.2)  # all five are in the handler now
        with pytest.raises((StreamBroken, StreamRefused)):  # reset as it opens, or after
            extra = await us.open(them.peer_id, them_addrs, PROTO)
            await extra.send(b"x")
            await extra.recv(100)
        release.set()
        for s in held:  # the held streams were not disturbed
            assert await s.recv(100) == b"done"
            await s.close()
        with trio.fail_after(10):
            while True:  # their slots come back: a new stream is served again
                try:
                    s = await us.open(them.peer_id, them_addrs, PROTO)
                    await s.send(b"x")
                    assert await s.recv(100) == b"done"
                    break
                except (StreamBroken, StreamRefused):
                    await trio.sleep(0.05)
    assert any("resetting a new" in r.getMessage() for r in caplog.records)
