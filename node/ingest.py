"""Ingest: files in, items out. Streaming, in constant memory, all-or-nothing per item.

For each file: read 1 MiB at a time; hash the original (SHA-256, the investigators' fixity);
encrypt (non-public tiers); store the block under the hash of what is stored; then write the
item record, the signed "item" log entry and the indexes in the same transaction as the blocks.

Small items share a transaction (up to BATCH_ITEMS items or BATCH_BYTES): one commit per batch,
and one signed "item" entry per log.MAX_ITEMS items of it (SPEC 4.5).
A file bigger than BATCH_BYTES cannot keep all its blocks in one transaction without holding
them all in memory (LMDB keeps a transaction's dirty pages in RAM), so its blocks are committed
every BATCH_BYTES under a `pending` record. The item only appears when its entry commits; the
blocks of an ingest that died (its lock file no longer held) are removed by `collect_orphans`.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import mimetypes
import os
import pickle
import queue
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import lmdb
from amanah.protocol import cbor, crypto, ids, log
from amanah.protocol import item as item_mod
from amanah.protocol import metadata as metadata_mod
from amanah.protocol.errors import FormatError
from amanah.protocol.log import CollectionState

from .archive import CollectionInfo
from .collections import now_ms
from .errors import AmanahError, InvalidInput
from .home import Node
from .store import translate_full

# Measured here: commits of 8-16 MiB write ~930 MiB/s, 32 MiB only ~320 MiB/s, and each commit
# costs ~70 ms of fsync whatever its size.
BATCH_BYTES = 16 << 20
BATCH_ITEMS = 4_096
RELEASE_EVERY = 16 << 20  # see Store.release_map
# An item record lists its manifest blocks and must fit in 65,000 bytes: ~1,900 manifests of
# 1,024 blocks of 1 MiB. Refused up front rather than after streaming a terabyte.
MAX_FILE = 1 << 40
CHUNK = item_mod.CHUNK_SIZE

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Added:
    id: str
    path: str
    sha256: str
    size: int

    def as_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Source:
    path: Path  # what to open
    name: str  # recorded as the original's file name (relative path inside an added folder)
    size: int
    # Opens the content instead of `path`: an HTTP upload is spooled encrypted and read back
    # through a decrypting reader (node/partner_api.py).
    opener: Callable[[], BinaryIO] | None = None


def gather(paths: Iterable[Path]) -> list[Source]:
    """Every regular file named or below a named folder, checked readable before any is stored.

    Symbolic links inside folders are not followed (a link can point outside, or loop).
    """
    sources: list[Source] = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise InvalidInput(f"{path}: no such file or folder") from None
        except OSError as exc:
            raise InvalidInput(f"{path}: {exc.strerror}") from None
        if stat.S_ISREG(st.st_mode):
            sources.append(Source(path, path.resolve().name, st.st_size))
        elif stat.S_ISDIR(st.st_mode):
            base = str(path.resolve())
            cut = len(os.path.dirname(base)) + 1  # names are recorded from the folder's own name
            for root, dirs, files in os.walk(base, onerror=_walk_error):
                dirs.sort()
                for f in sorted(files):
                    p = os.path.join(root, f)
                    lst = os.lstat(p)
                    if stat.S_ISREG(lst.st_mode):
                        sources.append(Source(Path(p), p[cut:].replace(os.sep, "/"), lst.st_size))
        else:
            raise InvalidInput(f"{path}: not a regular file or folder")
    for s in sources:
        if not os.access(s.path, os.R_OK):
            raise InvalidInput(f"{s.path}: permission denied")
        try:
            metadata_mod.check_filename(s.name)
        except FormatError as exc:
            raise InvalidInput(f"{s.path}: {exc}") from None
        if s.size > MAX_FILE:
            raise InvalidInput(f"{s.path}: larger than the {MAX_FILE >> 40} TiB an item may hold")
    return sources


def check_metadata_fits(user_meta: dict, name: str, size: int) -> None:
    """Refuse up front metadata that, with the fixity fields ingest adds, would pass the limit
    `_Preparer._finish` enforces once the file is read (an HTTP upload must learn it before
    sending the file, not after)."""
    meta = dict(user_meta)
    meta.update(
        filename=name, size=size, sha256="0" * 64, mime=_mime(name), ingested_at=_LONGEST_TIME
    )
    if len(cbor.encode(meta)) > metadata_mod.MAX_METADATA:
        raise InvalidInput(f"{name}: metadata larger than {metadata_mod.MAX_METADATA} bytes")


_LONGEST_TIME = "2000-01-01T00:00:00Z"  # as long as any ingested_at _Preparer writes


def _walk_error(exc: OSError) -> None:
    raise InvalidInput(f"{exc.filename}: {exc.strerror}")


def add(
    node: Node,
    collection: CollectionInfo,
    sources: list[Source],
    user_meta: dict,
    progress: Progress | None = None,
) -> list[Added]:
    """Ingest `sources` into a collection this node owns. Returns what was added, in order."""
    try:
        user_meta = metadata_mod.validate_user(user_meta)
    except FormatError as exc:
        raise InvalidInput(f"invalid metadata: {exc}") from None
    identity = node.identity
    if collection.state.owner != identity.public_key:
        raise InvalidInput("only the collection's owner can add to it")
    collect_orphans(node)
    epoch_key = None
    with node.store.read() as txn:
        state = node.archive.require(txn, collection.state.id)  # fresh: the key may have rotated
        if state.tier != "public":
            epoch_key = node.archive.epoch_key(txn, state, state.epoch, identity)
    preparer = _Preparer(state.id, state.epoch, epoch_key, user_meta)
    with _IngestLock(node.home / "run") as lock:
        return _Writer(node, state.id, lock.token, progress).run(sources, preparer)


# --- the pipeline ---------------------------------------------------------------------------------
#
# Files of more than one chunk are read, hashed and encrypted by a reader thread while this thread
# hashes the stored bytes and writes them: hashlib, OpenSSL and LMDB release the GIL, so the two
# overlap on two cores. Chunks travel in a fixed ring of buffers (no allocation per chunk: fresh
# 1 MiB buffers cost page faults that showed as doubled system time). Small files are done inline:
# for them the hand-over costs more than it saves.


@dataclass
class _Block:
    slot: int
    data: memoryview  # as stored: ciphertext, or the plaintext of a public item
    size: int  # plaintext bytes it carries (for progress)


@dataclass
class _Prepared:
    source: Source
    salt: bytes
    epoch: int | None
    size: int
    sha256: str
    meta: dict
    meta_enc: bytes | None
    blocks: list[bytes] | None = None  # the stored blocks of a small file, read inline
    block_ids: list[bytes] | None = None  # and their ids
    record: item_mod.ItemRecord | None = None  # a small file's record, built with them


class _Stopped(Exception):
    pass


RING = 6


class _Preparer:
    """Reads, hashes and encrypts one file; streams its blocks to `emit`."""

    def __init__(
        self, collection: bytes, epoch: int | None, epoch_key: bytes | None, user_meta: dict
    ) -> None:
        self.collection = collection
        self.epoch = epoch
        self.epoch_key = epoch_key
        self.user_meta = user_meta
        self.ingested_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def small(self, source: Source) -> _Prepared:
        salt, cipher = self._cipher()
        data = _read_all(source.path) if source.opener is None else _read_opened(source)
        stored = []
        if data:
            stored.append(cipher.seal(crypto.PURPOSE_BLOCK, 0, data) if cipher else data)
        p = self._finish(source, salt, cipher, len(data), hashlib.sha256(data), stored)
        # The record too: for many small files this runs in the child process (see below).
        p.block_ids = [ids.sha256_id(b) for b in stored]
        p.record = build_item_record(self.collection, p, p.block_ids)
        return p

    def stream(self, source: Source, ring: _Ring) -> _Prepared:
        salt, cipher = self._cipher()
        original = hashlib.sha256()
        size = index = 0
        with _open(source.path) if source.opener is None else source.opener() as f:
            while True:
                slot = ring.acquire()
                plain, out = ring.plain[slot], ring.stored[slot]
                n = _fill(f, plain, source.path)
                if n == 0:
                    ring.release(slot)
                    break
                chunk = plain[:n]
                original.update(chunk)
                if cipher:
                    m = cipher.seal_into(crypto.PURPOSE_BLOCK, index, chunk, out)
                    ring.send(_Block(slot, out[:m], n))
                else:
                    ring.send(_Block(slot, chunk, n))
                size += n
                index += 1
                if n < CHUNK:
                    break
        return self._finish(source, salt, cipher, size, original, None)

    def _cipher(self) -> tuple[bytes, crypto.ItemCipher | None]:
        salt = os.urandom(crypto.SALT_LEN)
        if self.epoch_key is None:
            return salt, None
        return salt, crypto.ItemCipher(self.epoch_key, self.collection, salt)

    def _finish(
        self,
        source: Source,
        salt: bytes,
        cipher: crypto.ItemCipher | None,
        size: int,
        original: object,
        blocks: list[bytes] | None,
    ) -> _Prepared:
        meta = dict(self.user_meta)
        meta.update(
            filename=source.name,
            size=size,
            sha256=original.hexdigest(),  # type: ignore[attr-defined]
            mime=_mime(source.name),
            ingested_at=self.ingested_at,
        )
        meta_raw = cbor.encode(meta)
        if len(meta_raw) > metadata_mod.MAX_METADATA:
            raise InvalidInput(
                f"{source.path}: metadata larger than {metadata_mod.MAX_METADATA} bytes"
            )
        meta_enc = cipher.seal(crypto.PURPOSE_METADATA, 0, meta_raw) if cipher else None
        return _Prepared(source, salt, self.epoch, size, meta["sha256"], meta, meta_enc, blocks)


@functools.lru_cache(maxsize=256)
def _mime_of_suffix(suffix: str) -> str:
    return mimetypes.guess_type("x" + suffix)[0] or "application/octet-stream"


def _mime(name: str) -> str:
    return _mime_of_suffix(os.path.splitext(name)[1].lower())


class _Ring:
    """Buffers shared by the reader thread and the writer, and the queue between them."""

    def __init__(self) -> None:
        self.plain = [memoryview(bytearray(CHUNK)) for _ in range(RING)]
        self.stored = [memoryview(bytearray(CHUNK + crypto.TAG_LEN)) for _ in range(RING)]
        self.free: queue.Queue[int] = queue.Queue()
        for i in range(RING):
            self.free.put(i)
        self.queue: queue.Queue = queue.Queue()
        self.stopped = threading.Event()

    def acquire(self) -> int:
        while not self.stopped.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def release(self, slot: int) -> None:
        self.free.put(slot)

    def send(self, msg: object) -> None:
        self.queue.put(msg)


def _stream_file(preparer: _Preparer, source: Source, ring: _Ring) -> Iterator[_Block | _Prepared]:
    """Run `preparer.stream` in a reader thread; yield its blocks, then the prepared item."""
    result: list = []

    def run() -> None:
        try:
            result.append(preparer.stream(source, ring))
        except _Stopped:
            pass
        except BaseException as exc:
            result.append(exc)
        ring.send(None)

    thread = threading.Thread(target=run, name="amanah-ingest-reader", daemon=True)
    thread.start()
    try:
        while True:
            msg = ring.queue.get()
            if msg is None:
                break
            yield msg
    finally:
        ring.stopped.set()
        thread.join()
        ring.stopped.clear()
    if isinstance(result[0], BaseException):
        raise result[0]
    yield result[0]


# --- many small files: prepared by a child process --------------------------------------------
#
# For thousands of small files, Python work per file (open, read, hash, derive a key, encrypt,
# encode metadata) is about as large as the writer's (store, sign, index), and threads cannot
# share it (the GIL). A forked child prepares the files in order and streams them, pickled in
# batches, through a pipe, while this process stores and signs: the two cores work together.
# The child never opens the store (LMDB must not be used across a fork) and ends with _exit.

PARALLEL_MIN = 256  # small files before a child is worth its start-up
CHILD_BATCH = 64


def _small_in_child(preparer: _Preparer, sources: list[Source]) -> _Child | None:
    """A generator of the small sources' _Prepared, in order, made by a forked child; or None
    when that does not apply (few files, uploads, other threads running, no fork)."""
    small = [s for s in sources if s.size <= CHUNK]
    if (
        len(small) < PARALLEL_MIN
        or any(s.opener is not None for s in small)
        or threading.active_count() > 1
        or not hasattr(os, "fork")
    ):
        return None
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: prepare, send, exit without running any of the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            with open(write_fd, "wb") as out:
                for i in range(0, len(small), CHILD_BATCH):
                    try:
                        batch: object = [preparer.small(s) for s in small[i : i + CHILD_BATCH]]
                    except BaseException as exc:  # handed to the parent, which raises it
                        batch = exc
                    data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
                    out.write(len(data).to_bytes(8, "big") + data)
                    if isinstance(batch, BaseException):
                        break
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return _Child(pid, read_fd)


class _Child:
    """The parent's end: yields the child's _Prepared in order; close() always reaps it."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self.pid = pid
        self.pipe = open(read_fd, "rb")  # noqa: SIM115 - closed in close()
        self.pending: list[_Prepared] = []

    def __iter__(self) -> _Child:
        return self

    def __next__(self) -> _Prepared:
        while not self.pending:
            head = self.pipe.read(8)
            if not head:
                self.close()
                raise StopIteration
            batch = pickle.loads(self.pipe.read(int.from_bytes(head, "big")))
            if isinstance(batch, BaseException):
                self.close()
                raise batch
            self.pending = list(reversed(batch))
        return self.pending.pop()

    def close(self) -> None:
        if self.pid == 0:
            return
        self.pipe.close()
        try:
            os.kill(self.pid, signal.SIGKILL)  # if we stopped early; harmless if it has exited
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        self.pid = 0


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb", buffering=0)
    except OSError as exc:
        raise InvalidInput(f"{path}: {exc.strerror}") from None


