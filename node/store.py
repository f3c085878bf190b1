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

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb

from .errors import HomeError, StoreFull

SCHEMA_VERSION = b"1"
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
    b"redacted",  # item id -> u64 seq of its "redact" entry
    b"pending",  # ingest token -> CBOR list of block ids committed before the item's entry
)


def seq_key(collection: bytes, seq: int) -> bytes:
    return collection + seq.to_bytes(8, "big")


class Store:
    """An open LMDB environment with the node's named databases."""

    def __init__(self, path: Path, map_size: int, create: bool = False) -> None:
        if not create and not (path / "data.mdb").exists():
            raise HomeError(f"no store at {path}: the home is incomplete or damaged")
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
        try:
            self.db = {name.decode(): self.env.open_db(name) for name in DATABASES}
            with self.env.begin(write=True, db=self.db["meta"]) as txn:
                found = txn.get(b"schema")
                if found is None:
                    if not create:
                        raise HomeError(f"store at {path} has no schema version: damaged?")
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
        self.env.close()

    @contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """A write transaction: committed on success, aborted on any exception."""
        try:
            txn = self.env.begin(write=True)
        except lmdb.MapResizedError:
            self.env.set_mapsize(0)
            txn = self.env.begin(write=True)
        try:
            yield txn
        except lmdb.Error as exc:
            txn.abort()
            _raise_full(exc)
            raise
        except BaseException:
            txn.abort()
            raise
        try:
            txn.commit()
        except lmdb.Error as exc:
            _raise_full(exc)
            raise

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        try:
            txn = self.env.begin()
        except lmdb.MapResizedError:
            self.env.set_mapsize(0)
            txn = self.env.begin()
        try:
            yield txn
        finally:
            txn.abort()


def _raise_full(exc: lmdb.Error) -> None:
    """Re-raise a full map or full disk as StoreFull; other LMDB errors pass through."""
    if isinstance(exc, lmdb.MapFullError):
        raise StoreFull(
            "the store is full (LMDB map size reached): raise store.map_size_gib in config.toml; "
            "nothing was half-stored"
        ) from None
    if "No space left" in str(exc) or getattr(exc, "errno", None) == errno.ENOSPC:
        raise StoreFull("the disk is full; nothing was half-stored") from None
