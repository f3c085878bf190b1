"""The partner node's HTTP API: upload, list, download, replication status.

`mount(app, node)` adds these routes to the daemon's aiohttp application (node/api.py). Every
path needs `Authorization: Bearer <HOME/http.token>` (node/api.py's middleware checks it before
any handler runs); the server listens on 127.0.0.1 unless configured otherwise. The routes do
what the CLI does, through the same core: collections.list_all/describe, items.list_items
(`amanah ls`), items.read_verified (`amanah get`), ingest.add (`amanah add`),
status.collection_status (`amanah status`). PARTNER_OPENAPI below describes them for
publication; GET /api/v1/openapi.json serves it.

Reading (JSON unless said)::

    GET  /api/v1/collections              every collection held here: id, name (None when this
                                          node cannot read it), tier, owned, readable, log_length
    GET  /api/v1/collections/{col}        `amanah collection show` + "replication"
                                          (`amanah status COL`)
    GET  /api/v1/collections/{col}/items?page=N[&all=1]
                                          rows as `amanah ls --json`, newest first, 50 a page;
                                          "next_page" is null on the last page
    GET  /api/v1/items/{itm}              the item's row (metadata when readable) + "collection"
    GET  /api/v1/items/{itm}/content      the original, streamed (also HEAD); Range: bytes=a-b,
                                          a-, -n (one range; several are ignored: 200 with all)
    GET  /api/v1/status                   replication of every collection (node/api.py)
    GET  /api/v1/openapi.json             PARTNER_OPENAPI

Downloads never serve an unverified byte: each block is checked (hash, authentication tag, size)
before it is sent, and a whole-file response holds its last block back until the original's
SHA-256 matches; on damage the connection is cut, so the client sees a short body, never a
complete wrong one. A ranged response is verified block by block (the SHA-256 needs it all).

Uploads, resumable in the spirit of tus (https://tus.io)::

    POST   /api/v1/uploads        {"collection": col_… or unique name, "size": n, "filename": …,
                                   "metadata": {…as `amanah add --meta-file`}, "sha256": optional}
                                  -> 201 {"id", "offset": 0, "size", "expires_at", …}
    HEAD   /api/v1/uploads/{id}   -> Upload-Offset, Upload-Length headers (resume from there)
    GET    /api/v1/uploads/{id}   -> the same as JSON, with "item" once ingested
    GET    /api/v1/uploads        -> the uploads in progress or recently completed
    PATCH  /api/v1/uploads/{id}   Upload-Offset: n, Content-Length: m, then m bytes
                                  -> {"offset", "size", "complete": false}; when the offset
                                  reaches the size the file is ingested and the spool removed:
                                  -> {"complete": true, "item": {"id", "sha256", "size", …}}
                                  (a PATCH of 0 bytes at the end retries or repeats that)
    DELETE /api/v1/uploads/{id}   cancel: the spool is removed -> 204

Every failure is a JSON {"error": …} (and "field" when one input is at fault) and changes
nothing: 400 bad input or metadata (validated as the CLI does, before any byte is accepted),
401 token, 403 a collection this node does not own or an item it cannot read, 404 unknown
collection, item or upload (any malformed id: path tricks never reach the file system), 408 a
client silent for longer than the idle timeout (what arrived is kept), 409 wrong offset (the
body carries the right one), 410 a redacted item, 411 no Content-Length, 413 more than declared
or the cap, 416 unsatisfiable range, 422 content not matching the declared sha256 (the upload
is discarded), 423 another request is writing the upload, 429 too many open uploads, 507 disk
or store full.

The spool (HOME/uploads, 0700; files 0600) is encrypted: AES-256-CTR under a key per upload
derived from the node's identity seed, and the upload's description (file name, metadata)
sealed with ChaCha20-Poly1305. A seized disk shows no upload's content, name or metadata, as
for stored closed items; and because the seed, not memory, keys it, an upload resumes across a
daemon restart. An upload untouched for the TTL (24 h) is removed.

Bounds: the size is declared up front (cap: ingest.MAX_FILE) and checked before every write; a
PATCH must send Content-Length and may not pass the declared size; bodies are streamed in 1 MiB
pieces, never read whole; a read that waits longer than the idle timeout ends the request (408);
at most MAX_OPEN uploads are open at once; ingests run two at a time. Everything that touches
LMDB, the disk or a cipher runs in a worker thread (loop.run_in_executor), so the event loop
only moves bytes. Limits can be changed through the environment (AMANAH_UPLOAD_MAX_SIZE,
AMANAH_UPLOAD_MAX_OPEN, AMANAH_UPLOAD_TTL, AMANAH_UPLOAD_IDLE_TIMEOUT: seconds).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import shutil
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from aiohttp import web
from amanah.protocol import crypto, ids
from amanah.protocol import item as item_mod
from amanah.protocol import metadata as metadata_mod
from amanah.protocol.errors import FormatError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from . import collections, ingest, items
from . import status as status_mod
from .errors import (
    AmanahError,
    DamagedError,
    HomeError,
    InvalidInput,
    NotFound,
    PassphraseError,
    StoreFull,
    Unreadable,
)
from .home import Node

log = logging.getLogger("amanah.api.partner")

PREFIX = "/api/v1"
PAGE_SIZE = 50
MAX_PAGE = 10_000_000
FLUSH = 1 << 20  # bytes of an upload gathered before one write to the spool
DOWNLOAD_BATCH = 4  # blocks read per worker-thread call (4 MiB in memory per download)
MAX_CREATE_BODY = 256 << 10  # a POST /uploads body: 32 KiB of metadata, JSON-escaped
INGESTS_AT_ONCE = 2  # each holds ~12 MiB of buffers and up to 16 MiB of LMDB dirty pages
DISK_MARGIN = 64 << 20
SWEEP_EVERY = 600.0
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_CREATE_FIELDS = ("collection", "size", "filename", "metadata", "sha256")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_NUMBER = re.compile(r"[0-9]{1,19}")  # ASCII digits only (str.isdigit takes "١" and "²")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_STATE_MAGIC = b"AMUP1"
_SPOOL_INFO = b"amanah/v1/upload-spool"

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    max_size: int = ingest.MAX_FILE
    max_open: int = 16
    ttl: float = 24 * 3600.0
    idle: float = 60.0

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, or what AMANAH_UPLOAD_* say (an operator's knob, and the tests')."""

        def num(name: str, default: float, kind: type) -> Any:
            raw = os.environ.get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise HomeError(f"{name} must be a number, not {raw!r}") from None
            if value <= 0:
                raise HomeError(f"{name} must be positive")
            return value

        d = cls()
        return cls(
            max_size=min(num("AMANAH_UPLOAD_MAX_SIZE", d.max_size, int), ingest.MAX_FILE),
            max_open=num("AMANAH_UPLOAD_MAX_OPEN", d.max_open, int),
            ttl=num("AMANAH_UPLOAD_TTL", d.ttl, float),
            idle=num("AMANAH_UPLOAD_IDLE_TIMEOUT", d.idle, float),
        )


