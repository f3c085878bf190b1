"""Reading items back: find, list, read metadata, and `get` with every block verified.

`get` writes to a hidden temporary file beside the destination, checks every block's hash and
authentication tag and, at the end, the original's size and SHA-256; only then is the file
linked under its final name. A failure removes the temporary file: nothing half-verified is
ever left looking complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb
from amanah.protocol import crypto, ids
from amanah.protocol import item as item_mod
from amanah.protocol.errors import FormatError, IntegrityError
from amanah.protocol.item import ItemRecord
from amanah.protocol.log import CollectionState

from .errors import DamagedError, InvalidInput, NotFound, Unreadable
from .home import Node

READ_BATCH = 16  # blocks read per LMDB read transaction (and between Store.release_map calls)


@dataclass(frozen=True)
class Located:
    id: bytes
    collection: bytes
    seq: int  # position of its "item" entry

    @property
    def id_text(self) -> str:
        return ids.to_text("itm", self.id)


def locate(node: Node, ref: str) -> Located:
    try:
        raw = ids.from_text(ref.strip(), "itm")
    except FormatError as exc:
        raise InvalidInput(str(exc)) from None
    with node.store.read() as txn:
        where = txn.get(raw, db=node.store.db["items"])
    if where is None:
        raise NotFound(f"no item {ref} on this node")
    return Located(raw, bytes(where[:-8]), int.from_bytes(where[-8:], "big"))


def redaction(node: Node, txn: lmdb.Transaction, collection: bytes, item_id: bytes) -> int | None:
    """The position of the entry of `collection`'s log that redacted the item, if one did.
    Per collection: a redaction in one log never hides an item of another (SPEC 11.6.3)."""
    seq = txn.get(collection + item_id, db=node.store.db["redacted"])
    return int.from_bytes(seq, "big") if seq is not None else None


def load_record(node: Node, txn: lmdb.Transaction, item_id: bytes) -> ItemRecord:
    raw = txn.get(item_id, db=node.store.db["records"])
    if raw is None:
        raise DamagedError(f"the record of item {ids.to_text('itm', item_id)} is missing")
    raw = bytes(raw)
    if ids.sha256_id(raw) != item_id:
        raise DamagedError(f"the record of item {ids.to_text('itm', item_id)} is damaged")
    try:
        return item_mod.parse_record(raw)
    except FormatError as exc:
        raise DamagedError(
            f"the record of item {ids.to_text('itm', item_id)} is invalid: {exc}"
        ) from None


def check_fits(record: ItemRecord, state: CollectionState) -> None:
    """A record must belong to the collection that lists it and match its tier and keys."""
    if record.collection != state.id:
        raise DamagedError(f"item {ids.to_text('itm', record.id)} names another collection")
    if record.encrypted != (state.tier != "public"):
        form = "encrypted" if record.encrypted else "in the clear"
        raise DamagedError(
            f"item {ids.to_text('itm', record.id)} is {form} in a {state.tier} collection"
        )
    if record.encrypted and record.epoch > state.epoch:
        raise DamagedError(
            f"item {ids.to_text('itm', record.id)} names a key epoch not yet in the log"
        )


def known_blocks(node: Node, txn: lmdb.Transaction, record: ItemRecord) -> list[bytes]:
    """Every block id of the item this node can know of now (manifests it lacks are skipped),
    the manifest blocks included: what a redaction must release."""
    inline = record.inline_blocks()
    if inline is not None:
        return list(inline)
    out = list(record.manifest_ids())
    for m in record.manifest_ids():
        data = node.blobs.get(txn, m)
        if data is None or ids.sha256_id(data) != m:
            continue
        try:
            out.extend(item_mod.decode_manifest(bytes(data), item_mod.manifest_len(record, m)))
        except IntegrityError:
            continue
    return out


def cipher_for(
    node: Node, txn: lmdb.Transaction, state: CollectionState, record: ItemRecord
) -> crypto.ItemCipher | None:
    """The item's cipher, None for public items; Unreadable if this node has no key."""
    if not record.encrypted:
        return None
    key = node.archive.epoch_key(txn, state, record.epoch, node.identity)
    return crypto.ItemCipher(key, record.collection, record.salt)