def _read_all(path: Path) -> bytes:
    """A small file's bytes (at most one chunk).

    Reads exactly the size fstat reports, plus one byte to notice growth: asking os.read for a
    whole chunk allocates 1 MiB per file, which made reading a 4 KiB file four times slower.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise InvalidInput(f"{path}: {exc.strerror}") from None
    try:
        want = min(os.fstat(fd).st_size, CHUNK) + 1
        return _read_capped(lambda n: os.read(fd, max(n, 1 << 16)), want, path)
    finally:
        os.close(fd)


def _read_opened(source: Source) -> bytes:
    """A small source's bytes, read through its opener."""
    assert source.opener is not None
    try:
        f = source.opener()
    except OSError as exc:
        raise InvalidInput(f"{source.name}: {exc.strerror}") from None
    with f:
        return _read_capped(f.read, CHUNK + 1, source.name)


def _read_capped(read: Callable[[int], bytes], want: int, name: object) -> bytes:
    """Read to the end, at most one chunk: a source that grows past it while read is refused."""
    parts: list[bytes] = []
    got = 0
    try:
        while got <= CHUNK:
            part = read(max(want - got, 1))
            if not part:
                break
            parts.append(part)
            got += len(part)
    except OSError as exc:
        raise InvalidInput(f"{name}: read failed: {exc.strerror}") from None
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if len(data) > CHUNK:
        raise InvalidInput(f"{name}: the file grew while being added; add it again")
    return data


