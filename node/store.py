"""The node's LMDB environment: one per home, named databases, a schema version checked at open.

Rules this module keeps (measured: ../shared/notes/lmdb.md):
- the same large map_size in every process (from config), so no process clamps or resizes it;
- values of at most MAX_VALUE bytes (larger values fragment the file and slow every put);
- `reader_check()` at open, so slots of killed readers do not pin old pages forever;
- write transactions are short and never held across an await (the core is synchronous).

MapFullError and ENOSPC abort the transaction (LMDB keeps the last commit intact) and surface as
StoreFull with the operation rolled back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb

from .errors import HomeError, StoreFull

SCHEMA_VERSION = b"2"
# Version 1 keyed `redacted` by item id alone, so a redaction in any log that named an item
# hid it everywhere: one owner could censor another's item (SPEC 11.6.3). Upgraded at open.
_UPGRADABLE = (b"1",)
MAX_VALUE = 65_520
DATABASES = (
    b"meta",  # b"schema" -> SCHEMA_VERSION
    b"blocks",  # block id + u16 fragment -> bytes (the LMDB blob backend)
    b"refs",  # block id -> u32 count of live items using it
    b"log",  # collection id + u64 seq -> log entry
    b"cols",  # collection id -> CollectionState (derived from the log, kept for speed)
    b"keylog",  # collection id + u64 seq -> b"" for entries that carry keys
    b"records",  # item id -> item record
    b"items",  # item id -> collection id + u64 seq of its "item" entry
    b"redacted",  # collection id + item id -> u64 seq of the "redact" entry in that log
    b"pending",  # ingest token + u32 -> CBOR list of block ids committed before the item's entry
    b"peers",  # peer public key -> CBOR {name, addrs, role, added}: the trusted partners
    b"forks",  # collection id + u64 seq + entry id -> a conflicting entry kept as evidence
    b"complete",  # collection id -> u64 log length at which this node held every block
    b"peerstate",  # collection id + peer key -> CBOR {length, head, complete, seen}: what it has
    # collection id + item id -> u64 seq of an "item" entry of that log naming an item that
    # `items` places in another collection (a log may name any id; only the record says its home)
    b"foreign",
)


_MADV_DONTNEED = 4
_madvise = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _madvise = _libc.madvise
        _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _madvise.restype = ctypes.c_int
    except (OSError, AttributeError):
        _madvise = None


# Store.trim_map releases the map only once this many bytes more of the process's file pages are
# resident than after its last release.
TRIM_ABOVE = 16 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_statm: tuple[int, int] | None = None  # (pid, fd) of /proc/self/statm, reopened after a fork
_statm_lock = threading.Lock()


def _resident_file_bytes() -> int | None:
    """This process's resident shared (file-backed) memory, from /proc/self/statm (~1.5 us with
    the file kept open); None where there is none."""
    global _statm
    try:
        with _statm_lock:
            if _statm is None or _statm[0] != os.getpid():
                _statm = (os.getpid(), os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
            fd = _statm[1]
        return int(os.pread(fd, 256, 0).split()[2]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _upgrade_to_2(txn: lmdb.Transaction, db: dict) -> None:
    """Schema 1 -> 2: a redaction is keyed by its collection too (the item's home, which is
    what `items` names; a redaction of an item no index names could not be placed, and there
    was nothing of it left to hide). In the same transaction as the version, so all or none."""
    for item_id, seq in list(txn.cursor(db["redacted"])):
        txn.delete(item_id, db=db["redacted"])
        where = txn.get(item_id, db=db["items"])
        if where is not None:
            txn.put(bytes(where[:-8]) + item_id, seq, db=db["redacted"])


def seq_key(collection: bytes, seq: int) -> bytes:
    return collection + seq.to_bytes(8, "big")


class Store:
    """An open LMDB environment with the node's named databases."""

    def __init__(self, path: Path, map_size: int, create: bool = False) -> None:
        if not create and not (path / "data.mdb").exists():
            raise HomeError(f"no store at {path}: the home is incomplete or damaged")
        if create:
            # py-lmdb would create the directory with the files' mode (0600): not traversable,
            # so no process but root's could open the store again.
            path.mkdir(mode=0o700, exist_ok=True)
        try:
            self.env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=len(DATABASES) + 4,
                max_readers=512,
                subdir=True,
                create=create,
                mode=0o600,
                readahead=False,
            )
        except lmdb.Error as exc:
            raise HomeError(f"cannot open the store at {path}: {exc}") from None
        self.env.reader_check()
        self._data_path = str((path / "data.mdb").resolve())
        self._map_ranges: list[tuple[int, int]] | None = None  # see release_map
        self._map_lock = threading.Lock()
        self._resident_after_release = 0  # see trim_map
        try:
            self.db = {name.decode(): self.env.open_db(name) for name in DATABASES}
            with self.env.begin(write=True, db=self.db["meta"]) as txn:
                found = txn.get(b"schema")
                if found is None:
                    if not create:
                        raise HomeError(f"store at {path} has no schema version: damaged?")
                    txn.put(b"schema", SCHEMA_VERSION)
                elif found in _UPGRADABLE:
                    _upgrade_to_2(txn, self.db)
                    txn.put(b"schema", SCHEMA_VERSION)
                elif found != SCHEMA_VERSION:
                    raise HomeError(
                        f"store at {path} has schema {found!r}; this version of Amanah reads "
                        f"{SCHEMA_VERSION!r}"
                    )
        except lmdb.Error as exc:
            self.env.close()
            raise HomeError(f"the store at {path} is damaged: {exc}") from None
        except HomeError:
            self.env.close()
            raise

    def close(self) -> None:
        with self._map_lock:
            self._map_ranges = []
            self.env.close()

    def _remap(self) -> None:
        """Map the store again at the size another process grew it to (LMDB moves the map)."""
        with self._map_lock:
            self._map_ranges = None
            self.env.set_mapsize(0)

    def release_map(self) -> None:
        """Drop this process's resident pages of the LMDB map (they stay in the page cache).

        LMDB reads through a shared read-only mapping of data.mdb, and the kernel maps
        neighbouring pages on every fault ("fault-around"), so a long ingest, read-back or verify
        makes the process's RSS grow with the size of what it touched: measured ~250 MB of file
        pages after writing 1 GiB. MADV_DONTNEED on a clean shared file mapping only unmaps
        pages; the next access maps them again from the page cache. Long loops call this
        every few dozen MiB to keep memory constant whatever the file size. Linux only; a no-op
        elsewhere.
        """
        if _madvise is None:
            return
        # The ranges are found once: LMDB maps the file when it opens it and moves the map only
        # in set_mapsize, which only _remap calls, under the same lock, forgetting them. A stale
        # range must never be advised: on private anonymous memory MADV_DONTNEED zeroes it.
        with self._map_lock:
            if self._map_ranges is None:
                self._map_ranges = self._find_map_ranges()
            for start, end in self._map_ranges:
                _madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)

    def trim_map(self) -> None:
        """`release_map`, once the process's resident file pages have grown by TRIM_ABOVE since
        the last release: for loops, every few dozen lookups or MiB. Releasing is not free:
        every page touched after it faults back in (lookups in a 50 MB store took ~4.9 us
        instead of ~1.2 us when the map was released every 64 of them), so a store small enough
        to stay mapped is left mapped, and a large one is held to about TRIM_ABOVE."""
        if _madvise is None:
            return
        resident = _resident_file_bytes()
        if resident is not None and resident - self._resident_after_release < TRIM_ABOVE:
            return
        self.release_map()
        self._resident_after_release = _resident_file_bytes() or 0

    def _find_map_ranges(self) -> list[tuple[int, int]]:
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
                found = [line.split()[0] for line in f if line.rstrip().endswith(self._data_path)]
        except OSError:
            return []
        return [(int(r.split("-")[0], 16), int(r.split("-")[1], 16)) for r in found]

    @contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """A write transaction: committed on success, aborted on any exception."""
        try:
            txn = self.env.begin(write=True)
        except lmdb.MapResizedError:
            self._remap()
            txn = self.env.begin(write=True)
        try:
            yield txn
        except lmdb.Error as exc:
            txn.abort()
            translate_full(exc, self.env.path())
            raise
        except BaseException:
            txn.abort()
            raise
        try:
            txn.commit()
        except lmdb.Error as exc:
            translate_full(exc, self.env.path())
            raise

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        try:
            txn = self.env.begin()
        except lmdb.MapResizedError:
            self._remap()
            txn = self.env.begin()
        try:
            yield txn
        finally:
            txn.abort()


# LMDB reports a write cut short by a full disk as EIO (mdb_page_flush), not ENOSPC; an EIO with
# less free space than this left on the store's file system is taken for a full disk.
FULL_DISK_SLACK = 64 << 20


def translate_full(exc: lmdb.Error, path: str | None = None) -> None:
    """Re-raise a full map or full disk as StoreFull; other LMDB errors pass through."""
    if isinstance(exc, lmdb.MapFullError):
        raise StoreFull(
            "the store is full (LMDB map size reached): raise store.map_size_gib in config.toml; "
            "nothing was half-stored"
        ) from None
    if "No space left" in str(exc) or getattr(exc, "errno", None) == errno.ENOSPC:
        raise StoreFull("the disk is full; nothing was half-stored") from None
    if path is not None and "Input/output error" in str(exc):
        try:
            st = os.statvfs(path)
        except OSError:
            return
        if st.f_bavail * st.f_frsize < FULL_DISK_SLACK:
            raise StoreFull("the disk is full; nothing was half-stored") from None
