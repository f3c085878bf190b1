"""The collection log: entry format, signatures, and the rules that need history."""

from __future__ import annotations

import hashlib
import os

import nacl.signing
import pytest
from amanah.protocol import cbor, crypto, ids, log, signing
from amanah.protocol.errors import ChainError, FormatError, IntegrityError, SignatureError
from amanah.protocol.log import CollectionState
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .strategies import raw_ids, signing_keys


def _key(label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(label.encode()).digest())


OWNER = _key("owner")
ID, ID2 = ids.sha256_id(b"one"), ids.sha256_id(b"two")
A, B, C, STRANGER = _key("a"), _key("b"), _key("c"), _key("stranger")


def pk(key: nacl.signing.SigningKey) -> bytes:
    return bytes(key.verify_key)


class Log:
    """A collection log under construction, with every epoch key known."""

    def __init__(
        self, tier: str, owner: nacl.signing.SigningKey = OWNER, name: str = "Test"
    ) -> None:
        self.owner = owner
        self.keys: dict[int, bytes] = {}
        epoch_key = os.urandom(32) if tier != "public" else None
        self.genesis = log.genesis(owner, name, tier, 1_000, os.urandom(16), epoch_key)
        if epoch_key:
            self.keys[0] = epoch_key
        self.state = CollectionState.from_genesis(self.genesis)
        self.entries = [self.genesis]

    @property
    def at(self) -> int:
        return 1_000 + self.state.length

    def body(self, type_: str, **fields: object) -> dict:
        return log.next_body(self.state, type_, self.at, **fields)

    def entry(
        self, type_: str, signer: nacl.signing.SigningKey | None = None, **fields
    ) -> log.Entry:
        return log.make_entry(signer or self.owner, self.body(type_, **fields))

    def add(self, type_: str, **fields: object) -> log.Entry:
        entry = self.entry(type_, **fields)
        self.state.apply(entry)
        self.entries.append(entry)
        return entry

    def refuse(self, entry: log.Entry, error: type = ChainError, match: str | None = None) -> None:
        """`entry` must be refused, leaving the state exactly as it was."""
        before = self.state.to_cbor()
        with pytest.raises(error, match=match):
            self.state.apply(entry)
        assert self.state.to_cbor() == before

    def item(self) -> log.Entry:
        return self.add("item", item=ids.sha256_id(os.urandom(8)))

    def grant_fields(self, peer: nacl.signing.SigningKey, role: str, wrap: bool = True) -> dict:
        fields: dict = {"peer": pk(peer), "role": role}
        if wrap and role == "read" and self.state.tier != "public":
            key = self.keys[self.state.epoch]
            fields.update(epoch=self.state.epoch, wrap=crypto.wrap_key(pk(peer), key))
        return fields

    def grant(self, peer: nacl.signing.SigningKey, role: str) -> log.Entry:
        return self.add("grant", **self.grant_fields(peer, role))

    def epoch_record(self, readers: list[bytes], epoch: int | None = None) -> tuple[dict, bytes]:
        epoch = self.state.epoch + 1 if epoch is None else epoch
        key = os.urandom(32)
        previous = self.keys[self.state.epoch]
        return log.key_epoch(epoch, key, readers, self.state.id, previous), key

    def revoke(self, peer: nacl.signing.SigningKey, rotate: bool) -> log.Entry:
        if not rotate:
            return self.add("revoke", peer=pk(peer))
        readers = [r for r in self.state.readers() if r != pk(peer)]
        record, key = self.epoch_record(readers)
        entry = self.add("revoke", peer=pk(peer), key=record)
        self.keys[record["epoch"]] = key
        return entry

    def rotate(self) -> log.Entry:
        record, key = self.epoch_record(self.state.readers())
        entry = self.add("key", key=record)
        self.keys[record["epoch"]] = key
        return entry


def replay(entries: list[log.Entry]) -> CollectionState:
    """A fresh state from raw bytes only, as a peer receiving the log would build it."""
    first, *rest = (log.parse_entry(e.raw) for e in entries)
    state = CollectionState.from_genesis(first)
    for entry in rest:
        state.apply(entry)
    return state


# --- genesis ----------------------------------------------------------------------------------


def test_public_genesis():
    g = log.genesis(OWNER, "Open files", "public", 5, bytes(16))
    assert g.type == "genesis" and g.seq == 0
    assert g.collection == g.id
    assert g.body["name"] == "Open files"
    assert "key" not in g.body and "name_enc" not in g.body
    log.verify_entry(g, pk(OWNER))
    state = CollectionState.from_genesis(g)
    assert (state.id, state.tier, state.owner, state.length, state.head, state.epoch) == (
        g.id,
        "public",
        pk(OWNER),
        1,
        g.id,
        None,
    )
    assert state.readers() == [pk(OWNER)]