class _Writer:
    """Stores blocks as they come, and each item's record and signed entry when it ends."""

    def __init__(
        self, node: Node, collection: bytes, token: bytes, progress: Progress | None
    ) -> None:
        self.node = node
        self.db = node.store.db
        self.collection = collection
        self.token = token
        self.progress = progress or (lambda n: None)
        self.txn: lmdb.Transaction | None = None
        self.batch_bytes = 0
        self.batch_items = 0
        self.checkpoints = 0
        self.since_release = 0
        self.unsigned: list[bytes] = []  # items stored in this transaction, not yet in an entry
        self.finished = 0  # items stored so far (committed or not)
        self.committed = 0  # items committed (a large file's checkpoint commits those before it)

    def run(self, sources: list[Source], preparer: _Preparer) -> list[Added]:
        added: list[Added] = []
        ring = _Ring()
        small = _small_in_child(preparer, sources)
        self._begin()
        try:
            for source in sources:
                if source.size <= CHUNK:
                    prepared = next(small) if small is not None else preparer.small(source)
                    blocks = [
                        self.node.blobs.put(self.txn, b, expect=i, verified=True)
                        for b, i in zip(
                            prepared.blocks or [], prepared.block_ids or [], strict=True
                        )
                    ]
                    self.batch_bytes += prepared.size
                    self.progress(prepared.size)
                else:
                    prepared, blocks = self._stream(preparer, source, ring)
                added.append(self._finish(prepared, blocks))
                self.batch_items += 1
                if self.batch_items >= BATCH_ITEMS or self.batch_bytes >= BATCH_BYTES:
                    self._commit()
                    self._begin()
            self._commit()
            if small is not None:
                small.close()
        except BaseException as exc:
            self._abort()
            if small is not None:
                small.close()  # stops and reaps the child preparing small files
            if self.checkpoints:  # blocks of the unfinished item already committed: remove them
                _drop_pending(self.node, self.token)
            if isinstance(exc, lmdb.Error):
                translate_full(exc, str(self.node.home / "store"))  # StoreFull, or as it was
            if self.committed and isinstance(exc, AmanahError):
                n = len(sources)
                raise type(exc)(
                    f"{exc} ({self.committed} of {n} files were added before this)"
                ) from None
            raise
        return added

    def _stream(
        self, preparer: _Preparer, source: Source, ring: _Ring
    ) -> tuple[_Prepared, list[bytes]]:
        blocks: list[bytes] = []
        checkpointed = 0
        for msg in _stream_file(preparer, source, ring):
            if isinstance(msg, _Prepared):
                return msg, blocks
            try:
                blocks.append(self.node.blobs.put(self.txn, msg.data))
            finally:
                ring.release(msg.slot)
            self.batch_bytes += len(msg.data)
            self.progress(msg.size)
            if self.batch_bytes >= BATCH_BYTES:
                self._checkpoint(blocks[checkpointed:])
                checkpointed = len(blocks)
        raise AssertionError("the reader ended without its item")

    # transactions ------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._txn_ctx = self.node.store.write()
        self.txn = self._txn_ctx.__enter__()
        # The state is re-read in every transaction: another process may have appended meanwhile.
        self.state: CollectionState = self.node.archive.require(self.txn, self.collection)
        self.begin_length = self.state.length
        self.batch_bytes = 0
        self.batch_items = 0

    def _sign(self) -> None:
        """Append one "item" entry naming the items stored since the last, and index them."""
        if not self.unsigned:
            return
        entry = self.node.archive.append(
            self.txn,
            self.state,
            self.node.identity,
            "item",
            now_ms(),
            save_state=False,
            **log.item_fields(self.unsigned),
        )
        where = self.collection + entry.seq.to_bytes(8, "big")
        for item_id in self.unsigned:
            self.txn.put(item_id, where, db=self.db["items"])
        self.unsigned = []

    def _commit(self) -> None:
        self._sign()  # every item committed is named by a signed entry in the same transaction
        self.node.archive.save_state(self.txn, self.state)
        self.node.archive.advance_complete(
            self.txn, self.collection, self.begin_length, self.state.length
        )
        ctx, self.txn = self._txn_ctx, None
        ctx.__exit__(None, None, None)
        self.committed = self.finished
        self.since_release += self.batch_bytes
        if self.since_release >= RELEASE_EVERY:
            self.node.store.trim_map()
            self.since_release = 0

    def _abort(self) -> None:
        self.unsigned = []
        if self.txn is not None:
            ctx, self.txn = self._txn_ctx, None
            try:
                ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
            except RuntimeError:
                pass

    def _checkpoint(self, block_ids: list[bytes]) -> None:
        """Commit the blocks written so far of a large item, marked as pending."""
        key = self.token + self.checkpoints.to_bytes(4, "big")
        self.txn.put(key, cbor.encode(block_ids), db=self.db["pending"])
        self.checkpoints += 1
        self._commit()
        self._begin()

    def _finish(self, p: _Prepared, block_ids: list[bytes]) -> Added:
        node, txn, db = self.node, self.txn, self.db
        if p.epoch != self.state.epoch:
            # unshare rotated the key while we were adding: this item was encrypted under the
            # old key, which a revoked reader still has. Refuse it rather than leak it.
            raise InvalidInput(
                "the collection's key was rotated (a reader was removed) during this add; "
                "add the remaining files again"
            )
        refs = list(block_ids)
        if p.record is not None:
            record = p.record
        else:
            manifest = None
            if len(block_ids) > item_mod.INLINE_BLOCKS:
                manifest = [
                    node.blobs.put(txn, item_mod.encode_manifest(part))
                    for part in item_mod.manifest_chunks(block_ids)
                ]
                refs.extend(manifest)
            record = build_item_record(self.collection, p, block_ids, manifest)
        txn.put(record.id, record.raw, db=db["records"])
        add_refs(txn, db["refs"], refs)
        self.unsigned.append(record.id)
        self.finished += 1
        if len(self.unsigned) >= log.MAX_ITEMS:
            self._sign()
        for i in range(self.checkpoints):
            txn.delete(self.token + i.to_bytes(4, "big"), db=db["pending"])
        self.checkpoints = 0
        return Added(ids.to_text("itm", record.id), str(p.source.path), p.sha256, p.size)


