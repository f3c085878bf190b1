"""Length-prefixed frames over a byte stream: pure trio, no libp2p.

On the wire a frame is a 4-byte big-endian length N followed by N payload bytes, with
1 <= N <= the receiver's cap. Zero-length frames are not allowed, so `recv` can return b"" for
"the peer ended the stream cleanly, at a frame boundary" and mean nothing else; a CBOR message is
never empty anyway.

The receiver states a cap on every read (`recv(max_size)`) and the length is checked against it
before a single byte of the body is read, so a peer announcing a 1 GiB frame costs us 4 bytes.
Reads ask the stream for what the frame still needs plus up to 4 MiB (a muxer then hands over
everything it holds at once, with one copy), so what is buffered beyond the current frame is
bounded too. Received chunks are kept as they come (`ChunkQueue`) and each frame's payload is
cut out of them with a single copy.

`FramedStream` runs over anything with the small `ByteStream` interface: the libp2p adapter in
host.py, or `TrioByteStream` over a trio stream (a TCP socket, or the memory pair that
`memory_pair()` returns for tests of protocol code without a network).
"""

from __future__ import annotations

import types
from collections import deque
from typing import Protocol

import trio

from .errors import FrameError, StreamBroken, StreamClosed

#: Default cap on a frame this side sends (and a sensible cap for receivers): 16 MiB.
MAX_FRAME = 16 << 20
HEADER_SIZE = 4
# Asked for beyond what the current frame needs: a yamux stream returns its whole buffer (one
# copy) when asked for at least that much, and a slice of it (two copies) otherwise.
_READ_SLACK = 4 << 20
# A socket read allocates all it is asked for before it shrinks to what came: TrioByteStream
# asks for at most this.
TRIO_READ = 256 << 10


class ByteStream(Protocol):
    """The byte stream under a `FramedStream`.

    `read` returns at least one byte, or b"" once the peer has closed its side cleanly; any
    failure (reset, lost connection) raises `StreamBroken`. `write` sends all of `data` or
    raises `StreamBroken`.
    """

    async def read(self, max_bytes: int) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close_write(self) -> None: ...
    async def close(self) -> None: ...
    async def reset(self) -> None: ...


class ChunkQueue:
    """Bytes that arrived in chunks, taken out in exact sizes, each take copying once.

    A take that falls inside one chunk is a slice of it (or the chunk itself, when it is exactly
    that chunk); one spanning chunks is a single join of memoryviews of them.
    """

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._pos = 0  # where the first chunk's untaken bytes start
        self.size = 0  # bytes held, not yet taken

    def append(self, chunk: bytes | bytearray | memoryview) -> None:
        if type(chunk) is not bytes:  # e.g. a memory stream's bytearray: takes are immutable
            chunk = bytes(chunk)
        if chunk:
            self._chunks.append(chunk)
            self.size += len(chunk)

    def take(self, n: int) -> bytes:
        """The next `n` bytes (ValueError if fewer are held)."""
        if not 0 <= n <= self.size:
            raise ValueError(f"take({n}) with {self.size} bytes held")
        if n == 0:
            return b""
        chunks, pos = self._chunks, self._pos
        self.size -= n
        first = chunks[0]
        rest = len(first) - pos
        if rest > n:
            self._pos = pos + n
            return first[pos : pos + n]
        chunks.popleft()
        self._pos = 0
        if rest == n:
            return first[pos:] if pos else first
        parts: list[bytes | memoryview] = [memoryview(first)[pos:]]
        got = rest
        while got < n:
            chunk = chunks[0]
            if got + len(chunk) <= n:
                parts.append(chunk)
                got += len(chunk)
                chunks.popleft()
            else:
                parts.append(memoryview(chunk)[: n - got])
                self._pos = n - got
                got = n
        return b"".join(parts)

    def clear(self) -> None:
        self._chunks.clear()
        self._pos = self.size = 0