@pytest.mark.parametrize("tier", ["trusted", "closed"])
def test_non_public_genesis_hides_the_name_and_wraps_the_key_to_the_owner(tier):
    key = os.urandom(32)
    name = "Witness statements: شهادات"
    g = log.genesis(OWNER, name, tier, 5, os.urandom(16), key)
    assert "name" not in g.body
    assert name.encode() not in g.raw and b"Witness" not in g.raw
    assert log.open_name(g, key) == name
    with pytest.raises(IntegrityError):
        log.open_name(g, os.urandom(32))
    (reader, sealed), *others = g.body["key"]["wraps"]
    assert not others and reader == pk(OWNER)
    assert crypto.unwrap_key(OWNER, sealed) == key
    with pytest.raises(IntegrityError):
        crypto.unwrap_key(A, sealed)
    assert CollectionState.from_genesis(g).epoch == 0


def test_collection_ids_differ_by_nonce_name_and_owner():
    base = log.genesis(OWNER, "X", "public", 5, bytes(16)).id
    assert log.genesis(OWNER, "X", "public", 5, bytes(16)).id == base  # deterministic
    assert log.genesis(OWNER, "X", "public", 5, b"\1" + bytes(15)).id != base
    assert log.genesis(OWNER, "Y", "public", 5, bytes(16)).id != base
    assert log.genesis(A, "X", "public", 5, bytes(16)).id != base


def test_non_public_genesis_needs_an_epoch_key():
    with pytest.raises(ValueError):
        log.genesis(OWNER, "X", "closed", 5, bytes(16))


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "a\x00b", "bell\x07", "del\x7f", "cr\r"])
def test_genesis_refuses_bad_names(name):
    with pytest.raises(FormatError):
        log.genesis(OWNER, name, "public", 5, bytes(16))


def test_genesis_name_limits_and_allowed_whitespace():
    log.genesis(OWNER, "x" * 200, "public", 5, bytes(16))
    log.genesis(OWNER, "line one\n\tline two", "public", 5, bytes(16))


def test_genesis_with_a_bad_signature_is_refused():
    g = log.genesis(OWNER, "X", "public", 5, bytes(16))
    forged = log.Entry(g.body, bytes(64), g.raw, g.id)
    with pytest.raises(SignatureError):
        CollectionState.from_genesis(forged)
    # a genesis naming OWNER but signed by A
    with pytest.raises(SignatureError):
        CollectionState.from_genesis(log.make_entry(A, g.body))


def test_a_log_starts_with_genesis():
    chain = Log("public")
    with pytest.raises(ChainError):
        CollectionState.from_genesis(chain.item())


@pytest.mark.parametrize("tier", ["trusted", "closed"])
def test_genesis_key_wrapped_to_anyone_but_the_owner_alone_is_refused(tier):
    key = os.urandom(32)
    good = log.genesis(OWNER, "X", tier, 5, bytes(16), key).body
    for readers in ([pk(OWNER), pk(A)], [pk(A)]):
        body = {**good, "key": log.key_epoch(0, key, readers)}
        entry = log.make_entry(OWNER, body)  # well formed...
        with pytest.raises(ChainError):  # ...but a new collection's only reader is its owner
            CollectionState.from_genesis(entry)


# --- structural validation ---------------------------------------------------------------------


def _genesis_body(tier: str = "public") -> dict:
    key = os.urandom(32) if tier != "public" else None
    return dict(log.genesis(OWNER, "X", tier, 5, bytes(16), key).body)


def _trusted_bodies() -> dict[str, dict]:
    """One valid body of every non-genesis type, at some position of a trusted collection."""
    chain = Log("trusted")
    chain.grant(A, "read")
    record, _ = chain.epoch_record([pk(OWNER)])
    item = ids.sha256_id(b"item")
    batch = [ids.sha256_id(b"item %d" % i) for i in range(log.MAX_ITEMS)]
    return {
        "item": chain.body("item", item=item),
        "items": chain.body("item", items=batch[:2]),
        "items_most": chain.body("item", items=batch),
        "redact": chain.body("redact", item=item, epoch=0, reason_enc=b"\0" * 40),
        "redact_clear": chain.body("redact", item=item, reason="duplicate"),
        "grant": chain.body("grant", peer=pk(B), role="hold"),
        "grant_read": chain.body(
            "grant", peer=pk(B), role="read", epoch=0, wrap=bytes(crypto.SEALED_KEY_LEN)
        ),
        "revoke": chain.body("revoke", peer=pk(A), key=record),
        "key": chain.body("key", key=record),
    }


def test_every_valid_body_is_accepted():
    for body in [*_trusted_bodies().values(), _genesis_body(), _genesis_body("closed")]:
        entry = log.make_entry(OWNER, body)
        assert log.parse_entry(entry.raw).body == body


def test_an_item_entry_names_one_item_or_a_batch_in_order():
    bodies = _trusted_bodies()
    assert log.named_items(bodies["item"]) == [ids.sha256_id(b"item")]
    batch = [ids.sha256_id(b"item %d" % i) for i in range(log.MAX_ITEMS)]
    assert log.named_items(bodies["items_most"]) == batch
    assert log.item_fields(batch[:1]) == {"item": batch[0]}  # one is never an items of one
    assert log.item_fields(batch[:3]) == {"items": batch[:3]}
    most = log.make_entry(OWNER, bodies["items_most"])
    assert len(most.raw) < log.MAX_ENTRY_SIZE  # the largest batch fits an entry


