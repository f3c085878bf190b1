"""Messages of the sync protocol `/amanah/sync/1` and the head notice `/amanah/notify/1`.

Every message is one frame (u32 big-endian length, then that many bytes) holding a canonical
CBOR map with a text field "t" naming the message. SPEC.md gives the exchange; this module
builds and checks messages, refusing anything malformed or over its size cap before use.
"""

from __future__ import annotations

from typing import Any

from . import cbor, ids, item, log
from .errors import FormatError

SYNC_PROTOCOL = "/amanah/sync/1"
NOTIFY_PROTOCOL = "/amanah/notify/1"

MAX_REQUEST = 64 << 10
MAX_HEADS = 4 << 20
MAX_ENTRIES_RESPONSE = 4 << 20
MAX_RECORDS_RESPONSE = 8 << 20
MAX_BLOCK_RESPONSE = item.MAX_BLOCK_SIZE + 1024
MAX_RESPONSE = max(MAX_HEADS, MAX_ENTRIES_RESPONSE, MAX_RECORDS_RESPONSE, MAX_BLOCK_RESPONSE)

ENTRIES_PER_RESPONSE = 512
# Heads in one `heads` answer: a head is at most 83 bytes of CBOR, so 40,000 stay well inside
# MAX_HEADS whatever the lengths; a server holding more for one peer pages (SPEC 11.5).
HEADS_PER_RESPONSE = 40_000
BLOCKS_PER_REQUEST = 256  # small blocks asked for together (blocks?)
MAX_BLOCKS_RESPONSE = 8 << 20
RECORDS_PER_REQUEST = 256


def encode(t: str, **fields: Any) -> bytes:
    return cbor.encode({"t": t, **fields})


# A `block` answer is most of the bytes replication moves, so it has its own encoder and decoder,
# byte for byte the canonical CBOR of {"t": "block", "id": id, "data": data} (keys sort "t",
# "id", "data": shorter first), with one copy of the data each way instead of three or more.
_BLOCK_HEAD = cbor.encode("t") + cbor.encode("block") + cbor.encode("id")
_BLOCK_DATA_KEY = cbor.encode("data")
_ID_LEN = 34  # every id this protocol knows (2.1); other lengths take the generic path


def _head(major: int, n: int) -> bytes:
    """The canonical CBOR head of major type `major` with argument `n` (shortest form)."""
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 1 << 8:
        return bytes((major << 5 | 24, n))
    if n < 1 << 16:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    if n < 1 << 32:
        return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + n.to_bytes(8, "big")


def _bstr_head(n: int) -> bytes:
    """The canonical CBOR head of a byte string of `n` bytes (major type 2, shortest length)."""
    return _head(2, n)


_BLOCK_PREFIX = b"\xa3" + _BLOCK_HEAD + _bstr_head(_ID_LEN)


def encode_block(block_id: bytes, data: bytes | None) -> bytes:
    """`encode("block", id=block_id, data=data)`, with a single copy of `data`."""
    if len(block_id) != _ID_LEN:
        return encode("block", id=block_id, data=data)
    if data is None:
        return b"".join((_BLOCK_PREFIX, block_id, _BLOCK_DATA_KEY, b"\xf6"))
    return b"".join((_BLOCK_PREFIX, block_id, _BLOCK_DATA_KEY, _bstr_head(len(data)), data))


def _decode_block(frame: bytes) -> dict | None:
    """A `block` answer in exactly the layout `encode_block` produces, decoded with one copy of
    its data; None for anything else (the generic decoder then decides, and refuses what is not
    canonical). Whatever this accepts, the generic decoder accepts with the same result."""
    start = len(_BLOCK_PREFIX)
    key_at = start + _ID_LEN
    head_at = key_at + len(_BLOCK_DATA_KEY)
    if (
        len(frame) <= head_at
        or not frame.startswith(_BLOCK_PREFIX)
        or frame[key_at:head_at] != _BLOCK_DATA_KEY
    ):
        return None
    first = frame[head_at]
    if first == 0xF6:
        if len(frame) != head_at + 1:
            return None
        return {"t": "block", "id": frame[start:key_at], "data": None}
    if not 0x40 <= first <= 0x5A:
        return None
    if first < 0x58:
        n, body = first - 0x40, head_at + 1
    else:
        size = 1 << (first - 0x58)  # 1, 2 or 4 length bytes
        body = head_at + 1 + size
        n = int.from_bytes(frame[head_at + 1 : body], "big")
    if len(frame) != body + n or frame[head_at:body] != _bstr_head(n):
        return None  # a length not in its shortest form, or bytes before or after the data
    return {"t": "block", "id": frame[start:key_at], "data": frame[body:]}