def build_item_record(
    collection: bytes, p: _Prepared, block_ids: list[bytes], manifest: list[bytes] | None = None
) -> item_mod.ItemRecord:
    fields: dict = {"v": item_mod.RECORD_VERSION, "col": collection, "salt": p.salt}
    fields.update(size=p.size, chunk=CHUNK)
    if manifest is None:
        fields["blocks"] = block_ids
    else:
        fields["manifest"] = manifest
    if p.meta_enc is not None:
        fields["epoch"] = p.epoch
        fields["meta_enc"] = p.meta_enc
    else:
        fields["meta"] = p.meta
    return item_mod.build_record(fields)


def _fill(f: object, view: memoryview, path: Path) -> int:
    """Read until `view` is full or the file ends (a regular file may return short reads)."""
    got = 0
    try:
        while got < len(view):
            n = f.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
    except OSError as exc:
        raise InvalidInput(f"{path}: read failed: {exc.strerror}") from None
    return got


def add_refs(txn: lmdb.Transaction, db: object, block_ids: list[bytes]) -> None:
    for b in block_ids:
        old = txn.get(b, db=db)
        count = int.from_bytes(old, "big") + 1 if old else 1
        txn.put(b, count.to_bytes(4, "big"), db=db)


def release_refs(node: Node, txn: lmdb.Transaction, block_ids: list[bytes]) -> None:
    """Drop one reference to each block; remove blocks no live item uses any more.

    A block an unfinished large ingest has written (listed in `pending`) is kept: that ingest's
    item will reference it when it commits.
    """
    db = node.store.db["refs"]
    in_flight: set[bytes] | None = None
    for b in block_ids:
        old = txn.get(b, db=db)
        count = int.from_bytes(old, "big") - 1 if old else 0
        if count > 0:
            txn.put(b, count.to_bytes(4, "big"), db=db)
            continue
        txn.delete(b, db=db)
        if in_flight is None:
            in_flight = set()
            for _, value in txn.cursor(node.store.db["pending"]):
                in_flight.update(cbor.decode(bytes(value), 1 << 20))
        if b not in in_flight:
            node.blobs.remove(txn, b)


