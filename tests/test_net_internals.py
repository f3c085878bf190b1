"""Pins on libp2p 0.8.1 internals that node/net relies on, and the fast I/O path's correctness.

If libp2p is upgraded, these fail first and say which workaround to revisit: compat.py and
fastio.py name every private attribute used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random

import pytest
import trio
from amanah.node.net import FramedStream, NetError

from .netutil import node, serving, trio_test, trust_each_other

PROTO = "/amanah/test/1"


def secured_conn(net, peer_id: str):
    from libp2p.peer.id import ID

    [conn] = net._host.get_network().connections[ID.from_base58(peer_id)]
    return conn.muxed_conn.secured_conn


def test_libp2p_is_the_pinned_version():
    from amanah.node.net import compat

    assert compat.INSTALLED_VERSION == compat.LIBP2P_VERSION == "0.8.1"


def test_process_wide_fixes_are_applied():
    import libp2p.network.swarm
    from amanah.node.net import compat  # noqa: F401

    assert libp2p.network.swarm._HAPPY_EYEBALLS_DELAY == 0  # trap 4
    lg = logging.getLogger("libp2p")
    assert lg.propagate and not lg.handlers  # trap 8
    assert logging.getLogger("libp2p.network.auto_connector").level == logging.NOTSET


def test_libp2p_warnings_reach_the_node_logging(caplog):
    from amanah.node.net import compat  # noqa: F401

    caplog.set_level(logging.WARNING)
    logging.getLogger("libp2p.network.swarm").warning("routed")
    assert any(r.name == "libp2p.network.swarm" and r.message == "routed" for r in caplog.records)


def test_yamux_batching_is_process_wide_and_an_explicit_setting_wins(monkeypatch):
    monkeypatch.delenv("PY_YAMUX_RELEASE_ON_READ", raising=False)
    node(fast_io=False)
    assert "PY_YAMUX_RELEASE_ON_READ" not in os.environ
    node()
    assert os.environ["PY_YAMUX_RELEASE_ON_READ"] == "0"
    monkeypatch.setenv("PY_YAMUX_RELEASE_ON_READ", "1")
    node()
    assert os.environ["PY_YAMUX_RELEASE_ON_READ"] == "1"
    from libp2p.stream_muxer.yamux import yamux

    assert yamux._yamux_release_on_read() is True  # read on every call, not at import
    monkeypatch.setenv("PY_YAMUX_RELEASE_ON_READ", "0")
    assert yamux._yamux_release_on_read() is False


def test_yamux_frame_cap_is_the_module_global_write_reads():
    """fastio.tune_yamux raises yamux.MAX_MESSAGE_SIZE; YamuxStream.write must read that global
    on every call (not a copy taken at import) and the stock receiver must take frames up to
    16 MiB, or the lever is silently gone."""
    import inspect

    from amanah.node.net.fastio import YAMUX_FRAME
    from libp2p.stream_muxer.yamux import yamux

    node()
    assert yamux.MAX_MESSAGE_SIZE == YAMUX_FRAME
    assert "MAX_MESSAGE_SIZE" in yamux.YamuxStream.write.__code__.co_names
    assert yamux.MAX_WINDOW_SIZE == 16 << 20
    assert "length > MAX_WINDOW_SIZE" in inspect.getsource(yamux.Yamux.handle_incoming)


# A stock receiver in a process of its own: nothing of fastio is loaded there (tune_yamux is
# process-wide), so this is what a peer running plain libp2p 0.8.1 sees of our large frames.
STOCK_RECEIVER = """
import hashlib, os, sys, trio
from amanah.node.net import Network
from libp2p.stream_muxer.yamux import yamux
assert yamux.MAX_MESSAGE_SIZE == 64 * 1024 and "PY_YAMUX_RELEASE_ON_READ" not in os.environ
net = Network(os.urandom(32), ["/ip4/127.0.0.1/tcp/0"], lambda p: p == sys.argv[1], fast_io=False)
async def hasher(stream):
    h = hashlib.sha256()
    while frame := await stream.recv(1 << 21):
        h.update(frame)
    await stream.send(h.digest())
net.handle("/amanah/test/1", hasher)
async def main():
    async with trio.open_nursery() as n:
        addrs = await n.start(net.serve)
        print(net.peer_id, addrs[0], flush=True)
        await trio.sleep(60)