# A `blocks` answer (up to 256 small blocks) likewise: for byte strings of a few KiB, the
# generic encoder and the canonical check of the generic decoder each cost ~4 us per block
# (~1 ms per answer), this layout a quarter of that. (Answers listing small items, `entries`
# and `records`, measured faster through the generic path.) Keys sort "t", "blocks".
_BLOCKS_PREFIX = b"\xa2" + cbor.encode("t") + cbor.encode("blocks") + cbor.encode("blocks")


def encode_blocks(blocks: list[bytes | None]) -> bytes:
    """`encode("blocks", blocks=blocks)`, with a single copy of each block."""
    parts = [_BLOCKS_PREFIX, _head(4, len(blocks))]
    for data in blocks:
        if data is None:
            parts.append(b"\xf6")
        else:
            parts.append(_bstr_head(len(data)))
            parts.append(data)
    return b"".join(parts)


def _read_head(frame: bytes, at: int, major: int) -> tuple[int, int] | None:
    """(argument, where what follows starts) of a canonical head of `major` at `at`."""
    if at >= len(frame) or frame[at] >> 5 != major:
        return None
    info = frame[at] & 0x1F
    if info < 24:
        return info, at + 1
    if info > 27:
        return None
    body = at + 1 + (1 << (info - 24))  # 1, 2, 4 or 8 bytes
    n = int.from_bytes(frame[at + 1 : body], "big")
    if body > len(frame) or frame[at:body] != _head(major, n):
        return None  # truncated, or not in its shortest form
    return n, body


def _decode_blocks(frame: bytes) -> dict | None:
    """A `blocks` answer in exactly the layout `encode_blocks` produces; None for anything else
    (the generic decoder then decides, and refuses what is not canonical). Whatever this
    accepts, the generic decoder accepts with the same result."""
    if not frame.startswith(_BLOCKS_PREFIX):
        return None
    head = _read_head(frame, len(_BLOCKS_PREFIX), 4)
    if head is None:
        return None
    count, at = head
    end = len(frame)
    if count > end - at:
        return None  # more items than bytes left (each takes one at least)
    blocks: list[bytes | None] = []
    for _ in range(count):
        if at < end and frame[at] == 0xF6:
            blocks.append(None)
            at += 1
            continue
        head = _read_head(frame, at, 2)
        if head is None or head[1] + head[0] > end:
            return None
        n, body = head
        blocks.append(frame[body : body + n])
        at = body + n
    if at != end:
        return None  # bytes after the last block
    return {"t": "blocks", "blocks": blocks}


_FAST = {"block": _decode_block, "blocks": _decode_blocks}  # None: not in the layout


def decode(frame: bytes, max_size: int, expect: tuple[str, ...]) -> dict:
    """Decode one message, checking its type is among `expect` and its fields' shapes."""
    if len(frame) > max_size:
        raise FormatError(f"CBOR value of {len(frame)} bytes exceeds the {max_size}-byte limit")
    for t in expect:
        if t in _FAST:
            fast = _FAST[t](frame)
            if fast is not None:
                _CHECKS[t](fast)
                return fast
    return _decode_generic(frame, max_size, expect)


def _decode_generic(frame: bytes, max_size: int, expect: tuple[str, ...]) -> dict:
    """`decode` for any message, through the canonical CBOR decoder."""
    msg = cbor.decode(frame, max_size)
    if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
        raise FormatError("a message is a map with a text field t")
    t = msg["t"]
    if t not in expect:
        raise FormatError(f"unexpected message {t!r}")
    extra = set(msg) - _FIELDS[t]
    if extra:
        raise FormatError(f"unknown field(s) in {t!r}: {', '.join(sorted(map(str, extra)))}")
    _CHECKS[t](msg)
    if t == "error":  # checked like any message, then raised: it ends the session
        raise RemoteError(msg["msg"][:500])
    return msg


class RemoteError(FormatError):
    """The peer answered with an error message."""


def _int(msg: dict, name: str, low: int = 0, high: int = 2**63) -> int:
    v = msg.get(name)
    if type(v) is not int or not low <= v <= high:
        raise FormatError(f"field {name} must be an integer in [{low}, {high}]")
    return v


def _id(msg: dict, name: str) -> bytes:
    return ids.check_raw_id(msg.get(name))


def _list(msg: dict, name: str, limit: int) -> list:
    v = msg.get(name)
    if type(v) is not list or len(v) > limit:
        raise FormatError(f"field {name} must be a list of at most {limit}")
    return v