class ApiError(Exception):
    """A clean refusal: status, a message for people, and extra JSON fields."""

    def __init__(
        self, status: int, message: str, headers: dict | None = None, **extra: object
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra
        self.close = False  # end the connection after the response (a client gone quiet)

    def response(self) -> web.Response:
        response = _json({"error": self.message, **self.extra}, self.status, self.headers)
        if self.close:
            response.force_close()
        return response


def _dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False)


def _json(data: object, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


# The node's errors, as HTTP: what the CLI prints on one line, the API sends with a status.
_STATUS_OF: list[tuple[type[AmanahError], int]] = [
    (NotFound, 404),
    (InvalidInput, 400),
    (Unreadable, 403),
    (StoreFull, 507),
    (DamagedError, 500),
    (PassphraseError, 500),
    (HomeError, 500),
]


def _from_node_error(exc: AmanahError) -> ApiError:
    status = next((s for kind, s in _STATUS_OF if isinstance(exc, kind)), 500)
    extra = {"damaged": True} if isinstance(exc, DamagedError) else {}
    return ApiError(status, str(exc), **extra)


Method = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]


def _handler(fn: Method) -> Method:
    """Turn ApiError and the node's errors into JSON responses (node/api.py's middleware would
    keep only the reason of an HTTPException, losing "field" and the like)."""

    async def wrapped(self: Any, request: web.Request) -> web.StreamResponse:
        try:
            return await fn(self, request)
        except ApiError as exc:
            return exc.response()
        except AmanahError as exc:
            if not isinstance(exc, (NotFound, InvalidInput, Unreadable)):
                log.warning("%s %s: %s", request.method, request.path, exc)
            return _from_node_error(exc).response()
        except FormatError as exc:  # stored data that does not parse
            log.warning("%s %s: %s", request.method, request.path, exc)
            return ApiError(500, f"stored data is damaged: {exc}", damaged=True).response()
        except ConnectionError:
            raise  # the client went away: aiohttp ends the request quietly
        except OSError as exc:  # the spool's disk
            log.error("%s %s: %s", request.method, request.path, exc)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            return ApiError(507 if full else 500, f"the node cannot write: {exc}").response()

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