def _variants() -> list[tuple[str, dict]]:
    bodies = _trusted_bodies()
    g, gc = _genesis_body(), _genesis_body("closed")

    def without(body: dict, *names: str) -> dict:
        return {k: v for k, v in body.items() if k not in names}

    def key_with(**changes: object) -> dict:
        return {**bodies["key"], "key": {**bodies["key"]["key"], **changes}}

    wraps = bodies["key"]["key"]["wraps"]
    return [
        ("body not a map", ["type", "item"]),
        ("unknown type", {**bodies["item"], "type": "note"}),
        ("type not text", {**bodies["item"], "type": 1}),
        ("unknown field", {**bodies["item"], "note": "x"}),
        ("field of another type", {**bodies["item"], "peer": pk(A)}),
        ("genesis unknown field", {**g, "colour": "red"}),
        ("no seq", without(bodies["item"], "seq")),
        ("seq is a bool", {**bodies["item"], "seq": True}),
        ("seq is text", {**bodies["item"], "seq": "3"}),
        ("no time", without(bodies["item"], "at")),
        ("negative time", {**bodies["item"], "at": -1}),
        ("time is a bool", {**bodies["item"], "at": False}),
        ("item at position 0", {**bodies["item"], "seq": 0}),
        ("genesis at position 1", {**g, "seq": 1}),
        ("no col", without(bodies["item"], "col")),
        ("col not an id", {**bodies["item"], "col": bytes(34)}),
        ("prev too short", {**bodies["item"], "prev": bodies["item"]["prev"][:-1]}),
        ("no prev", without(bodies["item"], "prev")),
        ("item not an id", {**bodies["item"], "item": b"\x13\x20" + bytes(32)}),
        ("no item", without(bodies["item"], "item")),
        ("both item and items", {**bodies["items"], "item": bodies["item"]["item"]}),
        ("items of one", {**bodies["items"], "items": bodies["items"]["items"][:1]}),
        ("items empty", {**bodies["items"], "items": []}),
        ("items not an array", {**bodies["items"], "items": bodies["item"]["item"]}),
        ("items too many", {**bodies["items"], "items": [*bodies["items_most"]["items"], ID]}),
        ("items repeat an id", {**bodies["items"], "items": [ID, ID]}),
        ("items hold a non-id", {**bodies["items"], "items": [ID, b"\x13\x20" + bytes(32)]}),
        ("items on a redaction", {**bodies["redact_clear"], "items": [ID, ID2]}),
        ("unknown tier", {**g, "tier": "secret"}),
        ("owner 31 bytes", {**g, "owner": bytes(31)}),
        ("nonce 15 bytes", {**g, "nonce": bytes(15)}),
        ("public with a key", {**g, "key": gc["key"]}),
        ("public with name_enc", {**g, "name_enc": b"x"}),
        ("public without name", without(g, "name")),
        ("public blank name", {**g, "name": " "}),
        ("closed with clear name", {**gc, "name": "X"}),
        ("closed without name_enc", without(gc, "name_enc")),
        ("closed name_enc too long", {**gc, "name_enc": bytes(4 * log.MAX_NAME + 17)}),
        ("closed without key", without(gc, "key")),
        ("genesis key at epoch 1", {**gc, "key": {**gc["key"], "epoch": 1, "prev": bytes(48)}}),
        ("redact with both reasons", {**bodies["redact"], "reason": "x"}),
        ("redact without reason", without(bodies["redact"], "reason_enc")),
        ("clear reason with epoch", {**bodies["redact_clear"], "epoch": 0}),
        ("clear reason too long", {**bodies["redact_clear"], "reason": "x" * 2001}),
        ("clear reason blank", {**bodies["redact_clear"], "reason": "\t"}),
        ("encrypted reason too long", {**bodies["redact"], "reason_enc": bytes(8017)}),
        ("encrypted reason without epoch", without(bodies["redact"], "epoch")),
        ("grant unknown role", {**bodies["grant"], "role": "admin"}),
        ("grant peer 33 bytes", {**bodies["grant"], "peer": bytes(33)}),
        ("grant without peer", without(bodies["grant"], "peer")),
        ("wrap without epoch", without(bodies["grant_read"], "epoch")),
        ("epoch without wrap", without(bodies["grant_read"], "wrap")),
        ("wrap on a hold grant", {**bodies["grant_read"], "role": "hold"}),
        ("wrap on a mirror grant", {**bodies["grant_read"], "role": "mirror"}),
        ("wrap too short", {**bodies["grant_read"], "wrap": bytes(79)}),
        ("revoke without peer", without(bodies["revoke"], "peer")),
        ("key entry without key", without(bodies["key"], "key")),
        ("key epoch not a map", {**bodies["key"], "key": [1]}),
        ("key epoch unknown field", key_with(note="x")),
        ("key epoch negative", key_with(epoch=-1)),
        ("key epoch without prev", {**bodies["key"], "key": without(bodies["key"]["key"], "prev")}),
        ("key epoch 0 with prev", key_with(epoch=0)),
        ("chained key wrong size", key_with(prev=bytes(47))),
        ("no wraps", key_with(wraps=[])),
        (
            "too many wraps",
            key_with(wraps=[[i.to_bytes(32, "big"), bytes(80)] for i in range(1001)]),
        ),
        ("wrap not a pair", key_with(wraps=[[wraps[0][0]]])),
        ("wrap reader 31 bytes", key_with(wraps=[[bytes(31), wraps[0][1]]])),
        ("sealed key 79 bytes", key_with(wraps=[[wraps[0][0], bytes(79)]])),
        ("wraps unsorted", key_with(wraps=[[b"\2" * 32, bytes(80)], [b"\1" * 32, bytes(80)]])),
        ("wraps duplicated", key_with(wraps=[[b"\1" * 32, bytes(80)], [b"\1" * 32, bytes(80)]])),
    ]