def _heads_req(msg: dict) -> None:
    if "after" in msg:
        _id(msg, "after")


def _heads(msg: dict) -> None:
    for h in _list(msg, "cols", HEADS_PER_RESPONSE):
        if type(h) is not list or len(h) != 4 or type(h[1]) is not int or not 1 <= h[1] <= 2**63:
            raise FormatError("a head is [collection, length, head entry id, complete]")
        ids.check_raw_id(h[0])
        ids.check_raw_id(h[2])
        if type(h[3]) is not bool:
            raise FormatError("complete is a boolean")


def _heads_page(msg: dict) -> None:
    _heads(msg)
    cols = [h[0] for h in msg["cols"]]
    if any(a >= b for a, b in zip(cols, cols[1:], strict=False)):
        raise FormatError("heads are not in ascending order of collection id")
    if "more" in msg and (msg["more"] is not True or not cols):
        raise FormatError("more is true, after at least one head, or absent")


def _log_req(msg: dict) -> None:
    _id(msg, "col")
    _int(msg, "from")
    _int(msg, "limit", 1, ENTRIES_PER_RESPONSE)


def _entries(msg: dict) -> None:
    _id(msg, "col")
    _int(msg, "from")
    for e in _list(msg, "entries", ENTRIES_PER_RESPONSE):
        if type(e) is not bytes or len(e) > log.MAX_ENTRY_SIZE:
            raise FormatError("an entry is at most 65,000 bytes")


def _records_req(msg: dict) -> None:
    for i in _list(msg, "ids", RECORDS_PER_REQUEST):
        ids.check_raw_id(i)


def _records(msg: dict) -> None:
    for r in _list(msg, "records", RECORDS_PER_REQUEST):
        if r is not None and (type(r) is not bytes or len(r) > item.MAX_RECORD_SIZE):
            raise FormatError("a record is at most 65,000 bytes, or null")


def _block_req(msg: dict) -> None:
    _id(msg, "item")
    _id(msg, "id")


def _blocks_req(msg: dict) -> None:
    for pair in _list(msg, "want", BLOCKS_PER_REQUEST):
        if type(pair) is not list or len(pair) != 2:
            raise FormatError("a wanted block is [item id, block id]")
        ids.check_raw_id(pair[0])
        ids.check_raw_id(pair[1])


def _blocks(msg: dict) -> None:
    for data in _list(msg, "blocks", BLOCKS_PER_REQUEST):
        if data is not None and (type(data) is not bytes or len(data) > item.MAX_BLOCK_SIZE):
            raise FormatError("a block is at most 1 MiB + 16 bytes, or null")


def _block(msg: dict) -> None:
    _id(msg, "id")
    if "data" not in msg:
        raise FormatError("a block answer carries data (null when missing)")
    data = msg.get("data")
    if data is not None and (type(data) is not bytes or len(data) > item.MAX_BLOCK_SIZE):
        raise FormatError("a block is at most 1 MiB + 16 bytes, or null")


def _head_notice(msg: dict) -> None:
    _id(msg, "col")
    _int(msg, "length", 1)
    _id(msg, "head")


def _error(msg: dict) -> None:
    if not isinstance(msg.get("msg"), str) or len(msg["msg"]) > 1000:
        raise FormatError("an error carries a text msg of at most 1,000 characters")


def _ok(msg: dict) -> None:
    pass


_CHECKS = {
    "heads?": _heads_req,
    "heads": _heads_page,
    "log?": _log_req,
    "entries": _entries,
    "records?": _records_req,
    "records": _records,
    "block?": _block_req,
    "blocks?": _blocks_req,
    "blocks": _blocks,
    "block": _block,
    "head": _head_notice,
    "have": _heads,
    "ok": _ok,
    "error": _error,
}
# The exact fields of each message: anything else is refused (closed maps, SPEC 11.3).
_FIELDS = {
    "heads?": {"t", "after"},
    "heads": {"t", "cols", "more"},
    "log?": {"t", "col", "from", "limit"},
    "entries": {"t", "col", "from", "entries"},
    "records?": {"t", "ids"},
    "records": {"t", "records"},
    "block?": {"t", "item", "id"},
    "block": {"t", "id", "data"},
    "blocks?": {"t", "want"},
    "blocks": {"t", "blocks"},
    "head": {"t", "col", "length", "head"},
    "have": {"t", "cols"},
    "ok": {"t"},
    "error": {"t", "msg"},
}
REQUESTS = ("heads?", "log?", "records?", "block?", "blocks?", "have")
