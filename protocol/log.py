"""The collection log: append-only, hash-chained, signed by the collection's owner.

A log entry on the wire and on disk is the canonical CBOR map ``{"body": BODY, "sig": SIG}``.
SIG is the owner's Ed25519 signature over ``signable("amanah/log-entry", 1, BODY)``, and the
entry's id is the SHA-256 multihash of those same signable bytes. The genesis entry (seq 0)
has no "col" and no "prev"; its id is the collection's id. Every later entry names its
collection, its position and the id of the entry before it. SPEC.md lists every field.

`CollectionState` folds entries in order and enforces the rules that need history (tier, grants,
key epochs); membership of items is the caller's to check, since a collection may hold millions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2
import nacl.signing

from . import cbor, crypto, ids, signing
from .errors import ChainError, FormatError

ENTRY_TAG = "amanah/log-entry"
ENTRY_VERSION = 1
MAX_ENTRY_SIZE = 65_000
MAX_NAME = 200
MAX_REASON = 2_000
# A wrap costs ~118 bytes in the entry: 500 keep a key epoch well inside MAX_ENTRY_SIZE.
MAX_WRAPS = 500
# Peers a collection's log may name in grants, revoked ones included (~41 bytes each in the
# state every holder keeps, which must fit one 65,000-byte value), and readers of a key (the
# owner and read grants), so a key epoch wrapped to all of them always fits one entry and a
# reader can always be revoked (SPEC 4.11.3).
MAX_PEERS = 1_000
MAX_READERS = MAX_WRAPS
# Items one "item" entry may add (SPEC 4.5): 1,024 ids take ~37 KB, well inside MAX_ENTRY_SIZE.
# A batch of small files is signed once per 1,024, not once per file: a replica verifies one
# signature where it verified a thousand (Ed25519 costs ~56 us a check here, more than the
# rest of a 4 KiB item's replication).
MAX_ITEMS = 1_024

TIERS = ("public", "trusted", "closed")
ROLES = ("hold", "read", "mirror")
TYPES = ("genesis", "item", "redact", "grant", "revoke", "key")

_NAME_CONTEXT = b"amanah/v1/collection-name"
_REASON_CONTEXT = b"amanah/v1/redact-reason"


@dataclass(frozen=True, slots=True)
class Entry:
    body: dict
    signature: bytes
    raw: bytes  # the encoded {"body", "sig"} map, as stored and sent
    id: bytes  # multihash of the signable bytes
    # The signable bytes, kept by make_entry and parse_entry so the signature check need not
    # encode the body again; b"" means "encode it when needed".
    signable: bytes = b""

    @property
    def seq(self) -> int:
        return self.body["seq"]

    @property
    def type(self) -> str:
        return self.body["type"]

    @property
    def collection(self) -> bytes:
        """The collection this entry belongs to (a genesis entry's own id)."""
        return self.id if self.type == "genesis" else self.body["col"]


def _signable(body: dict) -> bytes:
    return signing.signable(ENTRY_TAG, ENTRY_VERSION, body)


# The signable is the array [tag, version, body]: its bytes are this prefix, then the body's.
_SIGNABLE_PREFIX = b"\x83" + cbor.encode(ENTRY_TAG) + cbor.encode(ENTRY_VERSION)
# The entry is the canonical map {"sig": sig, "body": body} ("sig" sorts first: shorter key).
_RAW_PREFIX = b"\xa2" + cbor.encode("sig") + b"\x58\x40"
_RAW_BODY_KEY = cbor.encode("body")


def make_entry(key: nacl.signing.SigningKey, body: dict, validate: bool = True) -> Entry:
    """Sign `body` and return the finished entry.

    `validate=False` is for bodies the caller has just built from checked parts (the ingest hot
    path); everything read from outside goes through `parse_entry` instead.
    """
    if validate:
        _validate_body(body)
    message = _signable(body)
    sig = signing.sign(key, message)
    # Same bytes as cbor.encode({"body": body, "sig": sig}), without encoding the body twice.
    raw = _RAW_PREFIX + sig + _RAW_BODY_KEY + message[len(_SIGNABLE_PREFIX) :]
    if len(raw) > MAX_ENTRY_SIZE:
        raise FormatError(f"log entry of {len(raw)} bytes exceeds {MAX_ENTRY_SIZE}")
    return Entry(body, sig, raw, ids.sha256_id(message), message)


def parse_entry(raw: bytes) -> Entry:
    """Decode and structurally validate an entry. The signature is checked by `verify_entry`."""
    value = cbor.decode(raw, MAX_ENTRY_SIZE)
    if not isinstance(value, dict) or set(value) != {"body", "sig"}:
        raise FormatError("a log entry is a map of body and sig")
    body, sig = value["body"], value["sig"]
    if not isinstance(sig, bytes) or len(sig) != signing.SIGNATURE_LEN:
        raise FormatError("a log entry signature is 64 bytes")
    _validate_body(body)
    # `raw` is canonical (decode checked it), so it is _RAW_PREFIX, the signature, the "body"
    # key, then the body's own canonical bytes: the signable is those bytes behind its prefix.
    head = _RAW_PREFIX + sig + _RAW_BODY_KEY
    if raw.startswith(head):
        message = _SIGNABLE_PREFIX + raw[len(head) :]
    else:  # unreachable for a canonical entry; kept so a surprise is slow, never wrong
        message = _signable(body)
    return Entry(body, sig, raw, ids.sha256_id(message), message)


def stored_body(raw: bytes) -> dict:
    """The body of an entry from this node's own store, which verified it when storing it.

    For scans over a whole log: no canonical-form check, no id, no signature (each of those
    costs a re-encode or a hash per entry). Never use it on bytes from outside.
    """
    return cbor2.loads(raw)["body"]


def verify_entry(entry: Entry, owner: bytes) -> None:
    signing.verify(owner, entry.signable or _signable(entry.body), entry.signature)


# --- builders ---------------------------------------------------------------------------------


def key_epoch(
    epoch: int,
    key: bytes,
    readers: list[bytes],
    collection: bytes | None = None,
    previous_key: bytes | None = None,
    ephemerals: list[bytes] | None = None,
) -> dict:
    """A key-epoch record: `key` wrapped to every reader, chained to the previous epoch's key."""
    wraps = []
    for i, reader in enumerate(sorted(set(readers))):
        eph = ephemerals[i] if ephemerals else None
        wraps.append([reader, crypto.wrap_key(reader, key, eph)])
    record: dict[str, Any] = {"epoch": epoch, "wraps": wraps}
    if epoch > 0:
        if previous_key is None or collection is None:
            raise ValueError("a later key epoch chains to the previous key")
        record["prev"] = crypto.chain_seal(key, previous_key, collection, epoch)
    return record


def genesis(
    key: nacl.signing.SigningKey,
    name: str,
    tier: str,
    at: int,
    nonce: bytes,
    epoch_key: bytes | None = None,
    ephemeral: bytes | None = None,
) -> Entry:
    """The first entry of a new collection. Non-public names are encrypted under epoch 0."""
    owner = bytes(key.verify_key)
    body: dict[str, Any] = {
        "type": "genesis",
        "seq": 0,
        "at": at,
        "tier": tier,
        "owner": owner,
        "nonce": nonce,
    }
    check_text(name, "collection name", MAX_NAME)
    if tier == "public":
        body["name"] = name
    else:
        if epoch_key is None:
            raise ValueError("a non-public collection needs an epoch key")
        body["key"] = key_epoch(
            0, epoch_key, [owner], ephemerals=[ephemeral] if ephemeral else None
        )
        body["name_enc"] = crypto.seal_log_text(epoch_key, _NAME_CONTEXT + nonce, name)
    return make_entry(key, body)


def next_body(state: CollectionState, type_: str, at: int, **fields: Any) -> dict:
    """The body of the entry that follows the head of `state`."""
    body = {"type": type_, "seq": state.length, "at": at, "col": state.id, "prev": state.head}
    body.update(fields)
    return body


def item_fields(item_ids: list[bytes]) -> dict:
    """The fields of an "item" entry adding `item_ids` (1 to MAX_ITEMS, in the order added)."""
    if len(item_ids) == 1:
        return {"item": item_ids[0]}
    return {"items": list(item_ids)}


def named_items(body: dict) -> list[bytes]:
    """The ids an "item" entry's (validated) body adds, in order: its `item`, or its `items`."""
    one = body.get("item")
    return [one] if one is not None else body["items"]


def reason_context(collection: bytes, seq: int) -> bytes:
    return _REASON_CONTEXT + collection + seq.to_bytes(8, "big")


def open_name(genesis_entry: Entry, epoch0_key: bytes) -> str:
    body = genesis_entry.body
    return crypto.open_log_text(epoch0_key, _NAME_CONTEXT + body["nonce"], body["name_enc"])


# --- structural validation -----------------------------------------------------------------


def check_text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise FormatError(f"{what} must be 1 to {limit} characters")
    if any(ord(c) < 0x20 and c not in "\t\n" for c in value) or "\x7f" in value:
        raise FormatError(f"{what} contains control characters")
    return value


def _need(body: dict, name: str, kind: type | tuple) -> Any:
    if name not in body:
        raise FormatError(f"log entry lacks {name!r}")
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(f"log entry field {name!r} has the wrong type")
    return value


def _bytes_of(value: object, n: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != n:
        raise FormatError(f"{what} must be {n} bytes")
    return value


def _validate_key_epoch(record: object) -> None:
    if not isinstance(record, dict):
        raise FormatError("key epoch must be a map")
    allowed = {"epoch", "wraps", "prev"}
    if set(record) - allowed:
        raise FormatError("unknown field in key epoch")
    epoch = _need(record, "epoch", int)
    if epoch < 0:
        raise FormatError("key epoch is negative")
    wraps = _need(record, "wraps", list)
    if not 1 <= len(wraps) <= MAX_WRAPS:
        raise FormatError(f"key epoch needs 1 to {MAX_WRAPS} wrapped keys")
    readers = []
    for w in wraps:
        if not isinstance(w, list) or len(w) != 2:
            raise FormatError("a wrapped key is [reader, sealed key]")
        readers.append(_bytes_of(w[0], 32, "reader key"))
        _bytes_of(w[1], crypto.SEALED_KEY_LEN, "sealed key")
    if readers != sorted(set(readers)):
        raise FormatError("wrapped keys must be sorted by reader and unique")
    if epoch == 0 and "prev" in record:
        raise FormatError("epoch 0 has no previous key")
    if epoch > 0:
        _bytes_of(record.get("prev"), crypto.KEY_LEN + crypto.TAG_LEN, "chained key")


_COMMON = {"type", "seq", "at"}
_FIELDS = {
    "genesis": {"tier", "owner", "nonce", "name", "name_enc", "key"},
    "item": {"col", "prev", "item", "items"},
    "redact": {"col", "prev", "item", "reason", "reason_enc", "epoch"},
    "grant": {"col", "prev", "peer", "role", "wrap", "epoch"},
    "revoke": {"col", "prev", "peer", "key"},
    "key": {"col", "prev", "key"},
}


def _validate_body(body: object) -> None:
    if not isinstance(body, dict):
        raise FormatError("log entry body must be a map")
    type_ = _need(body, "type", str)
    if type_ not in _FIELDS:
        raise FormatError(f"unknown log entry type {type_!r}")
    extra = set(body) - _COMMON - _FIELDS[type_]
    if extra:
        raise FormatError(f"unknown field(s) in {type_} entry: {', '.join(sorted(extra))}")
    seq = _need(body, "seq", int)
    if _need(body, "at", int) < 0:
        raise FormatError("entry time is negative")
    if type_ == "genesis":
        if seq != 0:
            raise FormatError("genesis is at position 0")
        tier = _need(body, "tier", str)
        if tier not in TIERS:
            raise FormatError(f"unknown tier {tier!r}")
        _bytes_of(body.get("owner"), 32, "owner key")
        _bytes_of(body.get("nonce"), 16, "genesis nonce")
        if tier == "public":
            if "name_enc" in body or "key" in body:
                raise FormatError("a public collection has no keys")
            check_text(body.get("name"), "collection name", MAX_NAME)
        else:
            if "name" in body:
                raise FormatError("a non-public collection's name is encrypted")
            if (
                not isinstance(body.get("name_enc"), bytes)
                or len(body["name_enc"]) > 4 * MAX_NAME + 16
            ):
                raise FormatError("encrypted collection name missing or too long")
            _validate_key_epoch(body.get("key"))
            if body["key"]["epoch"] != 0:
                raise FormatError("genesis key epoch must be 0")
        return
    if seq < 1:
        raise FormatError("only genesis is at position 0")
    ids.check_raw_id(body.get("col"))
    ids.check_raw_id(body.get("prev"))
    if type_ == "item":
        if ("item" in body) == ("items" in body):
            raise FormatError("an item entry has exactly one of item or items")
        if "item" in body:
            ids.check_raw_id(body["item"])
        else:
            batch = body["items"]
            if not isinstance(batch, list) or not 2 <= len(batch) <= MAX_ITEMS:
                raise FormatError(f"items must be an array of 2 to {MAX_ITEMS:,} item ids")
            for item_id in batch:
                ids.check_raw_id(item_id)
            if len(set(batch)) != len(batch):
                raise FormatError("an item entry names the same item twice")
    elif type_ == "redact":
        ids.check_raw_id(body.get("item"))
        if ("reason" in body) == ("reason_enc" in body):
            raise FormatError("a redaction has exactly one of reason or reason_enc")
        if "reason" in body:
            check_text(body["reason"], "redaction reason", MAX_REASON)
            if "epoch" in body:
                raise FormatError("a clear reason has no key epoch")
        else:
            if (
                not isinstance(body["reason_enc"], bytes)
                or len(body["reason_enc"]) > 4 * MAX_REASON + 16
            ):
                raise FormatError("encrypted reason too long")
            _need(body, "epoch", int)
    elif type_ == "grant":
        _bytes_of(body.get("peer"), 32, "peer key")
        role = _need(body, "role", str)
        if role not in ROLES:
            raise FormatError(f"unknown role {role!r}")
        if ("wrap" in body) != ("epoch" in body):
            raise FormatError("a wrapped key comes with its epoch")
        if "wrap" in body:
            if role != "read":
                raise FormatError("only a read grant carries a key")
            _bytes_of(body["wrap"], crypto.SEALED_KEY_LEN, "wrapped key")
            _need(body, "epoch", int)
    elif type_ == "revoke":
        _bytes_of(body.get("peer"), 32, "peer key")
        if "key" in body:
            _validate_key_epoch(body["key"])
    elif type_ == "key":
        _validate_key_epoch(body.get("key"))


# --- history rules ----------------------------------------------------------------------------


@dataclass
class CollectionState:
    """What the log says so far: enough to validate the next entry without re-reading it all."""

    id: bytes
    tier: str
    owner: bytes
    length: int
    head: bytes
    epoch: int | None  # current key epoch (None for public)
    grants: dict[bytes, str] = field(default_factory=dict)  # peer key -> role
    # Peers whose grant was revoked: they may still fetch the log, to learn of the revocation
    # (a mirror must stop publishing), but no longer its records or blocks.
    former: set[bytes] = field(default_factory=set)

    @classmethod
    def from_genesis(cls, entry: Entry) -> CollectionState:
        if entry.type != "genesis":
            raise ChainError("a collection log starts with genesis")
        verify_entry(entry, entry.body["owner"])
        b = entry.body
        if b["tier"] != "public" and [w[0] for w in b["key"]["wraps"]] != [b["owner"]]:
            raise ChainError("a new collection's key is wrapped to its owner alone")
        return cls(
            entry.id, b["tier"], b["owner"], 1, entry.id, 0 if b["tier"] != "public" else None
        )

    def readers(self) -> list[bytes]:
        """Who holds the current key: the owner, and every peer granted read."""
        return sorted({self.owner} | {p for p, r in self.grants.items() if r == "read"})

    def apply(self, entry: Entry, signature_checked: bool = False) -> None:
        """Check that `entry` may follow, then advance. Raises ChainError or SignatureError.

        `signature_checked` skips the signature check, for an entry this process has just signed
        with the owner's key (re-verifying our own signature costs a third of a small item's
        ingest) or has already checked against `self.owner` with `verify_entry` (a replica
        checks a batch of received entries on several threads first).
        """
        b = entry.body
        if entry.type == "genesis":
            raise ChainError("a second genesis entry")
        if b["col"] != self.id:
            raise ChainError("entry belongs to another collection")
        if b["seq"] != self.length:
            raise ChainError(f"entry at position {b['seq']} where {self.length} was expected")
        if b["prev"] != self.head:
            raise ChainError("entry does not chain to the previous entry")
        if not signature_checked:
            verify_entry(entry, self.owner)
        public = self.tier == "public"
        if entry.type == "redact":
            if public != ("reason" in b):
                raise ChainError(
                    "redaction reason must be encrypted exactly when the tier is not public"
                )
            if not public and not 0 <= b["epoch"] <= self.epoch:
                raise ChainError("an encrypted redaction reason names a key epoch not in the log")
        elif entry.type == "grant":
            self._grant(b, public)
        elif entry.type == "revoke":
            self._revoke(b, public)
        elif entry.type == "key":
            if public:
                raise ChainError("a public collection has no keys")
            self._next_epoch(b["key"], self.readers())
        self.length += 1
        self.head = entry.id

    def _grant(self, b: dict, public: bool) -> None:
        peer, role = b["peer"], b["role"]
        if peer == self.owner:
            raise ChainError("the owner needs no grant")
        if role == "mirror" and not public:
            raise ChainError("only a public collection may be granted to a mirror")
        if role == "read" and self.tier == "closed":
            raise ChainError("a closed collection has no readers but its owner")
        if role == "read" and not public:
            if "wrap" not in b or b["epoch"] != self.epoch:
                raise ChainError("a read grant carries the current key")
        elif "wrap" in b:
            raise ChainError("this grant carries no key")
        if self.grants.get(peer) == "read" and role != "read" and not public:
            raise ChainError("a reader loses the key only by a revoke that rotates it")
        named = peer in self.grants or peer in self.former
        if not named and len(self.grants) + len(self.former) >= MAX_PEERS:
            raise ChainError(f"a collection's log names at most {MAX_PEERS:,} peers in grants")
        if role == "read" and not public and self.grants.get(peer) != "read":
            if len(self.readers()) >= MAX_READERS:
                raise ChainError(f"a collection has at most {MAX_READERS} readers (owner included)")
        self.grants[peer] = role
        self.former.discard(peer)

    def _revoke(self, b: dict, public: bool) -> None:
        peer = b["peer"]
        if peer not in self.grants:
            raise ChainError("revoke of a peer that holds no grant")
        was_reader = self.grants[peer] == "read"
        # check everything before changing anything: a refused entry leaves the state as it was
        if "key" in b:
            if public:
                raise ChainError("a public collection has no keys")
            self._next_epoch(b["key"], [r for r in self.readers() if r != peer])
        elif was_reader and not public:
            raise ChainError("revoking a reader must rotate the key")
        del self.grants[peer]
        self.former.add(peer)

    def _next_epoch(self, record: dict, readers: list[bytes]) -> None:
        if record["epoch"] != (self.epoch or 0) + 1:
            raise ChainError("key epochs advance one at a time")
        if [w[0] for w in record["wraps"]] != readers:
            raise ChainError("a new key must be wrapped to exactly the current readers")
        self.epoch = record["epoch"]

    def to_cbor(self) -> bytes:
        grants = sorted([p, r] for p, r in self.grants.items())
        return cbor.encode(
            [
                self.id,
                self.tier,
                self.owner,
                self.length,
                self.head,
                self.epoch,
                grants,
                sorted(self.former),
            ]
        )

    @classmethod
    def from_cbor(cls, raw: bytes) -> CollectionState:
        cid, tier, owner, length, head, epoch, grants, former = cbor.decode(raw, MAX_ENTRY_SIZE)
        return cls(cid, tier, owner, length, head, epoch, {p: r for p, r in grants}, set(former))
