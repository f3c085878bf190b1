"""Where block bytes live: a small interface, and its embedded LMDB backend.

The interface is Perkeep's: put (verifying the address), get, has, remove, enumerate. A block's
id is the SHA-256 multihash of its bytes, computed here, so nothing can be stored under a wrong
address. Methods take the caller's LMDB transaction: the LMDB backend writes inside it, so an
item's blocks commit with its log entry or not at all; an object-store backend (later) writes
objects directly and relies on the transaction only for its index, content addressing making a
re-put harmless and an orphan collectable.
"""

from __future__ import annotations

import abc
import hashlib

import lmdb
from amanah.protocol import ids
from amanah.protocol.errors import IntegrityError

from .store import MAX_VALUE, Store

MAX_FRAGMENTS = 1 << 16


class BlobStore(abc.ABC):
    """The contract every backend meets (tests/test_blobstore.py runs it against each)."""

    @abc.abstractmethod
    def put(
        self,
        txn: lmdb.Transaction,
        data: bytes,
        expect: bytes | None = None,
        verified: bool = False,
    ) -> bytes:
        """Store `data`; return its id. If `expect` is given and differs, store nothing and
        raise IntegrityError. `verified=True` (with `expect`) is for ingest, whose preparer has
        just hashed these very bytes: the id is not computed a second time."""

    @abc.abstractmethod
    def get(self, txn: lmdb.Transaction, block_id: bytes) -> bytes | None:
        """The stored bytes (as stored: not re-verified), or None."""

    @abc.abstractmethod
    def has(self, txn: lmdb.Transaction, block_id: bytes) -> bool: ...

    @abc.abstractmethod
    def remove(self, txn: lmdb.Transaction, block_id: bytes) -> bool:
        """Remove a block; True if it was there."""

    @abc.abstractmethod
    def enumerate(
        self, txn: lmdb.Transaction, after: bytes = b"", limit: int = 1000
    ) -> list[bytes]:
        """Up to `limit` ids greater than `after`, in byte order."""


HAS_RELEASE_EVERY = 64


class LmdbBlobStore(BlobStore):
    """Blocks in the node's LMDB, split into values of at most 65,520 bytes.

    Key: the 34-byte id, then a 2-byte big-endian fragment index. Fragments of one block are
    contiguous in key order, so a get is one cursor walk.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store.db["blocks"]
        self._looked_up = 0  # has() calls since the last Store.release_map

    def put(
        self,
        txn: lmdb.Transaction,
        data: bytes,
        expect: bytes | None = None,
        verified: bool = False,
    ) -> bytes:
        if verified and expect is not None:
            block_id = expect
        else:
            block_id = ids.multihash(hashlib.sha256(data).digest())
        if expect is not None and expect != block_id:
            raise IntegrityError("block does not match its id")
        n = max(1, -(-len(data) // MAX_VALUE))
        if n > MAX_FRAGMENTS:
            raise ValueError("block too large")
        if self.has(txn, block_id):
            existing = self.get(txn, block_id)
            if existing is not None and hashlib.sha256(existing).digest() == block_id[2:]:
                return block_id  # content-addressed: the same bytes are already there
            self.remove(txn, block_id)  # a damaged copy: this put repairs it
        view = memoryview(data)
        db = self._db
        for i in range(n):
            txn.put(
                block_id + i.to_bytes(2, "big"), view[i * MAX_VALUE : (i + 1) * MAX_VALUE], db=db
            )
        return block_id

    def get(self, txn: lmdb.Transaction, block_id: bytes) -> bytes | None:
        first = txn.get(block_id + b"\0\0", db=self._db)
        if first is None or len(first) < MAX_VALUE:
            return first  # absent, or one fragment: no cursor walk (most small blocks)
        cursor = txn.cursor(self._db)
        if not cursor.set_range(block_id + b"\0\1"):
            return first
        parts = [first]
        expected = 1
        for key, value in cursor:
            if key[:-2] != block_id:
                break
            if int.from_bytes(key[-2:], "big") != expected:
                break  # a missing fragment: return what is there; the hash check will fail
            parts.append(value)
            expected += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def has(self, txn: lmdb.Transaction, block_id: bytes) -> bool:
        # Looking a block up maps the page-cache folio its first fragment sits in, and with
        # ext4's large folios (kernel 6.x) that can be most of a 1 MiB block: a presence scan
        # of 640 blocks mapped ~500 MiB of file pages. Released every HAS_RELEASE_EVERY calls
        # (Store.trim_map: released only once enough is mapped).
        self._looked_up += 1
        if self._looked_up >= HAS_RELEASE_EVERY:
            self._looked_up = 0
            self._store.trim_map()
        return txn.get(block_id + b"\0\0", db=self._db) is not None

    def remove(self, txn: lmdb.Transaction, block_id: bytes) -> bool:
        cursor = txn.cursor(self._db)
        found = False
        if cursor.set_range(block_id):
            while cursor.key()[:-2] == block_id:
                found = True
                if not cursor.delete():
                    break
        return found

    def enumerate(
        self, txn: lmdb.Transaction, after: bytes = b"", limit: int = 1000
    ) -> list[bytes]:
        cursor = txn.cursor(self._db)
        out: list[bytes] = []
        start = after + b"\xff\xff" if after else b""
        if not cursor.set_range(start):
            return out
        for key in cursor.iternext(keys=True, values=False):
            block_id = key[:-2]
            if block_id <= after or (out and out[-1] == block_id):
                continue
            out.append(block_id)
            if len(out) >= limit:
                break
        return out
