"""Ingest: files in, items out. Streaming, in constant memory, all-or-nothing per item.

For each file: read 1 MiB at a time; hash the original (SHA-256, the investigators' fixity);
encrypt (non-public tiers); store the block under the hash of what is stored; then write the
item record, the signed "item" log entry and the indexes in the same transaction as the blocks.

Small items share a transaction (up to BATCH_ITEMS items or BATCH_BYTES): one commit per batch.
A file bigger than BATCH_BYTES cannot keep all its blocks in one transaction without holding
them all in memory (LMDB keeps a transaction's dirty pages in RAM), so its blocks are committed
every BATCH_BYTES under a `pending` record. The item only appears when its entry commits; the
blocks of an ingest that died (its lock file no longer held) are removed by `collect_orphans`.
"""

from __future__ import annotations

import fcntl
import hashlib
import mimetypes
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import lmdb
from amanah.protocol import cbor, crypto, ids
from amanah.protocol import item as item_mod
from amanah.protocol import metadata as metadata_mod
from amanah.protocol.errors import FormatError
from amanah.protocol.log import CollectionState

from .archive import CollectionInfo
from .collections import now_ms
from .errors import AmanahError, InvalidInput
from .home import Node

BATCH_BYTES = 32 << 20
BATCH_ITEMS = 1_000
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
            base = path.resolve()
            found = []
            for root, dirs, files in os.walk(base, onerror=_walk_error):
                dirs.sort()
                for f in sorted(files):
                    p = Path(root) / f
                    lst = os.lstat(p)
                    if stat.S_ISREG(lst.st_mode):
                        rel = p.relative_to(base.parent).as_posix()
                        found.append(Source(p, rel, lst.st_size))
            sources.extend(found)
        else:
            raise InvalidInput(f"{path}: not a regular file or folder")
    for s in sources:
        if not os.access(s.path, os.R_OK):
            raise InvalidInput(f"{s.path}: permission denied")
    return sources


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
    with _IngestLock(node.home / "run") as lock:
        return _Ingest(node, collection.state.id, user_meta, lock.token, progress).run(sources)


class _Ingest:
    def __init__(
        self,
        node: Node,
        collection: bytes,
        user_meta: dict,
        token: bytes,
        progress: Progress | None,
    ) -> None:
        self.node = node
        self.db = node.store.db
        self.collection = collection
        self.user_meta = user_meta
        self.token = token
        self.progress = progress or (lambda n: None)
        self.txn: lmdb.Transaction | None = None
        self.batch_bytes = 0
        self.batch_items = 0
        self.checkpoints = 0

    def run(self, sources: list[Source]) -> list[Added]:
        added: list[Added] = []
        committed = 0
        self._begin()
        try:
            for source in sources:
                added.append(self._one(source))
                self.batch_items += 1
                if self.batch_items >= BATCH_ITEMS or self.batch_bytes >= BATCH_BYTES:
                    self._commit()
                    committed = len(added)
                    self._begin()
            self._commit()
        except BaseException as exc:
            self._abort()
            if committed and isinstance(exc, AmanahError):
                raise type(exc)(
                    f"{exc} ({committed} of {len(sources)} files were added before this)"
                ) from None
            raise
        return added

    # transactions ------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._txn_ctx = self.node.store.write()
        self.txn = self._txn_ctx.__enter__()
        # The state is re-read in every transaction: another process may have appended meanwhile.
        self.state: CollectionState = self.node.archive.require(self.txn, self.collection)
        self.batch_bytes = 0
        self.batch_items = 0

    def _commit(self) -> None:
        ctx, self.txn = self._txn_ctx, None
        ctx.__exit__(None, None, None)

    def _abort(self) -> None:
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

    # one file -----------------------------------------------------------------------------------

    def _one(self, source: Source) -> Added:
        node, state = self.node, self.state
        encrypted = state.tier != "public"
        epoch = state.epoch
        salt = os.urandom(crypto.SALT_LEN)
        cipher = None
        if encrypted:
            epoch_key = node.archive.epoch_key(self.txn, state, epoch, node.identity)
            cipher = crypto.ItemCipher(epoch_key, self.collection, salt)
        original = hashlib.sha256()
        block_ids: list[bytes] = []
        checkpointed = 0
        blobs, put = node.blobs, None
        try:
            f = open(source.path, "rb", buffering=0)
        except OSError as exc:
            raise InvalidInput(f"{source.path}: {exc.strerror}") from None
        with f:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            size = 0
            while True:
                n = _fill(f, view, source.path)
                if n == 0:
                    break
                chunk = view[:n]
                original.update(chunk)
                stored = (
                    cipher.seal(crypto.PURPOSE_BLOCK, len(block_ids), chunk) if cipher else chunk
                )
                put = blobs.put(self.txn, stored)
                block_ids.append(put)
                size += n
                self.batch_bytes += n
                self.progress(n)
                if self.batch_bytes >= BATCH_BYTES and size < source.size:
                    self._checkpoint(block_ids[checkpointed:])
                    checkpointed = len(block_ids)
                    state = self.state
                if n < CHUNK:
                    break
        meta = dict(self.user_meta)
        meta.update(
            filename=source.name,
            size=size,
            sha256=original.hexdigest(),
            mime=mimetypes.guess_type(source.name)[0] or "application/octet-stream",
            ingested_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
        try:
            metadata_mod.validate(meta)
        except FormatError as exc:
            raise InvalidInput(f"{source.path}: invalid metadata: {exc}") from None
        fields: dict = {"v": item_mod.RECORD_VERSION, "col": self.collection, "salt": salt}
        fields.update(size=size, chunk=CHUNK)
        refs = list(block_ids)
        if len(block_ids) <= item_mod.INLINE_BLOCKS:
            fields["blocks"] = block_ids
        else:
            manifest = [
                blobs.put(self.txn, item_mod.encode_manifest(part))
                for part in item_mod.manifest_chunks(block_ids)
            ]
            fields["manifest"] = manifest
            refs.extend(manifest)
        meta_raw = cbor.encode(meta)
        if cipher:
            fields["epoch"] = epoch
            fields["meta_enc"] = cipher.seal(crypto.PURPOSE_METADATA, 0, meta_raw)
        else:
            fields["meta"] = meta
        record = item_mod.build_record(fields)
        txn, db = self.txn, self.db
        txn.put(record.id, record.raw, db=db["records"])
        _add_refs(txn, db["refs"], refs)
        entry = node.archive.append(txn, state, node.identity, "item", now_ms(), item=record.id)
        txn.put(record.id, self.collection + entry.seq.to_bytes(8, "big"), db=db["items"])
        for i in range(self.checkpoints):
            txn.delete(self.token + i.to_bytes(4, "big"), db=db["pending"])
        self.checkpoints = 0
        return Added(ids.to_text("itm", record.id), str(source.path), meta["sha256"], size)


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


def _add_refs(txn: lmdb.Transaction, db: object, block_ids: list[bytes]) -> None:
    for b in block_ids:
        old = txn.get(b, db=db)
        count = int.from_bytes(old, "big") + 1 if old else 1
        txn.put(b, count.to_bytes(4, "big"), db=db)


def release_refs(node: Node, txn: lmdb.Transaction, block_ids: list[bytes]) -> None:
    """Drop one reference to each block; remove blocks no live item uses any more."""
    db = node.store.db["refs"]
    for b in block_ids:
        old = txn.get(b, db=db)
        count = int.from_bytes(old, "big") - 1 if old else 0
        if count > 0:
            txn.put(b, count.to_bytes(4, "big"), db=db)
        else:
            txn.delete(b, db=db)
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