def metadata(cipher: crypto.ItemCipher | None, record: ItemRecord) -> dict:
    if cipher is None:
        return record.fields["meta"]
    try:
        plain = cipher.open(crypto.PURPOSE_METADATA, 0, record.fields["meta_enc"])
    except IntegrityError:
        raise DamagedError(
            f"the metadata of item {ids.to_text('itm', record.id)} is damaged"
        ) from None
    return item_mod.decode_metadata(plain)


def verified_block(node: Node, txn: lmdb.Transaction, block_id: bytes) -> bytes:
    data = node.blobs.get(txn, block_id)
    if data is None:
        raise DamagedError(f"block {ids.to_text('blk', block_id)} is missing")
    if ids.sha256_id(data) != block_id:
        raise DamagedError(f"block {ids.to_text('blk', block_id)} is damaged (hash mismatch)")
    return data


def block_ids(node: Node, txn: lmdb.Transaction, record: ItemRecord) -> list[bytes]:
    """The item's content block ids, reading its manifest blocks if it has them."""
    inline = record.inline_blocks()
    if inline is not None:
        return inline
    out: list[bytes] = []
    total = record.block_count
    for m in record.manifest_ids():
        expected = min(item_mod.MANIFEST_FANOUT, total - len(out))
        try:
            out.extend(item_mod.decode_manifest(verified_block(node, txn, m), expected))
        except IntegrityError as exc:
            raise DamagedError(
                f"manifest block {ids.to_text('blk', m)} is invalid: {exc}"
            ) from None
    return out


# --- ls ---------------------------------------------------------------------------------------


def list_items(
    node: Node,
    state: CollectionState,
    include_redacted: bool = False,
    newest_first: bool = False,
    skip: int = 0,
) -> Iterator[dict]:
    """The collection's items in log order (or newest first), with metadata where this node can
    read it; the first `skip` of them passed over without reading their records (paging)."""
    from amanah.protocol import log

    with node.store.read() as txn:
        entries = node.archive.raw_entries(txn, state.id, 1, reverse=newest_first)
        for seq, raw in entries:
            body = log.parse_entry(bytes(raw)).body
            if body["type"] != "item":
                continue
            named = log.named_items(body)
            for item_id in reversed(named) if newest_first else named:
                if not include_redacted and redaction(node, txn, state.id, item_id) is not None:
                    continue
                if skip:
                    skip -= 1
                    continue
                yield item_row(node, txn, state, item_id, seq)


def item_row(
    node: Node, txn: lmdb.Transaction, state: CollectionState, item_id: bytes, seq: int
) -> dict:
    """What `ls --json` shows of one item (its "item" entry at `seq` in `state`'s log)."""
    row: dict = {"id": ids.to_text("itm", item_id), "position": seq}
    if redaction(node, txn, state.id, item_id) is not None:
        row.update(size=None, sha256=None, metadata=None, readable=False, redacted=True)
        return row
    try:
        record = load_record(node, txn, item_id)
        check_fits(record, state)
    except DamagedError as exc:
        # One bad record must not hide the rest: list it, flagged (verify says more).
        row.update(size=None, sha256=None, metadata=None, readable=False, damaged=str(exc))
        return row
    try:
        meta = metadata(cipher_for(node, txn, state, record), record)
        row.update(size=record.size, sha256=meta["sha256"], metadata=meta, readable=True)
    except Unreadable:
        row.update(size=record.size, sha256=None, metadata=None, readable=False)
    except DamagedError as exc:
        row.update(size=record.size, sha256=None, metadata=None, readable=False, damaged=str(exc))
    return row


# --- get --------------------------------------------------------------------------------------