async def _thread(fn: Callable[..., T], *args: object) -> T:
    """Run blocking work (LMDB, disk, ciphers) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the spool: encrypted, resumable, one upload per pair of files -----------------------------


@dataclass
class Upload:
    """An upload in progress (or just completed): its description and where it stands."""

    id: str
    collection: str  # col_… (resolved when the upload began)
    size: int
    filename: str
    metadata: dict  # validated user metadata
    sha256: str | None  # declared by the client, checked before ingest
    created: float
    offset: int = 0  # bytes in the spool (every one of them received and written)
    item: dict | None = None  # once ingested
    # With a declared sha256: the SHA-256 of bytes 0..offset while this process has seen them
    # all (after a restart it is computed from the spool at the end instead).
    hasher: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    finishing: asyncio.Task | None = None  # the ingest, once started (it outlives a request)

    @property
    def busy(self) -> bool:
        """Being written or ingested: not to be written, cancelled or expired meanwhile."""
        return self.lock.locked() or (self.finishing is not None and not self.finishing.done())

    def as_dict(self, ttl: float, touched: float) -> dict:
        out = {
            "id": self.id,
            "url": f"{PREFIX}/uploads/{self.id}",
            "collection": self.collection,
            "filename": self.filename,
            "metadata": self.metadata,
            "size": self.size,
            "offset": self.size if self.item else self.offset,
            "complete": self.item is not None,
            "created_at": _rfc3339(self.created),
            "expires_at": _rfc3339(touched + ttl),
        }
        if self.sha256:
            out["sha256"] = self.sha256
        if self.item:
            out["item"] = self.item
        return out

    def describe(self) -> bytes:
        """What is sealed in the state file."""
        return json.dumps(
            {
                "v": 1,
                "id": self.id,
                "collection": self.collection,
                "size": self.size,
                "filename": self.filename,
                "metadata": self.metadata,
                "sha256": self.sha256,
                "created": self.created,
                "item": self.item,
            },
            ensure_ascii=False,
        ).encode()


class Spool:
    """HOME/uploads: `ID.state` (the sealed description) and `ID.data` (the content so far).

    File names come only from ids this module generated and checked (UPLOAD_ID), never from a
    request. All methods block: call them in a worker thread.
    """

    def __init__(self, directory: Path, seed: bytes) -> None:
        self.dir = directory
        self._master = crypto.hkdf(seed, b"", _SPOOL_INFO)
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)

    def state_path(self, uid: str) -> Path:
        return self.dir / f"{uid}.state"

    def data_path(self, uid: str) -> Path:
        return self.dir / f"{uid}.data"

    def _key(self, uid: str, purpose: bytes) -> bytes:
        return crypto.hkdf(self._master, bytes.fromhex(uid), purpose)

    # description ---------------------------------------------------------------------------

    def save(self, upload: Upload) -> None:
        """Write the sealed description atomically (a crash leaves the old one or the new)."""
        nonce = os.urandom(12)
        sealed = ChaCha20Poly1305(self._key(upload.id, b"state")).encrypt(
            nonce, upload.describe(), upload.id.encode()
        )
        tmp = self.dir / f"{upload.id}.state.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_STATE_MAGIC + nonce + sealed)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path(upload.id))

    def load(self, uid: str) -> Upload | None:
        """An upload from its files, or None (and its files removed) if they are not ours."""
        try:
            raw = self.state_path(uid).read_bytes()
            if not raw.startswith(_STATE_MAGIC):
                raise ValueError("not an upload description")
            start = len(_STATE_MAGIC)
            plain = ChaCha20Poly1305(self._key(uid, b"state")).decrypt(
                raw[start : start + 12], raw[start + 12 :], uid.encode()
            )
            d = json.loads(plain)
            if d.get("v") != 1 or d.get("id") != uid:
                raise ValueError("not an upload description")
            upload = Upload(
                uid,
                d["collection"],
                d["size"],
                d["filename"],
                d["metadata"],
                d["sha256"],
                d["created"],
                item=d["item"],
            )
        except (OSError, ValueError, KeyError, TypeError, InvalidTag) as exc:
            log.warning("upload %s: unreadable description (%s); removed", uid, exc)
            self.remove(uid)
            return None
        if upload.item is None:
            try:
                upload.offset = min(self.data_path(uid).stat().st_size, upload.size)
            except FileNotFoundError:
                self.remove(uid)
                return None
        return upload

    # content -------------------------------------------------------------------------------

    def create(self, upload: Upload) -> None:
        fd = os.open(
            self.data_path(upload.id), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
        )
        os.close(fd)
        try:
            self.save(upload)
        except BaseException:
            self.remove(upload.id)
            raise

    def _cipher(self, uid: str, offset: int) -> Any:
        """AES-256-CTR positioned at `offset`: the counter block is offset // 16, big-endian.
        Each byte position is written once (the spool only grows), so no keystream is reused."""
        iv = (offset // 16).to_bytes(16, "big")
        ctx = Cipher(algorithms.AES(self._key(uid, b"content")), modes.CTR(iv)).encryptor()
        ctx.update(bytes(offset % 16))
        return ctx

    def append(self, upload: Upload, fd: int, data: bytes) -> None:
        """Write `data` at the upload's offset; the offset advances once it is written."""
        end = upload.offset + len(data)
        if end > upload.size:  # checked by the handler too; never write past the declared size
            raise ApiError(413, "more bytes than the declared size")
        ciphertext = self._cipher(upload.id, upload.offset).update(data)
        view = memoryview(ciphertext)
        at = upload.offset
        while view:
            n = os.pwrite(fd, view, at)
            view, at = view[n:], at + n
        if upload.hasher is not None:
            upload.hasher.update(data)
        upload.offset = end

    def open_write(self, uid: str) -> int:
        return os.open(self.data_path(uid), os.O_WRONLY | os.O_NOFOLLOW)

    def reader(self, upload: Upload) -> BinaryIO:
        return _SpoolReader(self.data_path(upload.id), self._cipher(upload.id, 0), upload.size)

    def sha256(self, upload: Upload) -> str:
        h = hashlib.sha256()
        with self.reader(upload) as f:
            while chunk := f.read(FLUSH):
                h.update(chunk)
        return h.hexdigest()

    # removal -------------------------------------------------------------------------------

    def remove(self, uid: str) -> None:
        for path in (
            self.data_path(uid),
            self.state_path(uid),
            self.dir / f"{uid}.state.tmp",
        ):
            path.unlink(missing_ok=True)

    def remove_data(self, uid: str) -> None:
        self.data_path(uid).unlink(missing_ok=True)

    def touched(self, uid: str) -> float:
        """When the upload last changed (the newest mtime of its files): what expiry counts."""
        times = []
        for path in (self.state_path(uid), self.data_path(uid)):
            with contextlib.suppress(FileNotFoundError):
                times.append(path.stat().st_mtime)
        return max(times, default=0.0)

    def ids(self) -> list[str]:
        names = (p.name for p in self.dir.iterdir())
        return sorted(n[:-6] for n in names if n.endswith(".state") and UPLOAD_ID.fullmatch(n[:-6]))

    def strays(self, known: set[str], older_than: float) -> None:
        """Files no upload owns (a crash between two steps), once old enough to be no one's."""
        for p in self.dir.iterdir():
            uid = p.name.split(".", 1)[0]
            if uid in known and not p.name.endswith(".tmp"):
                continue
            with contextlib.suppress(FileNotFoundError):
                if p.lstat().st_mtime < older_than:
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink()


class _SpoolReader(io.RawIOBase):
    """The plaintext of a spool, for ingest (ingest.Source.opener): at most `size` bytes."""

    def __init__(self, path: Path, decryptor: Any, size: int) -> None:
        super().__init__()
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._dec = decryptor
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        n = self._f.readinto(view) or 0
        if n:
            view[:n] = self._dec.update(view[:n])  # CTR: decrypting is the same keystream XOR
            self._left -= n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


# --- validation of an upload's description ------------------------------------------------------


def _check_filename(value: object) -> str:
    """A file name as `amanah add` records it: a name, or a relative path inside a folder.
    Nothing absolute, no "." or ".." parts, no backslashes: a name that could mean another
    place when someone restores the file is refused here, not made safe later."""
    if not isinstance(value, str) or not value:
        raise ApiError(400, "filename must be a non-empty text", field="filename")
    try:
        metadata_mod.check_filename(value)
    except FormatError as exc:
        raise ApiError(400, str(exc), field="filename") from None
    parts = value.split("/")
    if "\\" in value or any(p in ("", ".", "..") for p in parts):
        raise ApiError(
            400,
            "filename must be a plain name or a relative path (no leading /, no . or .. parts, "
            "no backslashes)",
            field="filename",
        )
    return value