class FramedStream:
    """One conversation with one authenticated peer, as a sequence of frames.

    `peer_id` is the remote peer's id (base58 `12D3KooW…`), authenticated by the Noise handshake
    and already checked against the allow-list; `protocol` is the negotiated protocol id.

    One task may send while another receives; concurrent senders are serialised (a frame is
    never interleaved with another), and so are concurrent receivers. Use it as an async context
    manager to close it on the way out (or reset it if the block raised).
    """

    def __init__(
        self, stream: ByteStream, peer_id: str, protocol: str = "", *, max_frame: int = MAX_FRAME
    ) -> None:
        if not 0 < max_frame < 1 << 32:
            raise ValueError("max_frame must fit the 4-byte length")
        self.peer_id = peer_id
        self.protocol = protocol
        self.max_frame = max_frame
        self._stream = stream
        self._received = ChunkQueue()  # bytes read, not yet returned
        self._send_lock = trio.Lock()
        self._recv_lock = trio.Lock()
        self._write_closed = False
        self._closed = False
        self._eof = False

    def __repr__(self) -> str:
        return f"<FramedStream {self.protocol} peer={self.peer_id}>"

    async def send(self, payload: bytes) -> None:
        """Send one frame. `payload` must be 1..max_frame bytes (else ValueError: a caller bug)."""
        n = len(payload)
        if n == 0:
            raise ValueError("empty frames are not allowed (b'' means end of stream)")
        if n > self.max_frame:
            raise ValueError(f"frame of {n} bytes is over this stream's cap of {self.max_frame}")
        async with self._send_lock:
            if self._closed or self._write_closed:
                raise StreamClosed("this stream was closed for sending")
            # One write per frame: a separate 4-byte write would cost a muxer frame of its own.
            await self._stream.write(b"".join((n.to_bytes(HEADER_SIZE, "big"), payload)))

    async def recv(self, max_size: int) -> bytes:
        """Receive one frame of at most `max_size` bytes; b"" when the peer ended the stream.

        Raises FrameError (after resetting the stream) if the announced length is 0 or over
        `max_size` — checked before the body is read — or if the stream ends inside a frame.
        """
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        async with self._recv_lock:
            if self._closed:
                raise StreamClosed("this stream was closed")
            if self._eof:
                return b""
            received = self._received
            if not await self._fill(HEADER_SIZE):
                if received.size:
                    await self._fail(f"stream ended inside a frame header ({received.size} B)")
                self._eof = True
                return b""
            n = int.from_bytes(received.take(HEADER_SIZE), "big")
            if n == 0:
                await self._fail("empty frame")
            if n > max_size:
                await self._fail(f"frame of {n} bytes announced, over the cap of {max_size}")
            if not await self._fill(n):
                await self._fail(f"stream ended inside a frame ({received.size} of {n} B)")
            return received.take(n)

    async def close_write(self) -> None:
        """Send no more frames: the peer's `recv` returns b"" after the last one. Reads go on."""
        async with self._send_lock:
            if self._closed or self._write_closed:
                return
            self._write_closed = True
            await self._stream.close_write()

    async def close(self) -> None:
        """Finish with the stream: frames already sent are still delivered. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._stream.close()

    async def reset(self) -> None:
        """Abort the stream both ways; the peer sees StreamBroken. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._stream.reset()

    async def __aenter__(self) -> FramedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            with trio.CancelScope(shield=True):
                await self.reset()

    async def _fill(self, size: int) -> bool:
        """Buffer at least `size` bytes; False if the stream ended first."""
        received = self._received
        while received.size < size:
            chunk = await self._stream.read(size - received.size + _READ_SLACK)
            if not chunk:
                return False
            received.append(chunk)
        return True

    async def _fail(self, why: str) -> None:
        self._received.clear()
        self._closed = True
        # Shielded: the peer must learn the stream is dead even if we are being cancelled.
        with trio.CancelScope(shield=True):
            try:
                await self._stream.reset()
            except StreamBroken:
                pass
        raise FrameError(f"peer {self.peer_id}: {why}")


class TrioByteStream:
    """A `ByteStream` over a trio stream: a TCP socket stream, or a memory stream in tests."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int) -> bytes:
        try:
            return await self._stream.receive_some(min(max_bytes, TRIO_READ))
        except trio.BrokenResourceError as e:
            raise StreamBroken(str(e) or "stream broken") from e

    async def write(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except trio.BrokenResourceError as e:
            raise StreamBroken(str(e) or "stream broken") from e

    async def close_write(self) -> None:
        send_eof = getattr(self._stream, "send_eof", None)
        if send_eof is not None:
            await send_eof()
        else:
            await self._stream.aclose()

    async def close(self) -> None:
        await self._stream.aclose()

    async def reset(self) -> None:
        await trio.aclose_forcefully(self._stream)


def memory_pair(
    peer_ids: tuple[str, str] = ("peer-a", "peer-b"),
    protocol: str = "",
    *,
    max_frame: int = MAX_FRAME,
) -> tuple[FramedStream, FramedStream]:
    """Two connected in-memory `FramedStream`s, for testing protocol code without a network.

    The first one's `peer_id` is peer_ids[1] (it talks to B) and the second's is peer_ids[0].
    """
    import trio.testing  # only here: importing it costs ~0.2 s

    a, b = trio.testing.memory_stream_pair()
    return (
        FramedStream(TrioByteStream(a), peer_ids[1], protocol, max_frame=max_frame),
        FramedStream(TrioByteStream(b), peer_ids[0], protocol, max_frame=max_frame),
    )