@pytest.mark.parametrize(("why", "body"), _variants(), ids=[v[0] for v in _variants()])
def test_invalid_bodies_are_refused_by_make_and_parse(why, body):
    with pytest.raises(FormatError):
        log.make_entry(OWNER, body)
    # and by parse_entry, for the same body signed correctly by someone skipping the checks
    message = signing.signable(log.ENTRY_TAG, log.ENTRY_VERSION, body)
    raw = cbor.encode({"body": body, "sig": signing.sign(OWNER, message)})
    with pytest.raises(FormatError):
        log.parse_entry(raw)


def _with_wraps(n: int) -> dict:
    body = _trusted_bodies()["key"]
    wraps = [[i.to_bytes(32, "big"), bytes(crypto.SEALED_KEY_LEN)] for i in range(1, n + 1)]
    return {**body, "key": {**body["key"], "wraps": wraps}}


def test_wrap_count_and_entry_size_limits():
    body = _with_wraps(500)
    entry = log.make_entry(OWNER, body)
    assert log.parse_entry(entry.raw).body == body
    with pytest.raises(FormatError, match=f"1 to {log.MAX_WRAPS}"):
        log.make_entry(OWNER, _with_wraps(log.MAX_WRAPS + 1))
    # MAX_WRAPS is chosen so a full key epoch still fits in one entry
    assert len(log.make_entry(OWNER, _with_wraps(log.MAX_WRAPS)).raw) <= log.MAX_ENTRY_SIZE


def test_parse_entry_refuses_bad_envelopes():
    entry = Log("public").item()
    body, sig = entry.body, entry.signature
    for value in (
        [body, sig],
        {"body": body},
        {"sig": sig},
        {"body": body, "sig": sig, "v": 1},
        {"body": body, "sig": sig[:-1]},
        {"body": body, "sig": sig + b"\0"},
        {"body": body, "sig": sig.hex()},
        {"body": cbor.encode(body), "sig": sig},
    ):
        with pytest.raises(FormatError):
            log.parse_entry(cbor.encode(value))
    # the same entry, not in canonical form (body before sig)
    loose = b"\xa2" + cbor.encode("body") + cbor.encode(body) + cbor.encode("sig")
    loose += cbor.encode(sig)
    assert sorted(cbor.decode(entry.raw, 1 << 20)) == ["body", "sig"]
    with pytest.raises(FormatError, match="canonical"):
        log.parse_entry(loose)


def test_oversize_entries_are_refused():
    body = _with_wraps(500)
    raw = log.make_entry(OWNER, body).raw
    assert len(raw) < log.MAX_ENTRY_SIZE
    # the same structure, grown past the cap, is refused for its size before it is decoded
    over = cbor.encode({"body": _with_wraps(600), "sig": bytes(64)})
    assert len(over) > log.MAX_ENTRY_SIZE
    with pytest.raises(FormatError, match="exceeds"):
        log.parse_entry(over)
    with pytest.raises(FormatError, match="wrapped keys"):  # the count cap comes first now
        log.make_entry(OWNER, _with_wraps(600))


def test_signable_layout():
    # [tag, version, body]: array of 3, 16-character text, unsigned 1, then the body
    head = "83" + "70" + b"amanah/log-entry".hex() + "01"
    assert signing.signable("amanah/log-entry", 1, {}).hex() == head + "a0"
    assert signing.signable("amanah/log-entry", 1, {"a": 1}).hex() == head + "a1616101"
    assert signing.signable("amanah/log-entry", 2, {}) != signing.signable(
        "amanah/log-entry", 1, {}
    )


def test_entry_raw_is_the_canonical_map_and_id_is_the_signable_hash():
    chain = Log("trusted")
    for entry in [chain.genesis, chain.item(), chain.grant(A, "read"), chain.rotate()]:
        message = signing.signable("amanah/log-entry", 1, entry.body)
        assert entry.raw == cbor.encode({"body": entry.body, "sig": entry.signature})
        assert entry.id == ids.sha256_id(message)
        signing.verify(pk(OWNER), message, entry.signature)
        parsed = log.parse_entry(entry.raw)
        assert (parsed.body, parsed.signature, parsed.raw, parsed.id) == (
            entry.body,
            entry.signature,
            entry.raw,
            entry.id,
        )


# --- signatures ---------------------------------------------------------------------------------