# --- crashed ingests ------------------------------------------------------------------------------


class _IngestLock:
    """A lock file held for as long as an ingest runs; its token names its pending record."""

    def __init__(self, run_dir: Path) -> None:
        self.token = os.urandom(16)
        self.path = run_dir / f"ingest-{self.token.hex()}.lock"

    def __enter__(self) -> _IngestLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


def collect_orphans(node: Node) -> int:
    """Remove blocks left by ingests whose process died before the item's entry committed."""
    run_dir = node.home / "run"
    removed = 0
    with node.store.read() as txn:
        keys = txn.cursor(node.store.db["pending"]).iternext(values=False)
        tokens = sorted({bytes(k[:16]) for k in keys})
    for token in tokens:
        lock_path = run_dir / f"ingest-{token.hex()}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # still running
            removed += _drop_pending(node, token)
            lock_path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return removed


def _drop_pending(node: Node, token: bytes) -> int:
    db = node.store.db
    removed = 0
    with node.store.write() as txn:
        mine: list[bytes] = []
        others: set[bytes] = set()
        keys = []
        for key, value in txn.cursor(db["pending"]):
            ids_ = cbor.decode(bytes(value), 1 << 20)
            if key[:16] == token:
                mine.extend(ids_)
                keys.append(bytes(key))
            else:
                others.update(ids_)
        for b in mine:
            if b not in others and txn.get(b, db=db["refs"]) is None:
                removed += node.blobs.remove(txn, b)
        for key in keys:
            txn.delete(key, db=db["pending"])
    return removed