def _check_metadata(value: object) -> dict:
    """validate_user, as the CLI runs it; on failure, the first field at fault is named."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ApiError(400, "invalid metadata: metadata must be an object", field="metadata")
    try:
        return metadata_mod.validate_user(value)
    except FormatError as exc:
        # validate_user checks each top-level field on its own: find the one at fault.
        culprit = "metadata"
        for name, v in value.items():
            try:
                metadata_mod.validate_user({name: v})
            except FormatError:
                culprit = f"metadata.{name}"
                break
        raise ApiError(400, f"invalid metadata: {exc}", field=culprit) from None


def _check_size(value: object, limits: Limits) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(400, "size must be a non-negative integer (bytes)", field="size")
    if value > limits.max_size:
        raise ApiError(
            413, f"size {value} is more than the {limits.max_size} bytes allowed", field="size"
        )
    return value


# --- Range ----------------------------------------------------------------------------------------


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range, None to send everything (no header, a
    syntax we do not take, or several ranges: RFC 9110 lets a server ignore Range). Raises
    ApiError 416 for a range that selects nothing."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    unsatisfiable = ApiError(
        416, f"range not satisfiable (size {size})", {"Content-Range": f"bytes */{size}"}
    )
    if not m.group(1):  # the last n bytes
        n = int(m.group(2))
        if n == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - n), size - 1
    first = int(m.group(1))
    if m.group(2) and int(m.group(2)) < first:
        return None  # invalid syntax: ignored
    if first >= size:
        raise unsatisfiable
    last = int(m.group(2)) if m.group(2) else size - 1
    return first, min(last, size - 1)


def _disposition(name: str) -> str:
    """attachment, with an ASCII fallback and the real (often Arabic) name per RFC 6266/8187."""
    base = items.safe_filename(name)
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in base)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(base)}"


# --- the API --------------------------------------------------------------------------------------


class PartnerApi:
    def __init__(self, node: Node, limits: Limits) -> None:
        self.node = node
        self.limits = limits
        self.spool: Spool | None = None  # opened at start-up (it needs the unlocked identity)
        self.uploads: dict[str, Upload] = {}
        self.ingests = asyncio.Semaphore(INGESTS_AT_ONCE)
        self._sweeping = asyncio.Lock()
        self._sweeper: asyncio.Task | None = None

    # lifecycle -------------------------------------------------------------------------------

    async def start(self, app: web.Application) -> None:
        self.spool = await _thread(Spool, self.node.home / "uploads", self.node.identity.seed)
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self, app: web.Application) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_EVERY, self.limits.ttl / 4))
            try:
                await self.sweep()
            except OSError as exc:
                log.warning("sweeping expired uploads failed: %s", exc)

    async def sweep(self) -> None:
        """Load uploads from the spool (after a restart) and remove expired ones."""
        async with self._sweeping:  # one at a time: two would load one upload twice
            spool = self._spool()
            found = set(await _thread(spool.ids))
            for uid in found - set(self.uploads):
                upload = await _thread(spool.load, uid)
                if upload is not None:
                    self.uploads.setdefault(uid, upload)  # one created meanwhile stays
            now = time.time()
            for uid, upload in list(self.uploads.items()):
                if upload.busy:
                    continue
                if uid not in found:
                    if self.uploads.get(uid) is upload and upload.created < now - 60:
                        self.uploads.pop(uid)  # its files were removed behind our back
                    continue
                if await _thread(spool.touched, uid) + self.limits.ttl >= now:
                    continue
                if upload.busy:  # a request took it while we looked (no await from here on)
                    continue
                log.info("upload %s expired; removed", uid)
                self.uploads.pop(uid, None)
                await _thread(spool.remove, uid)
            await _thread(spool.strays, set(self.uploads), now - self.limits.ttl)

    def _spool(self) -> Spool:
        if self.spool is None:
            raise ApiError(503, "the upload spool is not ready")
        return self.spool

    def _upload(self, request: web.Request) -> Upload:
        uid = request.match_info["upload"]
        upload = self.uploads.get(uid) if UPLOAD_ID.fullmatch(uid) else None
        if upload is None:
            raise ApiError(404, "no such upload (finished long ago, expired or cancelled?)")
        return upload

    def _upload_doc(self, upload: Upload) -> dict:
        return upload.as_dict(self.limits.ttl, self._spool().touched(upload.id))

    # collections and items --------------------------------------------------------------------

    @_handler
    async def list_collections(self, request: web.Request) -> web.Response:
        return _json({"collections": await _thread(self._collections)})

    def _collections(self) -> list[dict]:
        node = self.node
        out = []
        for info in collections.list_all(node):
            row = collections.summary(info)
            row.update(
                owned=info.state.owner == node.public_key,
                readable=info.state.tier == "public" or info.name is not None,
                log_length=info.state.length,
            )
            out.append(row)
        return out

    @_handler
    async def get_collection(self, request: web.Request) -> web.Response:
        raw = _collection_id(request.match_info["col"])
        return _json(await _thread(self._collection, raw))

    def _collection(self, raw: bytes) -> dict:
        info = collections.resolve(self.node, ids.to_text("col", raw))
        doc = collections.describe(self.node, info)
        doc["readable"] = info.state.tier == "public" or info.name is not None
        doc["replication"] = status_mod.collection_status(self.node, info.state)
        return doc

    @_handler
    async def list_items(self, request: web.Request) -> web.Response:
        raw = _collection_id(request.match_info["col"])
        text = request.query.get("page", "1")
        if not _NUMBER.fullmatch(text) or not 1 <= int(text) <= MAX_PAGE:
            raise ApiError(400, f"page must be a number from 1 to {MAX_PAGE}", field="page")
        page = int(text)
        include = request.query.get("all", "") in ("1", "true", "yes")
        rows = await _thread(self._items_page, raw, page, include)
        more = len(rows) > PAGE_SIZE
        return _json(
            {
                "collection": ids.to_text("col", raw),
                "page": page,
                "per_page": PAGE_SIZE,
                "next_page": page + 1 if more else None,
                "items": rows[:PAGE_SIZE],
            }
        )

    def _items_page(self, raw: bytes, page: int, include_redacted: bool) -> list[dict]:
        with self.node.store.read() as txn:
            state = self.node.archive.require(txn, raw)
        rows = items.list_items(
            self.node, state, include_redacted, newest_first=True, skip=(page - 1) * PAGE_SIZE
        )
        try:
            # One more than a page: whether there is a next one, without counting them all.
            return [row for _, row in zip(range(PAGE_SIZE + 1), rows, strict=False)]
        finally:
            rows.close()  # ends its read transaction in this thread

    @_handler
    async def get_item(self, request: web.Request) -> web.Response:
        return _json(await _thread(self._item_row, request.match_info["item"]))

    def _locate(self, ref: str) -> items.Located:
        try:
            return items.locate(self.node, ref)
        except InvalidInput:  # a malformed id is simply not an item here
            raise ApiError(404, "no such item on this node") from None

    def _item_row(self, ref: str) -> dict:
        located = self._locate(ref)
        with self.node.store.read() as txn:
            state = self.node.archive.require(txn, located.collection)
            row = items.item_row(self.node, txn, state, located.id, located.seq)
        return {"collection": ids.to_text("col", located.collection), **row}

    # download --------------------------------------------------------------------------------

    def _open_item(self, ref: str) -> tuple:
        """What a download needs, checked as `amanah get` checks it."""
        node = self.node
        located = self._locate(ref)
        with node.store.read() as txn:
            seq = items.redaction(node, txn, located.collection, located.id)
            if seq is None:
                state = node.archive.require(txn, located.collection)
                record = items.load_record(node, txn, located.id)
                items.check_fits(record, state)
                cipher = items.cipher_for(node, txn, state, record)
                meta = items.metadata(cipher, record)
                blocks = items.block_ids(node, txn, record)
        if seq is not None:
            from .redact import reason_of

            try:
                reason = reason_of(node, located.collection, seq)
            except Unreadable:
                reason = "(the reason is encrypted)"
            raise ApiError(410, f"item {located.id_text} was redacted: {reason}", redacted=True)
        return located, record, cipher, meta, blocks

    @_handler
    async def get_content(self, request: web.Request) -> web.StreamResponse:
        located, record, cipher, meta, blocks = await _thread(
            self._open_item, request.match_info["item"]
        )
        size = record.size
        etag = f'"{located.id_text}"'  # an item never changes: its id is a strong validator
        wanted = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range.strip() != etag:
            wanted = None  # the client's copy is of something else: send it all
        span = parse_range(wanted, size)
        first, last = span if span is not None else (0, size - 1)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": _disposition(meta["filename"]),
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            # RFC 9530: the SHA-256 of the whole original, for the client to check its copy
            # (also on a 206: it describes what the ranges assemble into).
            "Repr-Digest": f"sha-256=:{_b64(bytes.fromhex(meta['sha256']))}:",
        }
        if span is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        chunk = item_mod.CHUNK_SIZE
        reader = None
        pending: bytes | None = None
        if request.method == "HEAD":
            pass
        elif size:
            reader = items.read_verified(
                self.node,
                record,
                cipher,
                meta,
                blocks,
                first // chunk,
                last // chunk,
                DOWNLOAD_BATCH,
            )
            # The first block before the headers: damage found there is a clean 500.
            pending = await _thread(next, reader, None)
        else:
            await _thread(lambda: list(items.read_verified(self.node, record, cipher, meta, [])))
        response = web.StreamResponse(status=206 if span else 200, headers=headers)
        response.content_length = last - first + 1
        await response.prepare(request)
        if reader is None:  # HEAD, or an empty file
            await response.write_eof()
            return response
        index = first // chunk
        try:
            while pending is not None:
                lo = first - index * chunk if index == first // chunk else 0
                hi = last - index * chunk + 1 if index == last // chunk else len(pending)
                await response.write(pending[lo:hi])
                index += 1
                pending = await _thread(next, reader, None)
        except DamagedError as exc:
            log.error("download of %s cut: %s", located.id_text, exc)
            if request.transport is not None:
                request.transport.close()  # a short body, never a complete wrong one
            return response
        except ConnectionError:
            return response  # the client went away (aiohttp then ends the request quietly)
        finally:
            reader.close()
        await response.write_eof()
        return response

    # uploads ---------------------------------------------------------------------------------

    async def _read_json(self, request: web.Request) -> object:
        """The request body as JSON, read in pieces with a cap (never whole if too large)."""
        if request.content_length is not None and request.content_length > MAX_CREATE_BODY:
            raise ApiError(413, f"the body is larger than {MAX_CREATE_BODY} bytes")
        body = bytearray()
        while True:
            try:
                async with asyncio.timeout(self.limits.idle):
                    piece = await request.content.readany()
            except TimeoutError:
                raise ApiError(408, "the client sent nothing for too long") from None
            if not piece:
                break
            body += piece
            if len(body) > MAX_CREATE_BODY:
                raise ApiError(413, f"the body is larger than {MAX_CREATE_BODY} bytes")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the body must be a JSON object") from None

    @_handler
    async def create_upload(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        unknown = [k for k in body if k not in _CREATE_FIELDS]
        if unknown:
            raise ApiError(400, f"unknown field {unknown[0]!r}", field=str(unknown[0]))
        ref = body.get("collection")
        if not isinstance(ref, str) or not ref.strip():
            raise ApiError(400, "collection (an id or a name) is required", field="collection")
        size = _check_size(body.get("size"), self.limits)
        filename = _check_filename(body.get("filename"))
        meta = _check_metadata(body.get("metadata"))
        declared = body.get("sha256")
        if declared is not None and (
            not isinstance(declared, str) or not _SHA256_HEX.fullmatch(declared)
        ):
            raise ApiError(400, "sha256 must be 64 lower-case hex digits", field="sha256")
        try:
            ingest.check_metadata_fits(meta, filename, size)
        except InvalidInput as exc:
            raise ApiError(400, str(exc), field="metadata") from None
        col = await _thread(self._writable_collection, ref.strip())
        await self.sweep()
        open_now = sum(1 for u in self.uploads.values() if u.item is None)
        if open_now >= self.limits.max_open:
            raise ApiError(
                429,
                f"{open_now} uploads are open, the most allowed; finish or cancel one",
                headers={"Retry-After": "60"},
            )
        spool = self._spool()
        free = (await _thread(shutil.disk_usage, spool.dir)).free
        if free < 2 * size + DISK_MARGIN:  # the spool, then the store, hold it at once
            raise ApiError(507, f"not enough disk space for {size} bytes ({free} free)")
        upload = Upload(
            secrets.token_hex(16),
            col,
            size,
            filename,
            meta,
            declared,
            time.time(),
            hasher=hashlib.sha256() if declared else None,  # only what is checked is hashed
        )
        self.uploads[upload.id] = upload  # before its files exist: a sweep then keeps it
        try:
            await _thread(spool.create, upload)
        except BaseException:
            self.uploads.pop(upload.id, None)
            raise
        doc = await _thread(self._upload_doc, upload)
        return _json(doc, 201, {"Location": doc["url"], **_offset_headers(upload)})

    def _writable_collection(self, ref: str) -> str:
        """The id of a collection this node owns (403 if it only holds a copy), by id or name."""
        try:
            info = collections.resolve(self.node, ref)
        except InvalidInput as exc:
            if ref.startswith("col_"):
                raise ApiError(404, "no such collection on this node", field="collection") from None
            raise ApiError(400, str(exc), field="collection") from None
        except NotFound as exc:
            raise ApiError(404, str(exc), field="collection") from None
        if info.state.owner != self.node.public_key:
            raise ApiError(
                403,
                f"this node holds {info.id_text} for its owner and cannot add to it",
                field="collection",
            )
        return info.id_text

    @_handler
    async def list_uploads(self, request: web.Request) -> web.Response:
        docs = [await _thread(self._upload_doc, u) for u in list(self.uploads.values())]
        return _json({"uploads": docs})

    @_handler
    async def get_upload(self, request: web.Request) -> web.Response:
        upload = self._upload(request)
        return _json(await _thread(self._upload_doc, upload), headers=_offset_headers(upload))

    @_handler
    async def head_upload(self, request: web.Request) -> web.Response:
        upload = self._upload(request)
        return web.Response(status=200, headers=_offset_headers(upload))

    @_handler
    async def delete_upload(self, request: web.Request) -> web.Response:
        upload = self._upload(request)
        if upload.busy:
            raise _busy(upload)
        async with upload.lock:
            self.uploads.pop(upload.id, None)
            await _thread(self._spool().remove, upload.id)
        return web.Response(status=204)

    def _patch_refusal(self, request: web.Request, upload: Upload) -> tuple[int, int]:
        """(offset, length) of an acceptable PATCH, or the ApiError that refuses it. Checked
        before any byte of the body is read (and, with Expect: 100-continue, before it is
        sent)."""
        if upload.busy:
            raise _busy(upload)
        if upload.item is not None:
            if request.content_length:
                raise ApiError(
                    409,
                    "this upload is complete",
                    _offset_headers(upload),
                    offset=upload.size,
                    item=upload.item,
                )
            return upload.size, 0  # a PATCH of 0 bytes asks for the result again
        text = request.headers.get("Upload-Offset", "")
        if not _NUMBER.fullmatch(text):
            raise ApiError(
                400, "Upload-Offset must be the number of bytes already sent", field="Upload-Offset"
            )
        if int(text) != upload.offset:
            raise ApiError(
                409,
                f"Upload-Offset is {text} but {upload.offset} bytes are stored; resume from there",
                _offset_headers(upload),
                offset=upload.offset,
            )
        length = request.content_length
        if length is None:
            raise ApiError(411, "a PATCH needs Content-Length (no chunked encoding)")
        if upload.offset + length > upload.size:
            raise ApiError(
                413,
                f"{length} more bytes would pass the declared size {upload.size}",
                _offset_headers(upload),
                offset=upload.offset,
                size=upload.size,
            )
        return upload.offset, length

    async def expect_patch(self, request: web.Request) -> web.StreamResponse | None:
        """Answer Expect: 100-continue: refuse before the client sends a byte it would waste.
        Runs before node/api.py's middleware, so it checks the token itself (constant time)."""
        token: str = request.app["daemon"].token
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        refusal: web.StreamResponse | None = None
        right = hmac.compare_digest(given.strip().encode(), token.encode())
        if not (scheme.lower() == "bearer" and right):
            refusal = _json({"error": "missing or wrong bearer token"}, 401)
        else:
            try:
                self._patch_refusal(request, self._upload(request))
            except ApiError as exc:
                refusal = exc.response()
        if refusal is not None:
            refusal.headers["Cache-Control"] = "no-store"
            refusal.headers["X-Content-Type-Options"] = "nosniff"
            refusal.force_close()  # the body will not come: do not linger for it
            return refusal
        if request.headers.get("Expect", "").lower() != "100-continue":
            return _json({"error": "unknown Expect"}, 417)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None

    @_handler
    async def patch_upload(self, request: web.Request) -> web.Response:
        upload = self._upload(request)
        _, length = self._patch_refusal(request, upload)
        async with upload.lock:  # no await since the check: nobody took it meanwhile
            if upload.item is None:
                await self._receive(request, upload, length)
            if upload.offset < upload.size and upload.item is None:
                return _json(
                    {"offset": upload.offset, "size": upload.size, "complete": False},
                    headers=_offset_headers(upload),
                )
            item = await self._finish(upload)
        return _json(
            {"offset": upload.size, "size": upload.size, "complete": True, "item": item},
            headers=_offset_headers(upload),
        )

    async def _receive(self, request: web.Request, upload: Upload, length: int) -> None:
        """Append the body to the spool, in pieces. What arrives before a cut, a stall or an
        error is kept (that is what makes the upload resumable)."""
        spool = self._spool()
        fd = await _thread(spool.open_write, upload.id)
        buffer = bytearray()
        received = 0
        problem: ApiError | None = None
        try:
            while received < length:
                try:
                    async with asyncio.timeout(self.limits.idle):
                        piece = await request.content.readany()
                except TimeoutError:
                    problem = ApiError(
                        408,
                        f"nothing received for {self.limits.idle:g} s; resume with a HEAD",
                        offset=None,
                    )
                    break
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    log.info("upload %s: the client went away (%s)", upload.id, exc)
                    break
                if not piece:
                    break  # the body ended early: the connection was cut
                received += len(piece)
                buffer += piece
                if len(buffer) >= FLUSH:
                    await _thread(spool.append, upload, fd, bytes(buffer))
                    buffer.clear()
            if buffer:
                await _thread(spool.append, upload, fd, bytes(buffer))
            await _thread(os.fsync, fd)  # the offset a HEAD reports survives a crash
        except OSError as exc:
            log.error("upload %s: spool write failed: %s", upload.id, exc)
            problem = ApiError(507, f"the spool could not be written: {exc.strerror}")
        finally:
            await _thread(os.close, fd)
        if problem is not None:
            problem.extra["offset"] = upload.offset
            problem.headers.update(_offset_headers(upload))
            problem.close = problem.status == 408  # a silent client does not keep its connection
            raise problem

    async def _finish(self, upload: Upload) -> dict:
        """Ingest a complete upload once, even if the request that started it is cancelled."""
        if upload.item is not None:
            return upload.item
        if upload.finishing is None:
            upload.finishing = asyncio.create_task(self._ingest(upload))
        try:
            return await asyncio.shield(upload.finishing)
        finally:
            task = upload.finishing
            if task.done() and (task.cancelled() or task.exception() is not None):
                upload.finishing = None  # failed: a PATCH of 0 bytes may try again

    async def _ingest(self, upload: Upload) -> dict:
        async with self.ingests:
            try:
                return await _thread(self._ingest_now, upload)
            except ApiError as exc:
                if exc.status == 422:
                    self.uploads.pop(upload.id, None)
                raise

    def _ingest_now(self, upload: Upload) -> dict:
        """The upload through ingest.add, as `amanah add` would add the file."""
        spool = self._spool()
        if upload.sha256 is not None:
            got = upload.hasher.hexdigest() if upload.hasher is not None else spool.sha256(upload)
            if got != upload.sha256:
                spool.remove(upload.id)
                raise ApiError(
                    422,
                    f"the content's SHA-256 is {got}, not the {upload.sha256} declared; "
                    "the upload was discarded",
                    field="sha256",
                )
        info = collections.resolve(self.node, upload.collection)
        source = ingest.Source(
            spool.data_path(upload.id),
            upload.filename,
            upload.size,
            opener=lambda: spool.reader(upload),
        )
        [added] = ingest.add(self.node, info, [source], upload.metadata)
        upload.item = {
            "id": added.id,
            "sha256": added.sha256,
            "size": added.size,
            "filename": upload.filename,
            "collection": upload.collection,
        }
        log.info("upload %s ingested as %s", upload.id, added.id)
        # Kept (sealed, without the content) until it expires: a client cut during the ingest
        # learns the item from a HEAD or GET instead of sending it all again.
        spool.save(upload)
        spool.remove_data(upload.id)
        return upload.item

    # description -------------------------------------------------------------------------------

    @_handler
    async def openapi(self, request: web.Request) -> web.Response:
        return _json(PARTNER_OPENAPI)