trio.run(main)
"""


@trio_test(timeout=60)
async def test_large_yamux_frames_reach_a_stock_receiver_in_another_process(monkeypatch):
    import subprocess
    import sys

    from libp2p.stream_muxer.yamux import yamux

    sent_frames: list[int] = []
    write_frame = yamux.Yamux._write_frame

    async def counting(self, data: bytes) -> None:
        sent_frames.append(len(data))
        await write_frame(self, data)

    monkeypatch.setattr(yamux.Yamux, "_write_frame", counting)
    us = node()
    env = {k: v for k, v in os.environ.items() if k != "PY_YAMUX_RELEASE_ON_READ"}
    proc = subprocess.Popen(
        [sys.executable, "-c", STOCK_RECEIVER, us.peer_id],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        peer_id, addr = line.split()
        us.allow.add(peer_id)
        rng = random.Random(7)
        want = hashlib.sha256()
        async with serving(us):
            async with await us.open(peer_id, [addr], PROTO) as s:
                for size in (1 << 20, (1 << 20) + 300, 5, 3 << 20 >> 1):
                    for _ in range(4):
                        frame = rng.randbytes(min(size, (1 << 21) - 4))
                        await s.send(frame)
                        want.update(frame)
                await s.close_write()
                assert await s.recv(32) == want.digest()
    finally:
        proc.kill()
        proc.wait()
    assert max(sent_frames) > 64 << 10  # the large frames were really used


def test_stock_noise_session_has_the_attributes_batching_uses():
    """fastio.BatchingSession reads these undocumented attributes of the stock session."""
    import inspect

    from libp2p.security.noise import io, patterns
    from libp2p.security.secure_session import SecureSession

    assert io.MAX_PLAINTEXT_LENGTH == 65535 - 16
    src = inspect.getsource(patterns.PatternXX)
    assert "NoiseTransportReadWriter(conn, noise_state)" in src
    assert "conn=transport_read_writer" in src
    assert "self.read_writer = NoisePacketReadWriter(" in inspect.getsource(
        io.BaseNoiseMsgReadWriter
    )
    assert {"local_peer", "remote_peer", "is_initiator"} <= set(
        inspect.signature(SecureSession.__init__).parameters
    )
    # The cipher states the session calls directly, as NoiseConnection does after its check.
    from noise.connection import NoiseConnection
    from noise.state import CipherState

    assert "cipher_state_decrypt.decrypt_with_ad(None, data)" in inspect.getsource(
        NoiseConnection.decrypt
    )
    assert "cipher_state_encrypt.encrypt_with_ad(None, data)" in inspect.getsource(
        NoiseConnection.encrypt
    )
    assert "self.n = self.n + 1" in inspect.getsource(CipherState.decrypt_with_ad)


def test_yamux_frame_reads_go_through_the_patched_module_global():
    from amanah.node.net import fastio
    from libp2p.stream_muxer.yamux import yamux

    node()
    assert yamux.read_exactly is fastio._read_exactly
    assert "read_exactly" in yamux.Yamux._read_data_body.__code__.co_names
    assert "read_exactly" in yamux.Yamux.handle_incoming.__code__.co_names


@trio_test()
async def test_batching_session_refuses_a_tampered_message_like_the_stock_one():
    from noise.exceptions import NoiseInvalidMessage

    good = FakeNoise().encrypt(b"0123456789")
    bad = good[:-1] + b"X"
    raw = FakeRaw([len(good).to_bytes(2, "big") + good + len(bad).to_bytes(2, "big") + bad])
    session = fake_session(raw)
    with pytest.raises(NoiseInvalidMessage):
        await session.read(20)


def test_batching_session_falls_back_to_stock_for_anything_else():
    from amanah.node.net.fastio import batching_session

    class Other:
        conn = object()

    other = Other()
    assert batching_session(other) is other


@trio_test()
async def test_host_offers_noise_yamux_tcp_only_and_uses_the_fast_path():
    from amanah.node.net.fastio import BatchingSession, BufferedReader, BufferedTCP
    from libp2p.security.secure_session import SecureSession

    fast, stock = node(), node(fast_io=False)
    trust_each_other(fast, stock)
    stock.handle(PROTO, lambda s: s.close())
    async with serving(fast, stock) as (_, stock_addrs):
        for net in (fast, stock):
            upgrader = net._host.get_network().upgrader
            assert list(upgrader.security_multistream.transports) == ["/noise"]
            assert list(upgrader.muxer_multistream.transports) == ["/yamux/1.0.0"]
            transports = net._host.get_network().transport_manager.get_transports()
            assert [type(t).__name__ for t in transports] == (
                ["BufferedTCP"] if net is fast else ["TCP"]
            )
        s = await fast.open(stock.peer_id, stock_addrs, PROTO)
        await s.close()
        ours, theirs = secured_conn(fast, stock.peer_id), secured_conn(stock, fast.peer_id)
        assert type(ours) is BatchingSession and type(theirs) is SecureSession
        assert isinstance(ours._raw.stream, BufferedReader)
        assert isinstance(
            fast._host.get_network().transport_manager.get_transports()[0], BufferedTCP
        )


@trio_test()
async def test_libp2p_own_protocols_are_gated_too():
    us, them = node(), node()
    trust_each_other(us, them)
    async with serving(us, them) as (us_addrs, _):
        ping = "/ipfs/ping/1.0.0"
        s = await them.open(us.peer_id, us_addrs, ping)
        payload = os.urandom(32)
        await s._stream.write(payload)  # ping echoes 32 raw bytes (no framing)
        assert await s._stream.read(32) == payload
        us.allow.discard(them.peer_id)
        with pytest.raises(NetError):
            s = await them.open(us.peer_id, [], ping)
            await s._stream.write(payload)
            if not await s._stream.read(32):
                raise NetError("ended")


async def exchange(a, b, a_addrs_of_b: list[str], streams: int, per_stream: int) -> None:
    """Full duplex on `streams` streams: each side sends random frames, the other hashes them."""

    async def hasher(stream: FramedStream) -> None:
        h = hashlib.sha256()
        while frame := await stream.recv(1 << 20):
            h.update(frame)
        await stream.send(h.digest())

    b.handle(PROTO, hasher)

    async def one(i: int) -> None:
        rng = random.Random(i)
        want = hashlib.sha256()
        async with await a.open(b.peer_id, a_addrs_of_b, PROTO) as s:
            sent = 0
            while sent < per_stream:
                frame = rng.randbytes(rng.choice((1, 17, 4096, 65_519, 65_536, 200_000, 1 << 20)))
                await s.send(frame)
                want.update(frame)
                sent += len(frame)
            await s.close_write()
            assert await s.recv(32) == want.digest()

    async with trio.open_nursery() as nursery:
        for i in range(streams):
            nursery.start_soon(one, i)


@pytest.mark.parametrize("fast_a,fast_b", [(True, False), (False, True), (True, True)])
@trio_test(timeout=60)
async def test_fast_and_stock_peers_interoperate_both_ways(fast_a, fast_b):
    a, b = node(fast_io=fast_a), node(fast_io=fast_b)
    trust_each_other(a, b)
    async with serving(a, b) as (a_addrs, b_addrs):
        async with trio.open_nursery() as nursery:  # both directions at once
            nursery.start_soon(exchange, a, b, b_addrs, 4, 3 << 20)
            nursery.start_soon(exchange, b, a, a_addrs, 4, 3 << 20)


class FakeRaw:
    """A raw connection that serves scripted chunks (at most `n` bytes of each per read)."""

    def __init__(self, chunks: list[bytes] = ()) -> None:
        self.chunks = list(chunks)
        self.written: list[bytes] = []
        self.reads = 0

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if n is not None and len(chunk) > n:
            self.chunks.insert(0, chunk[n:])
            chunk = chunk[:n]
        return chunk

    async def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    async def close(self) -> None:
        pass

    def get_remote_address(self):
        return ("127.0.0.1", 1)


class FakeNoise:
    """Stands in for the Noise cipher states: a 16-byte tag, like ChaCha20-Poly1305's, and a
    refusal of a tampered tag, like its authentication failure."""

    def encrypt(self, data: bytes) -> bytes:
        assert isinstance(data, bytes | memoryview) and len(data) <= 65535 - 16
        return bytes(data)[::-1] + b"T" * 16

    def decrypt(self, data: bytes) -> bytes:
        data = bytes(data)
        if not data.endswith(b"T" * 16):
            from cryptography.exceptions import InvalidTag

            raise InvalidTag
        return data[:-16][::-1]

    def encrypt_with_ad(self, ad: None, data: bytes) -> bytes:
        assert ad is None
        return self.encrypt(data)

    def decrypt_with_ad(self, ad: None, data: bytes) -> bytes:
        assert ad is None
        return self.decrypt(data)


def fake_session(raw: FakeRaw):
    from types import SimpleNamespace

    from amanah.node.net.fastio import BatchingSession
    from libp2p.security.secure_session import SecureSession

    fake = FakeNoise()
    protocol = SimpleNamespace(cipher_state_encrypt=fake, cipher_state_decrypt=fake)
    conn = SimpleNamespace(
        noise_state=SimpleNamespace(noise_protocol=protocol),
        read_writer=SimpleNamespace(read_write_closer=raw),
    )
    stock = SecureSession.__new__(SecureSession)
    stock.__dict__.update(
        local_peer=None, local_private_key=None, remote_peer=None,
        remote_permanent_pubkey=None, is_initiator=True, conn=conn,
    )  # fmt: skip
    return BatchingSession(stock)


def split_noise(wire: bytes) -> list[bytes]:
    msgs, pos = [], 0
    while pos < len(wire):
        n = int.from_bytes(wire[pos : pos + 2], "big")
        msgs.append(wire[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return msgs


@trio_test()
async def test_batching_session_writes_one_raw_write_of_stock_sized_messages():
    raw = FakeRaw()
    session = fake_session(raw)
    data = os.urandom(200_000)
    await session.write(data)
    [wire] = raw.written  # one socket write for the whole yamux frame
    msgs = split_noise(wire)
    assert [len(m) for m in msgs] == [
        65535,
        65535,
        65535,
        200_000 - 3 * 65519 + 16,
    ]  # as the stock chunking
    assert b"".join(FakeNoise().decrypt(m) for m in msgs) == data
    await session.write(b"small")
    assert split_noise(raw.written[1]) == [FakeNoise().encrypt(b"small")]


@pytest.mark.parametrize(
    "piece,sizes",
    [(1, (1, 12, 300)), (3, (1, 12, 300)), (65_537, (1, 12, 500, 65_519)), (1 << 20, (65_519,))],
)
@trio_test()
async def test_batching_session_reads_exactly_whatever_the_segmentation(piece, sizes):
    rng = random.Random(piece)
    plain = [rng.randbytes(rng.choice(sizes)) for _ in range(40)]
    wire = b"".join(len(c).to_bytes(2, "big") + c for c in map(FakeNoise().encrypt, plain))
    wire += (16).to_bytes(2, "big") + b"T" * 16  # an empty message: carries nothing
    raw = FakeRaw([wire[i : i + piece] for i in range(0, len(wire), piece)])
    session = fake_session(raw)
    stream = b"".join(plain)
    got, pos = [], 0
    while pos < len(stream):
        n = rng.choice((None, 2, 12, 1000, 70_000))
        if n is not None:
            n = min(n, len(stream) - pos)  # read(n) returns exactly n, or raises
        chunk = await session.read(n)
        assert chunk and (n is None or len(chunk) == n)
        got.append(chunk)
        pos += len(chunk)
    assert b"".join(got) == stream
    from libp2p.io.exceptions import IncompleteReadError

    with pytest.raises(IncompleteReadError) as e:
        await session.read(12)
    assert e.value.is_clean_close


@trio_test()
async def test_batching_session_eof_inside_a_read_is_an_unclean_close():
    from libp2p.io.exceptions import IncompleteReadError

    msg = FakeNoise().encrypt(b"0123456789")
    raw = FakeRaw([len(msg).to_bytes(2, "big") + msg + b"\x00\x40partial"])
    session = fake_session(raw)
    with pytest.raises(IncompleteReadError) as e:
        await session.read(12)
    assert e.value.received_bytes == 10 and not e.value.is_clean_close


@trio_test()
async def test_buffered_reader_serves_small_reads_from_one_big_read():
    from amanah.node.net.fastio import BufferedReader

    data = os.urandom(300_000)
    raw = FakeRaw([data])
    reader = BufferedReader(raw, size=256 << 10)
    assert await reader.read(2) == data[:2]
    assert await reader.read(12) == data[2:14]
    assert await reader.read(0) == b""
    assert raw.reads == 1
    rest = await reader.read(None)
    assert rest == data[14 : 256 << 10]
    assert await reader.read(1 << 20) == data[256 << 10 :]
    assert await reader.read(10) == b""
    assert reader.get_remote_address() == ("127.0.0.1", 1)


def test_peer_slots_count_per_peer_up_to_the_limit():
    from amanah.node.net import PeerSlots

    slots = PeerSlots(2)
    assert slots.take("a") and slots.take("a") and not slots.take("a")
    assert slots.take("b") and slots == {"a": 2, "b": 1}
    slots.release("a")
    assert slots.take("a") and not slots.take("a")
    for peer in ("a", "a", "b"):
        slots.release(peer)
    assert slots == {}  # a peer holding nothing is absent