def test_forged_signatures_are_refused():
    chain = Log("public")
    entry = chain.entry("item", item=ids.sha256_id(b"x"))
    message = signing.signable(log.ENTRY_TAG, log.ENTRY_VERSION, entry.body)
    forgeries = {
        "zeros": bytes(64),
        "random": os.urandom(64),
        "by another key": signing.sign(A, message),
        "another tag": signing.sign(OWNER, signing.signable("amanah/other", 1, entry.body)),
        "another version": signing.sign(OWNER, signing.signable(log.ENTRY_TAG, 2, entry.body)),
        "the bare body": signing.sign(OWNER, cbor.encode(entry.body)),
        "another entry": chain.entry("item", item=ids.sha256_id(b"y")).signature,
    }
    for sig in forgeries.values():
        raw = cbor.encode({"body": entry.body, "sig": sig})
        forged = log.parse_entry(raw)  # well formed: the signature is checked on verify
        with pytest.raises(SignatureError):
            log.verify_entry(forged, pk(OWNER))
        chain.refuse(forged, SignatureError)


def test_verify_refuses_malformed_signatures_and_keys():
    entry = Log("public").item()
    message = signing.signable(log.ENTRY_TAG, log.ENTRY_VERSION, entry.body)
    for sig in (entry.signature[:-1], entry.signature + b"\0", None, entry.signature.hex()):
        with pytest.raises(SignatureError):
            signing.verify(pk(OWNER), message, sig)
    for key in (pk(OWNER)[:-1], b""):
        with pytest.raises(SignatureError):
            signing.verify(key, message, entry.signature)


def test_an_entry_re_signed_by_a_non_owner_is_refused():
    chain = Log("trusted")
    chain.item()
    body = chain.body("item", item=ids.sha256_id(b"x"))
    for key in (A, STRANGER):
        entry = log.make_entry(key, body)
        assert log.parse_entry(entry.raw).body == body
        chain.refuse(entry, SignatureError)
    # even a peer holding a grant may not append
    chain.grant(A, "hold")
    chain.refuse(chain.entry("item", signer=A, item=ids.sha256_id(b"y")), SignatureError)
    chain.add("item", item=ids.sha256_id(b"x"))


def test_signature_checked_skips_only_the_signature_check():
    chain = Log("public")
    entry = chain.entry("item", signer=A, item=ids.sha256_id(b"x"))
    chain.state.apply(entry, signature_checked=True)
    wrong = chain.entry("item", item=ids.sha256_id(b"x"))
    chain.state.length += 1  # the entry no longer fits
    with pytest.raises(ChainError):
        chain.state.apply(wrong, signature_checked=True)


# --- chain rules ------------------------------------------------------------------------------


def test_a_valid_chain_replays_from_raw_bytes():
    chain = Log("trusted")
    chain.item()
    chain.grant(A, "hold")
    chain.grant(B, "read")
    chain.grant(C, "read")
    chain.revoke(B, rotate=True)
    chain.rotate()
    chain.item()
    chain.revoke(A, rotate=False)
    state = replay(chain.entries)
    assert state.to_cbor() == chain.state.to_cbor()
    assert state.epoch == 2 and state.length == len(chain.entries)
    assert state.grants == {pk(C): "read"}
    assert state.readers() == sorted([pk(OWNER), pk(C)])
    assert CollectionState.from_cbor(state.to_cbor()) == state


def test_reordered_entries_are_refused():
    chain = Log("public")
    first, second = chain.item(), chain.item()
    fresh = CollectionState.from_genesis(chain.genesis)
    with pytest.raises(ChainError, match="position"):
        fresh.apply(second)
    fresh.apply(first)
    with pytest.raises(ChainError):
        fresh.apply(first)  # replayed
    fresh.apply(second)


def test_wrong_position_is_refused():
    chain = Log("public")
    chain.item()
    for seq in (1, 3, 100):
        body = {**chain.body("item", item=ids.sha256_id(b"x")), "seq": seq}
        chain.refuse(log.make_entry(OWNER, body), match="position")


def test_wrong_prev_hash_is_refused():
    chain = Log("public")
    first = chain.item()
    for prev in (chain.genesis.id, ids.sha256_id(first.raw), ids.sha256_id(b"x")):
        body = {**chain.body("item", item=ids.sha256_id(b"x")), "prev": prev}
        chain.refuse(log.make_entry(OWNER, body), match="previous")


def test_entry_of_another_collection_is_refused():
    one, other = Log("public"), Log("public")
    # same owner, same position, same head-shape: only the collection differs
    entry = other.entry("item", item=ids.sha256_id(b"x"))
    one.refuse(entry, match="another collection")
    body = {**one.body("item", item=ids.sha256_id(b"x")), "col": other.state.id}
    one.refuse(log.make_entry(OWNER, body))


def test_a_second_genesis_is_refused():
    chain = Log("public")
    chain.item()
    chain.refuse(chain.genesis, match="genesis")
    chain.refuse(log.genesis(OWNER, "Other", "public", 9, bytes(16)), match="genesis")


def test_a_fork_is_refused_once_one_branch_is_applied():
    chain = Log("public")
    left = chain.entry("item", item=ids.sha256_id(b"left"))
    right = chain.entry("item", item=ids.sha256_id(b"right"))
    assert left.seq == right.seq and left.id != right.id
    chain.state.apply(left)
    chain.refuse(right)


# --- grants, revokes and keys -----------------------------------------------------------------


def test_mirror_only_on_public():
    public = Log("public")
    public.grant(A, "mirror")
    assert public.state.grants[pk(A)] == "mirror"
    for tier in ("trusted", "closed"):
        chain = Log(tier)
        chain.refuse(chain.entry("grant", peer=pk(A), role="mirror"), match="mirror")


