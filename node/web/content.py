"""Downloads: the original bytes, streamed block by block, every block verified before it is sent.

HTTP semantics (RFC 9110):
- ETag is the item id (content-addressed, so the bytes behind it never change); If-None-Match
  answers 304; If-Range with that ETag keeps the Range, anything else drops it.
- One byte range (`bytes=A-B`, `bytes=A-`, `bytes=-N`) answers 206 with Content-Range.
- A range that cannot be satisfied (starts at or beyond the end; a zero-length suffix) answers
  416 with `Content-Range: bytes */SIZE`.
- A malformed bytes range (not the grammar, or last < first) is rejected the same way, 416:
  RFC 9110 14.2 lets a server ignore or reject an invalid ranges-specifier; rejecting tells a
  broken client at once instead of sending it a whole file it did not ask for.
- A unit other than bytes is ignored (RFC 9110 14.2: MUST ignore): 200, the whole file.
- Several ranges are ignored (RFC 9110 14.2 allows it): 200, the whole file. Clients that
  resume or seek (curl, browsers, video players) ask for one range.
- An empty file ignores Range: no byte range of it exists to send.

Streaming: each block is read in its own short LMDB transaction in a worker thread (never one
held across an await), its hash checked against its id, then written; the next block is read
while this one is sent. A missing or damaged block ends the response early (the client sees a
short body against Content-Length) and is logged: wrong bytes are never sent. The process's
mapped pages of the store are released every few blocks so memory stays flat for any size.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import deque
from concurrent.futures import Executor
from urllib.parse import quote

from aiohttp import web
from amanah.protocol import ids
from amanah.protocol.errors import IntegrityError
from amanah.protocol.item import CHUNK_SIZE, MANIFEST_FANOUT, ItemRecord, decode_manifest

from .. import items as items_mod
from ..errors import DamagedError
from ..home import Node
from .catalog import ItemDetail
from .site import MapReleaser, not_found_json, not_modified, site

logger = logging.getLogger("amanah.web")

READ_AHEAD = 3  # blocks of one download being read and verified ahead of the socket
# A downloaded file is never a document of this site: sandboxed, no script, not framable.
CONTENT_CSP = (
    "default-src 'none'; img-src 'self'; media-src 'self'; frame-ancestors 'none'; sandbox"
)
# Shown in the browser (preview): still images, video and audio in formats browsers play. SVG is
# left out on purpose: it is a document that can carry script.
INLINE_TYPES = re.compile(
    r"^(image/(png|jpeg|gif|webp|avif|bmp)|video/(mp4|webm|ogg|quicktime)|audio/(mpeg|mp4|ogg|"
    r"webm|wav|x-wav|flac|aac))$"
)
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_NOT_ASCII_SAFE = re.compile(r'[^\x20-\x7e]+|["\\%]')  # what a quoted ASCII filename cannot hold
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class Unsatisfiable(Exception):
    """416: the Range names no byte of the file (or is malformed)."""


def content_type(mime: str) -> str:
    """The recorded media type if it is a plain type/subtype, else application/octet-stream."""
    mime = mime.strip().lower()
    return mime if _MIME.fullmatch(mime) else "application/octet-stream"


def previewable(mime: str) -> bool:
    return bool(INLINE_TYPES.match(content_type(mime)))


def content_disposition(filename: str, inline: bool) -> str:
    """RFC 6266: an ASCII fallback `filename` and the exact name as RFC 8187 `filename*`."""
    name = items_mod.safe_filename(filename)
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension (or a dot file)
        stem, dot, ext = name, "", ""
    stem = _NOT_ASCII_SAFE.sub("_", stem)
    if not any(c.isalnum() for c in stem):
        stem = "download"  # e.g. an Arabic name: its exact form is in filename*
    if _NOT_ASCII_SAFE.search(ext):
        dot = ext = ""
    fallback = stem + dot + ext
    encoded = quote(name, safe="!#$&+-.^_`|~")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The (first, last) byte positions asked for, None to send the whole file, or raise
    Unsatisfiable (see the module docstring for every case)."""
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if size == 0:
        return None
    parts = spec.split(",")
    if len(parts) > 1:
        if any(not _RANGE.match(p) for p in parts):
            raise Unsatisfiable("malformed range")
        return None
    m = _RANGE.match(spec)
    if m is None:
        raise Unsatisfiable("malformed range")
    first_text, last_text = m.groups()
    if len(first_text) > 20 or len(last_text) > 20:
        raise Unsatisfiable("malformed range")
    if first_text == "":
        if last_text == "":
            raise Unsatisfiable("malformed range")
        suffix = int(last_text)
        if suffix == 0:
            raise Unsatisfiable("empty suffix range")
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last < first:
        raise Unsatisfiable("malformed range")
    if first >= size:
        raise Unsatisfiable("range starts beyond the end")
    return first, min(last, size - 1)


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match: weak comparison (RFC 9110 13.1.2)."""
    header = header.strip()
    if header == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


class BlockReader:
    """Reads one item's blocks by index, verified; runs in worker threads."""

    def __init__(self, node: Node, record: ItemRecord, releaser: MapReleaser) -> None:
        self.node = node
        self.record = record
        self.releaser = releaser
        self._manifest_index = -1
        self._manifest: list[bytes] = []
        self._lock = threading.Lock()  # reads of one download overlap (READ_AHEAD)

    def _block_id(self, txn: object, index: int) -> bytes:
        inline = self.record.inline_blocks()
        if inline is not None:
            return inline[index]
        m = index // MANIFEST_FANOUT
        if m != self._manifest_index:
            manifest_id = self.record.manifest_ids()[m]
            data = items_mod.verified_block(self.node, txn, manifest_id)  # type: ignore[arg-type]
            expected = min(MANIFEST_FANOUT, self.record.block_count - m * MANIFEST_FANOUT)
            try:
                self._manifest = decode_manifest(data, expected)
            except IntegrityError as exc:
                raise DamagedError(
                    f"manifest block {ids.to_text('blk', manifest_id)}: {exc}"
                ) from None
            self._manifest_index = m
        return self._manifest[index % MANIFEST_FANOUT]

    def read(self, index: int) -> bytes:
        node = self.node
        self.releaser.block_read()  # constant memory whatever the size (Store.release_map)
        with node.store.read() as txn:
            with self._lock:
                block_id = self._block_id(txn, index)
            data = node.blobs.get(txn, block_id)
        # Hashed after the transaction ends: a read transaction stays as short as the copy.
        if data is None:
            raise DamagedError(f"block {ids.to_text('blk', block_id)} is missing")
        if ids.sha256_id(data) != block_id:
            raise DamagedError(f"block {ids.to_text('blk', block_id)} is damaged (hash mismatch)")
        expected = min(CHUNK_SIZE, self.record.size - index * CHUNK_SIZE)
        if len(data) != expected:
            raise DamagedError(
                f"block {index} of item {ids.to_text('itm', self.record.id)} has the wrong size"
            )
        return data