def _offset_headers(upload: Upload) -> dict:
    offset = upload.size if upload.item else upload.offset
    return {"Upload-Offset": str(offset), "Upload-Length": str(upload.size)}


def _busy(upload: Upload) -> ApiError:
    return ApiError(
        423,
        "another request is writing or ingesting this upload; retry in a moment",
        {"Retry-After": "1", **_offset_headers(upload)},
        offset=upload.offset,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _collection_id(text: str) -> bytes:
    """A collection id from a path; anything malformed is simply not found."""
    try:
        return ids.from_text(text, "col")
    except FormatError:
        raise ApiError(404, "no such collection on this node") from None


# --- the published description --------------------------------------------------------------------


def _op(summary: str, responses: dict, **more: object) -> dict:
    return {"summary": summary, "responses": responses, **more}


def _ok(description: str, schema: str | None = None, media: str = "application/json") -> dict:
    out: dict = {"description": description}
    if schema is not None:
        out["content"] = {media: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return out


_ERR = {"$ref": "#/components/responses/Error"}
_PATH_COL = {"name": "col", "in": "path", "required": True, "schema": {"type": "string"}}
_PATH_ITEM = {"name": "item", "in": "path", "required": True, "schema": {"type": "string"}}
_PATH_UPLOAD = {
    "name": "upload",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_OFFSET_HEADERS = {
    "Upload-Offset": {"schema": {"type": "integer"}, "description": "bytes stored so far"},
    "Upload-Length": {"schema": {"type": "integer"}, "description": "the declared size"},
}

PARTNER_OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "Amanah partner node API",
        "version": "1",
        "description": (
            "A partner node's local API: the same operations as the `amanah` command, through "
            "the same core. Listens on 127.0.0.1:8470 by default; every request needs the bearer "
            "token in HOME/http.token. Errors are JSON {error, field?} and change nothing."
        ),
    },
    "servers": [{"url": "http://127.0.0.1:8470"}],
    "security": [{"bearer": []}],
    "paths": {
        f"{PREFIX}/health": {
            "get": _op("Liveness, peer id and addresses (node/api.py)", {"200": _ok("ok")})
        },
        f"{PREFIX}/status": {
            "get": _op(
                "Replication status of every collection, as `amanah status --json` (node/api.py)",
                {"200": _ok("status")},
            )
        },
        f"{PREFIX}/sync": {
            "post": _op(
                "Start a sync round with every trusted peer, or ?peer=PEER_ID (node/api.py)",
                {"200": _ok("started"), "404": _ERR},
            )
        },
        f"{PREFIX}/openapi.json": {"get": _op("This description", {"200": _ok("OpenAPI 3.1")})},
        f"{PREFIX}/collections": {
            "get": _op(
                "Every collection this node holds (name null when it cannot read it)",
                {"200": _ok("collections", "CollectionList"), "401": _ERR},
            )
        },
        f"{PREFIX}/collections/{{col}}": {
            "get": _op(
                "One collection (`amanah collection show`) and its replication "
                "(`amanah status COL`)",
                {"200": _ok("the collection"), "401": _ERR, "404": _ERR},
                parameters=[_PATH_COL],
            )
        },
        f"{PREFIX}/collections/{{col}}/items": {
            "get": _op(
                f"The collection's items, newest first, {PAGE_SIZE} a page (`amanah ls --json`)",
                {"200": _ok("a page", "ItemPage"), "400": _ERR, "401": _ERR, "404": _ERR},
                parameters=[
                    _PATH_COL,
                    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {
                        "name": "all",
                        "in": "query",
                        "description": "1: include redacted items",
                        "schema": {"type": "string", "enum": ["0", "1"]},
                    },
                ],
            )
        },
        f"{PREFIX}/items/{{item}}": {
            "get": _op(
                "One item: size, SHA-256 and metadata when this node can read it",
                {"200": _ok("the item", "Item"), "401": _ERR, "404": _ERR},
                parameters=[_PATH_ITEM],
            )
        },
        f"{PREFIX}/items/{{item}}/content": {
            "get": _op(
                "The original file, streamed; every block verified before it is sent, and a "
                "whole-file response cut rather than completed if the SHA-256 does not match. "
                "One byte range (Range: bytes=a-b, a-, -n; If-Range with the ETag). HEAD too.",
                {
                    "200": _ok("the whole file", None, "application/octet-stream"),
                    "206": _ok("the range asked for", None, "application/octet-stream"),
                    "401": _ERR,
                    "403": _ERR,
                    "404": _ERR,
                    "410": _ERR,
                    "416": _ERR,
                },
                parameters=[_PATH_ITEM],
            )
        },
        f"{PREFIX}/uploads": {
            "post": _op(
                "Begin a resumable upload; metadata validated as `amanah add` validates it",
                {
                    "201": {
                        "description": "created; PATCH the content to the Location",
                        "headers": {"Location": {"schema": {"type": "string"}}, **_OFFSET_HEADERS},
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Upload"}}
                        },
                    },
                    "400": _ERR,
                    "401": _ERR,
                    "403": _ERR,
                    "404": _ERR,
                    "413": _ERR,
                    "429": _ERR,
                    "507": _ERR,
                },
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/UploadRequest"}
                        }
                    },
                },
            ),
            "get": _op(
                "Uploads in progress, and those completed within the TTL",
                {"200": _ok("uploads"), "401": _ERR},
            ),
        },
        f"{PREFIX}/uploads/{{upload}}": {
            "parameters": [_PATH_UPLOAD],
            "head": _op(
                "Where an upload stands (resume from Upload-Offset)",
                {"200": {"description": "found", "headers": _OFFSET_HEADERS}, "404": _ERR},
            ),
            "get": _op(
                "An upload as JSON, with the item once ingested",
                {"200": _ok("the upload", "Upload"), "404": _ERR},
            ),
            "patch": _op(
                "Append bytes at Upload-Offset (Content-Length required; Expect: 100-continue "
                "honoured). When the offset reaches the size the file is ingested and the item "
                "returned; a PATCH of 0 bytes then returns it again.",
                {
                    "200": _ok("appended, or complete with the item", "PatchResult"),
                    "400": _ERR,
                    "404": _ERR,
                    "408": _ERR,
                    "409": _ERR,
                    "411": _ERR,
                    "413": _ERR,
                    "422": _ERR,
                    "423": _ERR,
                    "507": _ERR,
                },
                parameters=[
                    {
                        "name": "Upload-Offset",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    }
                ],
                requestBody={
                    "required": True,
                    "content": {"application/offset+octet-stream": {"schema": {}}},
                },
            ),
            "delete": _op(
                "Cancel: the spool is removed", {"204": {"description": "gone"}, "404": _ERR}
            ),
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Error": {
                "description": "refused; nothing changed",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "field": {"type": "string", "description": "the input at fault"},
                    "offset": {"type": "integer", "description": "bytes stored (uploads)"},
                },
            },
            "CollectionList": {
                "type": "object",
                "properties": {
                    "collections": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "name": {"type": ["string", "null"]},
                                "tier": {"enum": ["public", "trusted", "closed"]},
                                "owned": {"type": "boolean"},
                                "readable": {"type": "boolean"},
                                "log_length": {"type": "integer"},
                            },
                        },
                    }
                },
            },
            "Item": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "collection": {"type": "string"},
                    "position": {"type": "integer"},
                    "size": {"type": ["integer", "null"]},
                    "sha256": {"type": ["string", "null"]},
                    "readable": {"type": "boolean"},
                    "metadata": {"type": ["object", "null"]},
                    "redacted": {"type": "boolean"},
                    "damaged": {"type": "string"},
                },
            },
            "ItemPage": {
                "type": "object",
                "properties": {
                    "collection": {"type": "string"},
                    "page": {"type": "integer"},
                    "per_page": {"type": "integer"},
                    "next_page": {"type": ["integer", "null"]},
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                },
            },
            "UploadRequest": {
                "type": "object",
                "required": ["collection", "size", "filename"],
                "additionalProperties": False,
                "properties": {
                    "collection": {"type": "string", "description": "col_… id or unique name"},
                    "size": {"type": "integer", "minimum": 0},
                    "filename": {"type": "string", "description": "a name or relative path"},
                    "metadata": {
                        "type": "object",
                        "description": "title_en, title_ar, description_en, description_ar, "
                        "source_url, captured_at, location, tags, extra, public_fields",
                    },
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                },
            },
            "Upload": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "url": {"type": "string"},
                    "collection": {"type": "string"},
                    "filename": {"type": "string"},
                    "metadata": {"type": "object"},
                    "size": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "complete": {"type": "boolean"},
                    "created_at": {"type": "string"},
                    "expires_at": {"type": "string"},
                    "item": {"$ref": "#/components/schemas/UploadedItem"},
                },
            },
            "UploadedItem": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "sha256": {"type": "string"},
                    "size": {"type": "integer"},
                    "filename": {"type": "string"},
                    "collection": {"type": "string"},
                },
            },
            "PatchResult": {
                "type": "object",
                "properties": {
                    "offset": {"type": "integer"},
                    "size": {"type": "integer"},
                    "complete": {"type": "boolean"},
                    "item": {"$ref": "#/components/schemas/UploadedItem"},
                },
            },
        },
    },
}