def safe_filename(name: str) -> str:
    """The last path component of a recorded file name, made safe to create."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c >= " " and c != "\x7f").strip()
    if base in ("", ".", ".."):
        return "item"
    return base[:255]


def get(
    node: Node,
    ref: str,
    output: str | None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[Path | None, dict]:
    """Write the verified original to `output` (a path, a folder, or "-" for stdout)."""
    located = locate(node, ref)
    progress = progress or (lambda n: None)
    with node.store.read() as txn:
        seq = redaction(node, txn, located.collection, located.id)
        if seq is not None:
            from .redact import reason_of

            try:
                reason = reason_of(node, located.collection, seq)
            except Unreadable:
                reason = "(the reason is encrypted)"
            raise NotFound(f"item {located.id_text} was redacted: {reason}")
        state = node.archive.require(txn, located.collection)
        record = load_record(node, txn, located.id)
        check_fits(record, state)
        cipher = cipher_for(node, txn, state, record)
        meta = metadata(cipher, record)
        blocks = block_ids(node, txn, record)
    if output == "-":
        with tempfile.TemporaryFile() as spool:
            _write_verified(node, record, cipher, meta, blocks, spool, progress)
            spool.seek(0)
            shutil.copyfileobj(spool, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        return None, meta
    dest = Path(output) if output else Path(safe_filename(meta["filename"]))
    if dest.is_dir():
        dest = dest / safe_filename(meta["filename"])
    if dest.exists() and not force:
        raise InvalidInput(f"{dest} exists; choose another path or use --force")
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{dest.name[:40]}.", suffix=".partial", dir=dest.parent or "."
        )
    except OSError as exc:
        raise InvalidInput(f"cannot write in {dest.parent}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_verified(node, record, cipher, meta, blocks, f, progress)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        if force:
            os.replace(tmp, dest)
        else:
            os.link(tmp, dest)  # never replaces a file that appeared meanwhile
            tmp.unlink()
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"{dest} exists; choose another path or use --force") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest, meta


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_verified(
    node: Node,
    record: ItemRecord,
    cipher: crypto.ItemCipher | None,
    meta: dict,
    blocks: list[bytes],
    out: object,
    progress: Callable[[int], None],
) -> None:
    for data in read_verified(node, record, cipher, meta, blocks):
        out.write(data)  # type: ignore[attr-defined]
        progress(len(data))


def read_verified(
    node: Node,
    record: ItemRecord,
    cipher: crypto.ItemCipher | None,
    meta: dict | None,
    blocks: list[bytes],
    first: int = 0,
    last: int | None = None,
    batch: int = READ_BATCH,
) -> Iterator[bytes]:
    """The plaintext of blocks `first`..`last` (inclusive; default: all), each verified (hash,
    authentication tag, size) before it is yielded.

    When every block is read and `meta` is given, the original's size and SHA-256 are checked
    before the last block is yielded: a caller that streams what it gets (the HTTP API) never
    hands out a complete file that does not match. No read transaction is held while the caller
    has a block: each batch is read in its own transaction (a slow reader pins no pages).
    """
    if last is None:
        last = len(blocks) - 1
    # (size, SHA-256) the whole original must have, when the whole of it is read
    want = (meta["size"], meta["sha256"]) if meta is not None and first == 0 else None
    if want is not None and last != len(blocks) - 1:
        want = None
    original = hashlib.sha256()
    size = 0
    for start in range(first, last + 1, batch):
        if start != first:
            node.store.trim_map()  # constant memory whatever the size (Store.trim_map)
        out: list[bytes] = []
        with node.store.read() as txn:
            for index in range(start, min(start + batch, last + 1)):
                data = verified_block(node, txn, blocks[index])
                if cipher is not None:
                    try:
                        data = cipher.open(crypto.PURPOSE_BLOCK, index, data)
                    except IntegrityError:
                        raise DamagedError(
                            f"block {index} of item {ids.to_text('itm', record.id)} does not "
                            "decrypt: damaged or misplaced"
                        ) from None
                expected = min(item_mod.CHUNK_SIZE, record.size - index * item_mod.CHUNK_SIZE)
                if len(data) != expected:
                    raise DamagedError(
                        f"block {index} of item {ids.to_text('itm', record.id)} has the wrong size"
                    )
                out.append(data)
        for index, data in enumerate(out, start):
            if want is not None:
                original.update(data)
                size += len(data)
                if index == last and (size, original.hexdigest()) != want:
                    raise _mismatch(record)
            yield data
    if want is not None and not blocks and (0, original.hexdigest()) != want:
        raise _mismatch(record)


def _mismatch(record: ItemRecord) -> DamagedError:
    return DamagedError(
        f"item {ids.to_text('itm', record.id)} does not match its recorded SHA-256; not written"
    )
