"""Throughput levers for TCP + Noise + yamux that need no change to the installed libp2p.

Measured on this machine (shared/notes/libp2p-0.8.1.md, bench/net_throughput.py): the stock
stack spends its time in per-message Python work, not in crypto. The receiver reads the 2-byte
Noise length, then the Noise message, then yamux's 12-byte header, then its body, each with its
own unbuffered socket read; the sender splits every 64 KiB yamux frame into two Noise messages
and sends each with its own socket write. Five levers, all wire-compatible with stock peers
(Noise messages, their sizes and nonces are exactly what the stock code produces):

1. `BufferedTCP`: a TCP transport whose raw connections read ahead into a 256 KiB buffer, so
   the small reads are served from memory. Plugged in with `new_host(transports=[...])`.
2. `BatchingSession`: after the stock Noise handshake, a secure session that encrypts a whole
   write into consecutive Noise messages sent with ONE socket write, and reads 256 KiB at a
   time, decrypting every complete message it holds, with as few copies as the work allows.
   It replaces the stock `SecureSession` and uses undocumented attributes of it (`conn`,
   `conn.noise_state.noise_protocol.cipher_state_encrypt|decrypt`,
   `conn.read_writer.read_write_closer`): `batching_session()` checks they are there and falls
   back to the stock session otherwise; tests/test_net_internals.py pins them to 0.8.1.
3. `PY_YAMUX_RELEASE_ON_READ=0`: yamux then sends window updates in batches (go-yamux's
   behaviour) instead of one per read. yamux reads this variable from os.environ on every
   window update, so `tune_yamux()` sets it (only if unset: an operator's explicit value wins)
   for the whole process; the only yamux user in the process is this package.
4. Larger yamux DATA frames: the stock sender cuts every write into 64 KiB frames
   (`MAX_MESSAGE_SIZE`), and each frame costs the receiver a header read, a body read, a buffer
   append and a wake-up in Python. `tune_yamux()` raises the cap to `YAMUX_FRAME` (a 1 MiB
   block's sync frame then travels as one yamux frame). The sender still never exceeds the
   window the receiver granted, as the yamux spec requires; a stock 0.8.1 receiver takes any
   DATA frame up to 16 MiB, and go-yamux any frame within its window. Measured with
   bench/net_throughput.py: +20-50% on 1 MiB frames.
5. yamux's frame reads (`read_exactly`, a module global of the yamux module) hand on what a
   `BatchingSession` returns, which is already exactly the bytes asked for, instead of copying
   it twice through a bytearray. Any other reader gets the stock helper.

No lock is taken in the session: yamux serialises its writers (`_write_lock`) and has a single
reader task per connection, and a trio.Lock here cost ~15% (it yields on every call).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from libp2p.abc import IRawConnection, ISecureConn
from libp2p.io.abc import ReadWriteCloser
from libp2p.io.exceptions import IncompleteReadError
from libp2p.io.utils import read_exactly as _stock_read_exactly
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
from libp2p.security.secure_session import SecureSession
from libp2p.transport.tcp.tcp import TCP, TCPListener
from multiaddr import Multiaddr
from noise.exceptions import NoiseInvalidMessage

from .framing import ChunkQueue

READ_AHEAD = 256 << 10
#: The largest yamux DATA frame we send, its 12-byte header included: a 1 MiB block's sync
#: frame (block, CBOR and framing overhead: under 1 KiB) fits one.
YAMUX_FRAME = (1 << 20) + (64 << 10)
_NOISE_LEN = 2


class BufferedReader(ReadWriteCloser):
    """Wraps a raw TCP stream so reads come from a read-ahead buffer. Writes pass through."""

    def __init__(self, inner: ReadWriteCloser, size: int = READ_AHEAD) -> None:
        self._inner = inner
        self._size = size
        self._buf = b""
        self._pos = 0

    async def read(self, n: int | None = None) -> bytes:
        if n == 0:
            return b""
        if self._pos < len(self._buf):
            end = len(self._buf) if n is None else self._pos + n
            chunk = self._buf[self._pos : end]
            self._pos += len(chunk)
            return chunk
        data = await self._inner.read(max(n or 0, self._size))
        if n is None or len(data) <= n:
            return data
        self._buf, self._pos = data, n
        return data[:n]

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close(self) -> None:
        await self._inner.close()

    def get_remote_address(self) -> tuple[str, int] | None:
        return self._inner.get_remote_address()

    def __getattr__(self, name: str) -> Any:
        # Anything else libp2p may probe on the raw stream (conn_state, ...) is the inner one's.
        return getattr(self._inner, name)


class BufferedTCP(TCP):
    """The stock TCP transport with `BufferedReader` under every connection, both directions."""

    async def dial(self, maddr: Multiaddr) -> IRawConnection:
        return _buffered(await super().dial(maddr))

    async def dial_with_source(self, maddr: Multiaddr, source: tuple[str, int]) -> IRawConnection:
        return _buffered(await super().dial_with_source(maddr, source))

    def create_listener(
        self, handler_function: Callable[[ReadWriteCloser], Awaitable[None]]
    ) -> TCPListener:
        async def handler(stream: ReadWriteCloser) -> None:
            await handler_function(BufferedReader(stream))

        return super().create_listener(handler)


def _buffered(conn: IRawConnection) -> IRawConnection:
    if isinstance(conn, RawConnection):
        conn.stream = BufferedReader(conn.stream)
    return conn


class BatchingSession(SecureSession):
    """A Noise transport session: one socket write per write, decrypts in batches on read.

    Copies are kept to what the work needs: messages are encrypted from and decrypted out of
    memoryviews of the buffers they are in (the Noise cipher states are called directly, as
    the stock `NoiseConnection.encrypt/decrypt` would after their bytes-only type check), a
    received chunk is copied only for a message split across two reads, and `read(n)` joins
    the decrypted messages it spans once (`ChunkQueue`).
    """

    def __init__(self, stock: SecureSession) -> None:
        super().__init__(
            local_peer=stock.local_peer,
            local_private_key=stock.local_private_key,
            remote_peer=stock.remote_peer,
            remote_permanent_pubkey=stock.remote_permanent_pubkey,
            is_initiator=stock.is_initiator,
            conn=stock.conn,
        )
        protocol = stock.conn.noise_state.noise_protocol  # type: ignore[attr-defined]
        self._encrypt = protocol.cipher_state_encrypt.encrypt_with_ad
        self._decrypt = protocol.cipher_state_decrypt.decrypt_with_ad
        self._raw: ReadWriteCloser = stock.conn.read_writer.read_write_closer  # type: ignore[attr-defined]
        self._partial = bytearray()  # the start of a Noise message split across reads
        self._plain = ChunkQueue()  # decrypted, not yet returned

    async def write(self, data: bytes) -> None:
        encrypt = self._encrypt
        if len(data) <= MAX_PLAINTEXT_LENGTH:
            msg = encrypt(None, data)
            await self._raw.write(len(msg).to_bytes(_NOISE_LEN, "big") + msg)
            return
        parts = []
        with memoryview(data) as view:
            for start in range(0, len(data), MAX_PLAINTEXT_LENGTH):
                msg = encrypt(None, view[start : start + MAX_PLAINTEXT_LENGTH])
                parts.append(len(msg).to_bytes(_NOISE_LEN, "big"))
                parts.append(msg)
        await self._raw.write(b"".join(parts))

    async def read(self, n: int | None = None) -> bytes:
        if n == 0:
            return b""
        plain = self._plain
        if not plain.size and not await self._pull():
            raise IncompleteReadError("Connection closed", expected_bytes=n or 1, received_bytes=0)
        if n is None:
            return plain.take(plain.size)
        # Callers (yamux) expect exactly n bytes, as from the stock session.
        while plain.size < n:
            if not await self._pull():
                raise IncompleteReadError(
                    f"Connection closed after {plain.size} of {n} bytes",
                    expected_bytes=n,
                    received_bytes=plain.size,
                )
        return plain.take(n)

    async def _pull(self) -> bool:
        """Read until at least one more Noise message is complete; decrypt every complete one.
        False at the end of the connection."""
        while True:
            data = await self._raw.read(READ_AHEAD)
            if not data:
                return False
            if self._open_all(data):
                return True

    def _open_all(self, data: bytes) -> bool:
        """Decrypt the messages `data` completes; keep the start of a message it leaves
        incomplete. True if any message was completed."""
        opened = False
        pos, size = 0, len(data)
        with memoryview(data) as view:
            part = self._partial
            if part:  # finish the message the previous read left incomplete
                if len(part) < _NOISE_LEN:
                    pos = min(_NOISE_LEN - len(part), size)
                    part += view[:pos]
                if len(part) >= _NOISE_LEN:
                    end = _NOISE_LEN + ((part[0] << 8) | part[1])
                    take = min(end - len(part), size - pos)
                    part += view[pos : pos + take]
                    pos += take
                    if len(part) == end:
                        with memoryview(part) as whole:
                            self._open(whole[_NOISE_LEN:])
                        self._partial = bytearray()
                        opened = True
                if pos == size:
                    return opened
            while size - pos >= _NOISE_LEN:
                end = pos + _NOISE_LEN + ((data[pos] << 8) | data[pos + 1])
                if end > size:
                    break
                self._open(view[pos + _NOISE_LEN : end])
                opened = True
                pos = end
            if pos < size:
                self._partial = bytearray(view[pos:])
        return opened

    def _open(self, message: memoryview) -> None:
        try:
            plain = self._decrypt(None, message)
        except InvalidTag:
            raise NoiseInvalidMessage("Failed authentication of message") from None
        self._plain.append(plain)  # an empty message carries no bytes: append skips it


def batching_session(conn: ISecureConn) -> ISecureConn:
    """`conn` as a `BatchingSession`, or unchanged if it is not the stock Noise session."""
    inner = getattr(conn, "conn", None)
    protocol = getattr(getattr(inner, "noise_state", None), "noise_protocol", None)
    if (
        type(conn) is SecureSession
        and hasattr(getattr(protocol, "cipher_state_encrypt", None), "encrypt_with_ad")
        and hasattr(getattr(protocol, "cipher_state_decrypt", None), "decrypt_with_ad")
        and hasattr(getattr(inner, "read_writer", None), "read_write_closer")
    ):
        return BatchingSession(conn)
    return conn


def tune_yamux() -> None:
    """Process-wide: batch yamux window updates (unless the operator set the variable) and
    send DATA frames of up to `YAMUX_FRAME` bytes (see lever 4 above)."""
    from libp2p.stream_muxer.yamux import yamux

    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
    # Module globals that yamux reads on every call (pinned by tests/test_net_internals.py).
    yamux.MAX_MESSAGE_SIZE = max(yamux.MAX_MESSAGE_SIZE, YAMUX_FRAME)
    yamux.read_exactly = _read_exactly


async def _read_exactly(reader: Any, n: int, retry_count: int = 100) -> bytes:
    """yamux's frame reads: a `BatchingSession` already returns exactly n bytes (or raises
    IncompleteReadError), so its result is handed on as it is; the stock helper would copy it
    twice more through a bytearray. Any other reader gets the stock helper."""
    if type(reader) is BatchingSession:
        return await reader.read(n)
    return await _stock_read_exactly(reader, n, retry_count)