def mount(app: web.Application, node: Node) -> None:
    """Add the partner routes (node/api.py calls this on a partner node)."""
    api = PartnerApi(node, Limits.from_env())
    app.on_startup.append(api.start)
    app.on_cleanup.append(api.stop)
    r = app.router
    r.add_get(f"{PREFIX}/openapi.json", api.openapi, allow_head=False)
    r.add_get(f"{PREFIX}/collections", api.list_collections, allow_head=False)
    r.add_get(f"{PREFIX}/collections/{{col}}", api.get_collection, allow_head=False)
    r.add_get(f"{PREFIX}/collections/{{col}}/items", api.list_items, allow_head=False)
    r.add_get(f"{PREFIX}/items/{{item}}", api.get_item, allow_head=False)
    r.add_get(f"{PREFIX}/items/{{item}}/content", api.get_content)  # and HEAD
    r.add_post(f"{PREFIX}/uploads", api.create_upload)
    r.add_get(f"{PREFIX}/uploads", api.list_uploads, allow_head=False)
    r.add_get(f"{PREFIX}/uploads/{{upload}}", api.get_upload, allow_head=False)
    r.add_route("HEAD", f"{PREFIX}/uploads/{{upload}}", api.head_upload)
    r.add_patch(f"{PREFIX}/uploads/{{upload}}", api.patch_upload, expect_handler=api.expect_patch)
    r.add_delete(f"{PREFIX}/uploads/{{upload}}", api.delete_upload)