def test_no_readers_on_closed():
    chain = Log("closed")
    chain.grant(A, "hold")  # a closed collection may still be held (as ciphertext)
    entry = chain.entry("grant", **chain.grant_fields(B, "read"))
    assert "wrap" in entry.body
    chain.refuse(entry, match="closed")
    chain.refuse(chain.entry("grant", peer=pk(B), role="read"), match="closed")


def test_trusted_read_grant_must_carry_the_current_key():
    chain = Log("trusted")
    chain.refuse(chain.entry("grant", peer=pk(A), role="read"), match="current key")
    chain.grant(B, "read")
    chain.revoke(B, rotate=True)  # now at epoch 1
    stale = {
        "peer": pk(A),
        "role": "read",
        "epoch": 0,
        "wrap": crypto.wrap_key(pk(A), chain.keys[0]),
    }
    chain.refuse(chain.entry("grant", **stale), match="current key")
    future = {**stale, "epoch": 2}
    chain.refuse(chain.entry("grant", **future), match="current key")
    chain.grant(A, "read")
    assert crypto.unwrap_key(A, chain.entries[-1].body["wrap"]) == chain.keys[1]


def test_public_grants_carry_no_key():
    chain = Log("public")
    chain.grant(A, "read")  # public: read needs no key
    wrapped = {"peer": pk(B), "role": "read", "epoch": 0, "wrap": bytes(80)}
    chain.refuse(chain.entry("grant", **wrapped), match="no key")


def test_no_grant_to_the_owner():
    chain = Log("public")
    chain.refuse(chain.entry("grant", peer=pk(OWNER), role="hold"), match="owner")


def test_revoke_needs_a_grant():
    chain = Log("public")
    chain.refuse(chain.entry("revoke", peer=pk(A)), match="no grant")
    chain.grant(A, "hold")
    chain.revoke(A, rotate=False)
    chain.refuse(chain.entry("revoke", peer=pk(A)), match="no grant")


def test_revoking_a_reader_must_rotate_the_key():
    chain = Log("trusted")
    chain.grant(A, "read")
    chain.grant(B, "read")
    chain.refuse(chain.entry("revoke", peer=pk(A)), match="rotate")
    assert chain.state.grants[pk(A)] == "read"  # a refused revoke leaves the grant in place
    chain.revoke(A, rotate=True)
    assert pk(A) not in chain.state.grants
    # the revoked reader cannot open the new key; the remaining one can
    sealed = dict(chain.entries[-1].body["key"]["wraps"])
    assert pk(A) not in sealed
    assert crypto.unwrap_key(B, sealed[pk(B)]) == chain.keys[1]


def test_revoking_a_holder_may_or_may_not_rotate():
    chain = Log("trusted")
    chain.grant(A, "hold")
    chain.grant(B, "hold")
    chain.revoke(A, rotate=False)
    chain.revoke(B, rotate=True)
    assert chain.state.epoch == 1


def test_revoking_a_public_reader_needs_no_rotation_and_allows_none():
    chain = Log("public")
    chain.grant(A, "read")
    chain.grant(B, "read")
    chain.revoke(A, rotate=False)
    record = log.key_epoch(1, os.urandom(32), [pk(OWNER)], chain.state.id, os.urandom(32))
    chain.refuse(chain.entry("revoke", peer=pk(B), key=record), match="no keys")
    chain.refuse(chain.entry("key", key=record), match="no keys")


def test_downgrading_a_reader_without_rotation_is_refused():
    chain = Log("trusted")
    chain.grant(A, "read")
    chain.refuse(chain.entry("grant", peer=pk(A), role="hold"), match="revoke")
    chain.grant(A, "read")  # re-granting read at the current epoch is fine
    chain.grant(B, "hold")
    chain.grant(B, "read")  # and so is an upgrade


def test_key_epochs_advance_one_at_a_time():
    chain = Log("trusted")
    for epoch in (0, 2, 5):
        record, _ = chain.epoch_record(chain.state.readers(), epoch=epoch)
        chain.refuse(chain.entry("key", key=record), match="one at a time")
    chain.rotate()
    chain.rotate()
    assert chain.state.epoch == 2
    record, _ = chain.epoch_record(chain.state.readers(), epoch=2)
    chain.refuse(chain.entry("key", key=record))


def test_a_new_key_is_wrapped_to_exactly_the_current_readers():
    chain = Log("trusted")
    chain.grant(A, "read")
    chain.grant(B, "hold")
    readers = chain.state.readers()
    assert readers == sorted([pk(OWNER), pk(A)])
    for wrong in (
        [pk(OWNER)],  # a reader left out
        [pk(A)],  # the owner left out
        readers + [pk(B)],  # a holder let in
        readers + [pk(STRANGER)],  # a stranger let in
    ):
        record, _ = chain.epoch_record(wrong)
        chain.refuse(chain.entry("key", key=record), match="exactly the current readers")
    # revoking A: the new key goes to the readers that remain, not to A
    record, _ = chain.epoch_record(readers)
    chain.refuse(chain.entry("revoke", peer=pk(A), key=record))
    chain.rotate()


