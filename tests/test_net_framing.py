"""FramedStream over in-memory trio streams: the wire format, caps, EOF and misuse.

No libp2p here (the same checks over real hosts are in test_net_host.py).
"""

from __future__ import annotations

import os
import struct
import tracemalloc

import pytest
import trio
import trio.testing
from amanah.node.net import (
    FramedStream,
    FrameError,
    StreamClosed,
    TrioByteStream,
    memory_pair,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from .netutil import trio_test


def raw_pair(max_frame: int = 1 << 20) -> tuple[trio.abc.Stream, FramedStream]:
    """A raw trio stream to write anything on, and a FramedStream reading it."""
    a, b = trio.testing.memory_stream_pair()
    return a, FramedStream(TrioByteStream(b), "sender", "/t/1", max_frame=max_frame)


@trio_test()
async def test_frames_round_trip_both_ways_and_keep_boundaries():
    a, b = memory_pair()
    sizes = [1, 2, 3, 4, 5, 100, 65_535, 65_536, 70_000, 1 << 20]
    payloads = [os.urandom(n) for n in sizes]
    async with trio.open_nursery() as nursery:
        for p in payloads:
            nursery.start_soon(a.send, p)
            assert await b.recv(1 << 20) == p
            await b.send(p[::-1])
            assert await a.recv(1 << 20) == p[::-1]
    assert (a.peer_id, b.peer_id) == ("peer-b", "peer-a")


@trio_test()
async def test_wire_format_is_4_byte_big_endian_length_then_payload():
    a, b = trio.testing.memory_stream_pair()
    sender = FramedStream(TrioByteStream(a), "x")
    await sender.send(b"hello")
    assert await b.receive_some(100) == b"\x00\x00\x00\x05hello"


@trio_test()
async def test_frames_split_and_merged_arbitrarily_by_the_transport():
    raw, framed = raw_pair()
    frames = [os.urandom(n) for n in (1, 7, 300, 5000)]
    wire = b"".join(struct.pack(">I", len(f)) + f for f in frames)
    for i in range(0, len(wire), 3):  # three bytes at a time: headers split too
        await raw.send_all(wire[i : i + 3])
    await raw.aclose()
    assert [await framed.recv(10_000) for _ in frames] == frames
    assert await framed.recv(10_000) == b""


@trio_test()
async def test_clean_eof_at_a_frame_boundary_is_empty_bytes_every_time():
    a, b = memory_pair()
    await a.send(b"last")
    await a.close_write()
    assert await b.recv(10) == b"last"
    assert await b.recv(10) == b""
    assert await b.recv(10) == b""
    # The other direction still works after a half-close.
    await b.send(b"reply")
    assert await a.recv(10) == b"reply"


@trio_test()
async def test_oversized_length_is_refused_before_reading_the_body():
    raw, framed = raw_pair()
    await raw.send_all(struct.pack(">I", 1 << 30))  # claims 1 GiB, sends nothing more
    tracemalloc.start()
    try:
        with trio.fail_after(1):
            with pytest.raises(FrameError, match="over the cap"):
                await framed.recv(1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    # The stream was reset: it is unusable from now on, for both sides.
    with pytest.raises(StreamClosed):
        await framed.recv(1 << 20)
    with pytest.raises(trio.BrokenResourceError):
        await raw.send_all(b"more")


@trio_test()
async def test_cap_is_per_call_and_exact():
    a, b = memory_pair()
    await a.send(b"x" * 100)
    assert await b.recv(100) == b"x" * 100
    await a.send(b"x" * 101)
    with pytest.raises(FrameError):
        await b.recv(100)


@pytest.mark.parametrize(
    "wire",
    [
        b"\x00\x00",  # inside the header
        b"\x00\x00\x00\x10" + b"abc",  # inside the body
        b"\x00\x00\x00\x03abc\x00",  # one whole frame, then inside the next header
    ],
)
@trio_test()
async def test_eof_inside_a_frame_raises(wire):
    raw, framed = raw_pair()
    await raw.send_all(wire)
    await raw.aclose()
    if wire.startswith(b"\x00\x00\x00\x03abc"):
        assert await framed.recv(10) == b"abc"
    with pytest.raises(FrameError, match="ended inside"):
        await framed.recv(100)


@trio_test()
async def test_zero_length_frame_on_the_wire_is_a_frame_error():
    raw, framed = raw_pair()
    await raw.send_all(b"\x00\x00\x00\x00")
    with pytest.raises(FrameError, match="empty"):
        await framed.recv(100)


@trio_test()
async def test_send_refuses_empty_and_oversized_payloads():
    a, _ = memory_pair(max_frame=10)
    with pytest.raises(ValueError):
        await a.send(b"")
    with pytest.raises(ValueError):
        await a.send(b"x" * 11)
    await a.send(b"x" * 10)


@trio_test()
async def test_concurrent_senders_never_interleave_frames():
    a, b = memory_pair()
    payloads = [bytes([i]) * (50_000 + i) for i in range(20)]
    got = []

    async def reader():
        while frame := await b.recv(1 << 20):
            got.append(frame)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        async with trio.open_nursery() as senders:
            for p in payloads:
                senders.start_soon(a.send, p)
        await a.close_write()
    assert sorted(got) == sorted(payloads)


@trio_test()
async def test_use_after_close_is_stream_closed_and_close_is_idempotent():
    a, b = memory_pair()
    await a.close()
    await a.close()
    await a.reset()
    with pytest.raises(StreamClosed):
        await a.send(b"x")
    with pytest.raises(StreamClosed):
        await a.recv(10)
    assert await b.recv(10) == b""


@trio_test()
async def test_context_manager_closes_or_resets():
    a, b = memory_pair()
    async with a:
        await a.send(b"x")
    assert await b.recv(10) == b"x"
    assert await b.recv(10) == b""
    with pytest.raises(StreamClosed):
        await a.send(b"y")
    c, d = memory_pair()
    with pytest.raises(RuntimeError):
        async with c:
            raise RuntimeError("boom")
    with pytest.raises(StreamClosed):
        await c.recv(10)


class ScriptedStream:
    """A ByteStream handing out a wire in chunks of scripted sizes, whatever it is asked for
    (a muxer may return more than the frame needs, or less)."""

    def __init__(self, wire: bytes, sizes: list[int]) -> None:
        self.wire, self.sizes, self.pos = wire, sizes, 0

    async def read(self, max_bytes: int) -> bytes:
        if self.pos >= len(self.wire):
            return b""
        n = self.sizes[self.pos % len(self.sizes)] if self.sizes else len(self.wire)
        chunk = self.wire[self.pos : self.pos + max(1, n)]
        self.pos += len(chunk)
        return chunk

    async def write(self, data: bytes) -> None:
        raise AssertionError("not written to")

    async def close_write(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def reset(self) -> None:
        pass


@given(
    frames=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=12),
    sizes=st.lists(st.integers(min_value=1, max_value=2000), max_size=6),
)
@settings(max_examples=300, deadline=None)
def test_any_chunking_gives_the_same_frames_as_bytes(frames, sizes):
    wire = b"".join(struct.pack(">I", len(f)) + f for f in frames)

    async def main() -> list[bytes]:
        framed = FramedStream(ScriptedStream(wire, sizes), "x")
        out = []
        while frame := await framed.recv(1000):
            out.append(frame)
        return out

    got = trio.run(main)
    assert got == frames
    assert all(type(f) is bytes for f in got)


@given(
    chunks=st.lists(st.binary(max_size=50), max_size=10),
    takes=st.lists(st.integers(min_value=0, max_value=120), max_size=10),
)
@settings(max_examples=300, deadline=None)
def test_chunk_queue_takes_exactly_what_was_appended(chunks, takes):
    from amanah.node.net.framing import ChunkQueue

    q = ChunkQueue()
    for c in chunks:
        q.append(bytearray(c))
    stream, pos = b"".join(chunks), 0
    for n in takes:
        if n > q.size:
            with pytest.raises(ValueError):
                q.take(n)
            continue
        got = q.take(n)
        assert type(got) is bytes and got == stream[pos : pos + n]
        pos += n
        assert q.size == len(stream) - pos