async def stream(
    request: web.Request,
    response: web.StreamResponse,
    node: Node,
    pool: Executor,
    releaser: MapReleaser,
    detail: ItemDetail,
    first: int,
    last: int,
) -> None:
    """Write bytes first..last (inclusive) of the item, verified block by block."""
    loop = asyncio.get_running_loop()
    reader = BlockReader(node, detail.record, releaser)
    start_block, end_block = first // CHUNK_SIZE, last // CHUNK_SIZE
    ahead: deque[asyncio.Future[bytes]] = deque()
    following = start_block  # the next block to ask a worker for
    try:
        for index in range(start_block, end_block + 1):
            # Keep the next blocks being read and hashed (on other cores: hashlib releases the
            # GIL) while this one goes out.
            while following <= end_block and len(ahead) < READ_AHEAD:
                ahead.append(loop.run_in_executor(pool, reader.read, following))
                following += 1
            data = await ahead.popleft()
            lo = first - index * CHUNK_SIZE if index == start_block else 0
            hi = last - index * CHUNK_SIZE + 1 if index == end_block else len(data)
            await response.write(memoryview(data)[lo:hi] if (lo, hi) != (0, len(data)) else data)
    except DamagedError as exc:
        logger.error("download of %s ended early: %s", detail.view.id, exc)
        _abort(request)
    except ConnectionError:  # the client went away (closed, reset): nothing to report
        logger.debug("download of %s: the client left", detail.view.id)
    finally:
        for future in ahead:
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved, so an unread failure is not reported twice


def _abort(request: web.Request) -> None:
    """End the connection mid-body: the client sees fewer bytes than Content-Length, so it
    knows the download failed (a status can no longer be sent)."""
    transport = request.transport
    if transport is not None:
        transport.close()


async def handler(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /api/v1/items/{id}/content: the original bytes (`?inline=1` to preview)."""
    s = site(request)
    detail = s.catalog.detail(request.match_info["id"])
    if detail is None:
        return not_found_json()
    view = detail.view
    etag = f'"{view.id}"'
    inline = request.query.get("inline") == "1" and previewable(view.mime)
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-cache",  # revalidate (cheap: 304), so a redaction takes effect
        "Content-Security-Policy": CONTENT_CSP,
    }
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        return not_modified(etag)
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's copy is another representation: send it all
    try:
        span = parse_range(wanted, view.size) if wanted is not None else None
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{view.size}"
        return web.json_response({"error": "Range Not Satisfiable"}, status=416, headers=headers)
    first, last = span if span is not None else (0, view.size - 1)
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    response.content_type = content_type(view.mime)
    response.headers["Content-Disposition"] = content_disposition(view.filename, inline)
    if span is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{view.size}"
    response.content_length = last - first + 1
    await response.prepare(request)
    if request.method != "HEAD" and last >= first:
        await stream(request, response, s.node, s.pool, s.releaser, detail, first, last)
    return response