def test_redaction_reason_encrypted_exactly_when_not_public():
    item = ids.sha256_id(b"x")
    public = Log("public")
    public.refuse(public.entry("redact", item=item, epoch=0, reason_enc=bytes(40)))
    public.add("redact", item=item, reason="duplicate")
    trusted = Log("trusted")
    trusted.refuse(trusted.entry("redact", item=item, reason="names a witness"), match="encrypted")
    context = log.reason_context(trusted.state.id, trusted.state.length)
    sealed = crypto.seal_log_text(trusted.keys[0], context, "names a witness")
    entry = trusted.add("redact", item=item, epoch=0, reason_enc=sealed)
    assert b"witness" not in entry.raw
    assert crypto.open_log_text(trusted.keys[0], context, sealed) == "names a witness"
    # the reason is bound to its collection and position
    with pytest.raises(IntegrityError):
        crypto.open_log_text(trusted.keys[0], log.reason_context(trusted.state.id, 99), sealed)


def test_key_chain_reaches_every_earlier_epoch():
    chain = Log("trusted")
    chain.grant(A, "read")
    chain.revoke(A, rotate=True)
    chain.rotate()
    chain.rotate()
    key = chain.keys[3]
    for epoch in (3, 2, 1):
        record = next(
            e.body["key"] for e in chain.entries[1:] if e.body.get("key", {}).get("epoch") == epoch
        )
        key = crypto.chain_open(key, record["prev"], chain.state.id, epoch)
        assert key == chain.keys[epoch - 1]
    with pytest.raises(IntegrityError):
        crypto.chain_open(chain.keys[3], record["prev"], chain.state.id, 1)


def test_state_round_trips_through_cbor():
    chain = Log("trusted")
    chain.grant(A, "read")
    chain.grant(B, "hold")
    restored = CollectionState.from_cbor(chain.state.to_cbor())
    assert restored == chain.state
    public = Log("public")
    assert CollectionState.from_cbor(public.state.to_cbor()) == public.state


# --- properties -------------------------------------------------------------------------------


def _sample_entries() -> list[tuple[log.Entry, bytes]]:
    chain = Log("trusted")
    chain.item()
    chain.grant(A, "read")
    chain.revoke(A, rotate=True)
    public = log.genesis(OWNER, "Open", "public", 5, bytes(16))
    return [(e, pk(OWNER)) for e in [*chain.entries, public]]


SAMPLES = _sample_entries()


def _rejected(raw: bytes, owner: bytes, original: log.Entry) -> bool:
    try:
        entry = log.parse_entry(raw)
    except FormatError:
        return True
    assert entry.id != original.id or entry.signature != original.signature
    try:
        log.verify_entry(entry, owner)
    except SignatureError:
        return True
    return False


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(SAMPLES))), st.data())
def test_any_single_byte_change_is_rejected(which, data):
    entry, owner = SAMPLES[which]
    pos = data.draw(st.integers(0, len(entry.raw) - 1), label="position")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != entry.raw[pos]), label="byte")
    mutated = entry.raw[:pos] + bytes([byte]) + entry.raw[pos + 1 :]
    assert _rejected(mutated, owner, entry)


def test_every_single_bit_flip_of_an_entry_is_rejected():
    entry, owner = SAMPLES[1]  # an item entry
    raw = bytearray(entry.raw)
    for pos in range(len(raw)):
        for bit in range(8):
            raw[pos] ^= 1 << bit
            assert _rejected(bytes(raw), owner, entry), (pos, bit)
            raw[pos] ^= 1 << bit


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=8), st.integers(0, 2**63), raw_ids)
def test_truncated_or_extended_entries_are_rejected(extra, at, item):
    chain = Log("public")
    entry = log.make_entry(OWNER, {**chain.body("item", item=item), "at": at})
    assert log.parse_entry(entry.raw).body["at"] == at
    for cut in {1, len(extra), len(entry.raw) // 2, len(entry.raw) - 1}:
        with pytest.raises(FormatError):
            log.parse_entry(entry.raw[:-cut])
    with pytest.raises(FormatError):
        log.parse_entry(entry.raw + extra)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["item", "grant-hold", "grant-read", "revoke", "key", "redact"]),
        st.integers(0, 2),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["public", "trusted", "closed"]), OPS)
def test_random_valid_histories_replay_and_keep_readers_consistent(tier, ops):
    peers = [A, B, C]
    chain = Log(tier)
    items = []
    for op, n in ops:
        peer = peers[n]
        role = chain.state.grants.get(pk(peer))
        if op == "item":
            items.append(chain.item().body["item"])
        elif op == "grant-hold" and role != "read":
            chain.grant(peer, "hold")
        elif op == "grant-read" and tier != "closed":
            chain.grant(peer, "read")
        elif op == "revoke" and role is not None:
            chain.revoke(peer, rotate=tier != "public" and role == "read")
        elif op == "key" and tier != "public":
            chain.rotate()
        elif op == "redact" and items:
            item = items.pop()
            if tier == "public":
                chain.add("redact", item=item, reason="withdrawn")
            else:
                ctx = log.reason_context(chain.state.id, chain.state.length)
                sealed = crypto.seal_log_text(chain.keys[chain.state.epoch], ctx, "withdrawn")
                chain.add("redact", item=item, epoch=chain.state.epoch, reason_enc=sealed)
    state = replay(chain.entries)
    assert state.to_cbor() == chain.state.to_cbor()
    readers = state.readers()
    assert pk(OWNER) in readers
    if tier == "closed":
        assert readers == [pk(OWNER)]
    if tier != "public":
        # every current reader can open the current key; nobody else was given it
        latest = {}
        for e in chain.entries:
            if "key" in e.body:
                latest = dict(e.body["key"]["wraps"])
            elif "wrap" in e.body and e.body["epoch"] == state.epoch:
                latest[e.body["peer"]] = e.body["wrap"]
        current = [p for p, sealed in latest.items() if p in readers]
        assert sorted(current) == readers
        for key in [OWNER, A, B, C]:
            if pk(key) in readers:
                assert crypto.unwrap_key(key, latest[pk(key)]) == chain.keys[state.epoch]


@settings(max_examples=30, deadline=None)
@given(signing_keys, st.text(min_size=1, max_size=50).filter(str.strip), st.integers(0, 2**62))
def test_genesis_of_any_owner_name_and_time_round_trips(owner, name, at):
    try:
        g = log.genesis(owner, name, "public", at, os.urandom(16))
    except FormatError:
        assert any(ord(c) < 0x20 and c not in "\t\n" for c in name) or "\x7f" in name
        return
    parsed = log.parse_entry(g.raw)
    assert parsed.id == g.id
    state = CollectionState.from_genesis(parsed)
    assert state.owner == pk(owner) and parsed.body["name"] == name


@pytest.mark.parametrize("count", [10, 200])  # checked on the calling thread, and in parallel
def test_replica_checks_batches_of_signatures_and_finds_any_forged_one(count):
    from amanah.node.entry_checks import VERIFY_PARALLEL_FROM, check_signatures

    assert (count >= VERIFY_PARALLEL_FROM) == (count == 200)
    chain = Log("public")
    entries = [chain.item() for _ in range(count)]
    check_signatures(entries, pk(OWNER))
    with pytest.raises(SignatureError):
        check_signatures(entries, pk(STRANGER))  # the owner's key, not anyone's
    for at in (0, count // 2, count - 1):
        forged = list(entries)
        e = forged[at]
        forged[at] = log.Entry(e.body, bytes(64), e.raw, e.id)
        with pytest.raises(SignatureError):
            check_signatures(forged, pk(OWNER))


def test_a_parsed_entry_keeps_exactly_the_bytes_its_signature_covers():
    chain = Log("public")
    for entry in [chain.genesis, chain.item(), chain.grant(A, "hold")]:
        parsed = log.parse_entry(entry.raw)
        assert parsed.signable == log._signable(parsed.body) == entry.signable
        assert parsed.id == ids.sha256_id(parsed.signable) == entry.id
        log.verify_entry(parsed, pk(OWNER))


def test_a_log_names_at_most_max_peers_revoked_ones_included(monkeypatch):
    monkeypatch.setattr(log, "MAX_PEERS", 3)
    chain = Log("public")
    for peer in (A, B, C):
        chain.grant(peer, "hold")
    chain.refuse(chain.entry("grant", **chain.grant_fields(STRANGER, "hold")), match="at most 3")
    chain.grant(A, "read")  # a peer already named may change role
    chain.revoke(A, rotate=False)
    # A is revoked but still named (it keeps fetching the log to learn of it): still full
    chain.refuse(chain.entry("grant", **chain.grant_fields(STRANGER, "hold")), match="at most 3")
    chain.grant(A, "hold")  # and a revoked peer may be granted again


def test_a_key_has_at_most_max_readers_owner_included(monkeypatch):
    monkeypatch.setattr(log, "MAX_READERS", 3)
    chain = Log("trusted")
    chain.grant(A, "read")
    chain.grant(B, "read")  # owner, A, B: full
    chain.grant(C, "hold")  # holders need no key
    chain.refuse(chain.entry("grant", **chain.grant_fields(C, "read")), match="at most 3 readers")
    chain.grant(B, "read")  # re-granting a reader adds none
    chain.revoke(A, rotate=True)
    chain.grant(C, "read")
    public = Log("public")  # a public collection has no key: read grants are not counted
    for peer in (A, B, C, STRANGER):
        public.grant(peer, "read")


def test_the_limits_keep_a_full_collection_storable_and_revocable():
    chain = Log("public")
    many = [nacl.signing.SigningKey.generate() for _ in range(log.MAX_PEERS)]
    for peer in many:
        chain.state.grants[pk(peer)] = "hold"  # the state a full log leaves (fast)
    state = chain.state.to_cbor()
    assert len(state) <= log.MAX_ENTRY_SIZE  # the decode cap of a stored state
    assert CollectionState.from_cbor(state) == chain.state
    readers = sorted([pk(OWNER)] + [pk(p) for p in many[: log.MAX_READERS - 1]])
    entry = log.make_entry(
        OWNER,
        Log("trusted").body(
            "key", key=log.key_epoch(1, os.urandom(32), readers, os.urandom(34), os.urandom(32))
        ),
    )
    assert len(entry.raw) <= log.MAX_ENTRY_SIZE
