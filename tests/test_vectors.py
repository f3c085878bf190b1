"""Known-answer vectors: recompute each from its inputs and compare bytes exactly.

The vectors (protocol/vectors/*.json) are the frozen form of the format. Each test here rebuilds
a vector from the inputs recorded beside it, through the public protocol API and without the
generator's code, and also parses the stored bytes and checks their signatures and ciphertexts:
any change of format fails here until the vectors are regenerated on purpose.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import amanah.protocol
import nacl.bindings
import nacl.encoding
import nacl.hash
import nacl.public
import nacl.signing
import pytest
from amanah.protocol import cbor, crypto, ids, log, signing
from amanah.protocol import item as item_mod
from amanah.protocol import metadata as metadata_mod
from amanah.protocol.errors import ChainError, FormatError, IntegrityError, SignatureError

from .strategies import same

VECTORS = Path(amanah.protocol.__file__).resolve().parent / "vectors"
FILES = [
    "cbor.json",
    "ids.json",
    "signing.json",
    "log.json",
    "items.json",
    "blocks.json",
    "metadata.json",
    "keys.json",
]
h = bytes.fromhex


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text("utf-8"))


def value_of(j):
    """The CBOR value a vector writes in JSON ({"$bytes": hex}, {"$int": decimal})."""
    if isinstance(j, dict):
        if set(j) == {"$bytes"}:
            return h(j["$bytes"])
        if set(j) == {"$int"}:
            return int(j["$int"])
        return {k: value_of(v) for k, v in j.items()}
    if isinstance(j, list):
        return [value_of(v) for v in j]
    return j


def signer(seed_hex: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(h(seed_hex))


@pytest.mark.parametrize("name", FILES)
def test_every_file_is_described(name):
    data = load(name)
    assert isinstance(data.get("description"), str) and len(data["description"]) > 40


def test_generator_rewrites_identical_files(tmp_path):
    script = VECTORS / "generate.py"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path)], check=True, capture_output=True, timeout=60
    )
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(FILES)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), name


# --- cbor -------------------------------------------------------------------------------------


def test_cbor_vectors():
    data = load("cbor.json")
    assert data["max_depth"] == cbor.MAX_DEPTH
    assert len(data["vectors"]) > 30
    for v in data["vectors"]:
        value = value_of(v["value"])
        assert cbor.encode(value).hex() == v["cbor"], v["name"]
        assert same(cbor.decode(h(v["cbor"]), 1 << 20), value), v["name"]


def test_cbor_invalid_vectors():
    data = load("cbor.json")
    assert len(data["invalid"]) > 20
    for v in data["invalid"]:
        with pytest.raises(FormatError):
            cbor.decode(h(v["cbor"]), 1 << 20)


# --- ids --------------------------------------------------------------------------------------


def test_content_id_vectors():
    data = load("ids.json")
    for v in data["content_ids"]:
        raw = ids.sha256_id(h(v["data"]))
        assert raw.hex() == v["raw"]
        assert raw[2:] == hashlib.sha256(h(v["data"])).digest()
        assert set(v["text"]) == set(ids.KINDS)
        for kind, text in v["text"].items():
            assert ids.to_text(kind, raw) == text
            assert ids.from_text(text, kind) == raw


def test_peer_id_vectors():
    for v in load("ids.json")["peer_ids"]:
        public = bytes(signer(v["seed"]).verify_key)
        assert public.hex() == v["public_key"]
        assert ids.peer_id_from_public_key(public) == v["peer_id"]
        assert ids.public_key_from_peer_id(v["peer_id"]) == public


def test_invalid_id_texts():
    invalid = load("ids.json")["invalid_texts"]
    assert len(invalid) >= 10
    for v in invalid:
        with pytest.raises(FormatError):
            ids.from_text(v["text"], v["kind"])


# --- signing ----------------------------------------------------------------------------------


def test_signing_vectors():
    vectors = load("signing.json")["vectors"]
    messages = set()
    for v in vectors:
        key = signer(v["seed"])
        assert bytes(key.verify_key).hex() == v["public_key"]
        message = signing.signable(v["tag"], v["version"], value_of(v["body"]))
        assert message.hex() == v["signable"]
        assert message == cbor.encode([v["tag"], v["version"], value_of(v["body"])])
        assert signing.sign(key, message).hex() == v["signature"]
        signing.verify(h(v["public_key"]), message, h(v["signature"]))
        messages.add(message)
    # no vector's signature verifies over another vector's signable (domain separation)
    assert len(messages) == len(vectors)
    for v in vectors:
        for other in messages - {h(v["signable"])}:
            with pytest.raises(SignatureError):
                signing.verify(h(v["public_key"]), other, h(v["signature"]))


# --- log --------------------------------------------------------------------------------------


def _check_entry_bytes(entry: log.Entry, v: dict) -> None:
    assert entry.raw.hex() == v["raw"]
    assert entry.id.hex() == v["id"]
    assert entry.signature.hex() == v["signature"]
    assert signing.signable(log.ENTRY_TAG, log.ENTRY_VERSION, entry.body).hex() == v["signable"]
    assert ids.to_text("ent", entry.id) == v["id_text"]
    assert entry.body == value_of(v["body"])


def _genesis(inputs: dict) -> log.Entry:
    return log.genesis(
        signer(inputs["owner_seed"]),
        inputs["name"],
        inputs["tier"],
        inputs["at"],
        h(inputs["nonce"]),
        h(inputs["epoch_key"]) if "epoch_key" in inputs else None,
        h(inputs["ephemeral"]) if "ephemeral" in inputs else None,
    )


def _check_genesis(v: dict) -> log.Entry:
    inputs = v["inputs"]
    _check_entry_bytes(_genesis(inputs), v)
    stored = log.parse_entry(h(v["raw"]))
    _check_entry_bytes(stored, v)
    owner = signer(inputs["owner_seed"])
    log.verify_entry(stored, bytes(owner.verify_key))
    state = log.CollectionState.from_genesis(stored)
    assert state.tier == inputs["tier"]
    assert ids.to_text("col", stored.id) == v["collection_id_text"]
    assert ids.peer_id_from_public_key(state.owner) == v["owner_peer_id"]
    if inputs["tier"] == "public":
        assert stored.body["name"] == inputs["name"]
    else:
        assert inputs["name"].encode() not in stored.raw
        assert log.open_name(stored, h(inputs["epoch_key"])) == inputs["name"]
        [[reader, sealed]] = stored.body["key"]["wraps"]
        assert reader == bytes(owner.verify_key)
        assert crypto.unwrap_key(owner, sealed) == h(inputs["epoch_key"])
    return stored


def test_genesis_vectors():
    tiers = [_check_genesis(v).body["tier"] for v in load("log.json")["genesis"]]
    assert tiers == ["public", "closed"]


def test_peer_table():
    for v in load("log.json")["peers"].values():
        assert bytes(signer(v["seed"]).verify_key).hex() == v["public_key"]


class Replayer:
    """Rebuilds a chain from its recorded inputs, and replays its stored bytes alongside."""

    def __init__(self, chain: dict, peers: dict) -> None:
        self.peers = {label: signer(p["seed"]) for label, p in peers.items()}
        genesis = _check_genesis(chain["genesis"])
        inputs = chain["genesis"]["inputs"]
        self.owner = signer(inputs["owner_seed"])
        self.built = log.CollectionState.from_genesis(genesis)  # advanced by rebuilt entries
        self.replayed = log.CollectionState.from_genesis(genesis)  # by stored bytes
        self.keys = {0: h(inputs["epoch_key"])} if "epoch_key" in inputs else {}

    def pub(self, label: str) -> bytes:
        return bytes(self.peers[label].verify_key)

    def rotation(self, inputs: dict, readers: list[bytes]) -> dict:
        epoch, key = inputs["epoch"], h(inputs["key"])
        ephemerals = [h(e) for e in inputs["ephemerals"]]
        record = log.key_epoch(epoch, key, readers, self.built.id, self.keys[epoch - 1], ephemerals)
        self.keys[epoch] = key
        return record

    def fields(self, inputs: dict) -> dict:
        t = inputs["type"]
        state = self.built
        if t == "item" and "items" in inputs:
            return {"items": [h(i) for i in inputs["items"]]}
        if t == "item":
            return {"item": h(inputs["item"])}
        if t == "grant":
            fields = {"peer": self.pub(inputs["peer"]), "role": inputs["role"]}
            if "ephemeral" in inputs:
                key = self.keys[inputs["epoch"]]
                wrap = crypto.wrap_key(fields["peer"], key, h(inputs["ephemeral"]))
                fields.update(epoch=inputs["epoch"], wrap=wrap)
            return fields
        if t == "revoke":
            fields = {"peer": self.pub(inputs["peer"])}
            if "key" in inputs:
                readers = [r for r in state.readers() if r != fields["peer"]]
                fields["key"] = self.rotation(inputs["key"], readers)
            return fields
        if t == "key":
            return {"key": self.rotation(inputs["key"], state.readers())}
        if t == "redact":
            fields = {"item": h(inputs["item"])}
            if "epoch" in inputs:
                context = log.reason_context(state.id, state.length)
                sealed = crypto.seal_log_text(self.keys[inputs["epoch"]], context, inputs["reason"])
                fields.update(epoch=inputs["epoch"], reason_enc=sealed)
            else:
                fields["reason"] = inputs["reason"]
            return fields
        raise AssertionError(t)

    def step(self, v: dict) -> None:
        inputs = v["inputs"]
        body = log.next_body(self.built, inputs["type"], inputs["at"], **self.fields(inputs))
        rebuilt = log.make_entry(self.owner, body)
        _check_entry_bytes(rebuilt, v)
        self.built.apply(rebuilt)
        stored = log.parse_entry(h(v["raw"]))
        _check_entry_bytes(stored, v)
        self.replayed.apply(stored)  # checks the owner's signature and every chain rule
        assert (self.replayed.length, self.replayed.epoch) == (
            v["after"]["length"],
            v["after"]["epoch"],
        )
        self.check_secrets(stored)

    def check_secrets(self, entry: log.Entry) -> None:
        b = entry.body
        if "wrap" in b:
            assert (
                crypto.unwrap_key(self.peers[self._label(b["peer"])], b["wrap"])
                == (self.keys[b["epoch"]])
            )
        record = b.get("key")
        if record:
            epoch = record["epoch"]
            wrapped = dict(record["wraps"])
            assert sorted(wrapped) == self.replayed.readers()
            for reader, sealed in wrapped.items():
                assert crypto.unwrap_key(self._signer(reader), sealed) == self.keys[epoch]
            for label, key in self.peers.items():
                if self.pub(label) not in wrapped:
                    for sealed in wrapped.values():
                        with pytest.raises(IntegrityError):
                            crypto.unwrap_key(key, sealed)
            previous = crypto.chain_open(self.keys[epoch], record["prev"], self.replayed.id, epoch)
            assert previous == self.keys[epoch - 1]
        if "reason_enc" in b:
            context = log.reason_context(self.replayed.id, entry.seq)
            reason = crypto.open_log_text(self.keys[b["epoch"]], context, b["reason_enc"])
            assert reason.encode() not in entry.raw

    def _label(self, public: bytes) -> str:
        return next(label for label in self.peers if self.pub(label) == public)

    def _signer(self, public: bytes) -> nacl.signing.SigningKey:
        return self.peers[self._label(public)]


def test_chain_vectors():
    data = load("log.json")
    types = set()
    for chain in data["chains"]:
        replayer = Replayer(chain, data["peers"])
        for v in chain["entries"]:
            replayer.step(v)
            types.add((chain["tier"], v["inputs"]["type"], "key" in v["inputs"]))
            if "items" in v["inputs"]:
                types.add((chain["tier"], "batch", len(v["inputs"]["items"]) > 1))
        assert {int(e): h(k) for e, k in chain["epoch_keys"].items()} == replayer.keys
        assert replayer.built.to_cbor() == replayer.replayed.to_cbor()
    # the vectors cover what they claim to
    assert ("trusted", "revoke", True) in types
    assert ("trusted", "key", True) in types
    assert ("public", "revoke", False) in types
    assert ("public", "batch", True) in types
    roles = {
        (c["tier"], e["inputs"].get("role"))
        for c in data["chains"]
        for e in c["entries"]
        if e["inputs"]["type"] == "grant"
    }
    assert {("public", "mirror"), ("trusted", "hold"), ("trusted", "read")} <= roles
    reasons = {
        c["tier"]: "epoch" in e["inputs"]
        for c in data["chains"]
        for e in c["entries"]
        if e["inputs"]["type"] == "redact"
    }
    assert reasons == {"public": False, "trusted": True}


def test_invalid_item_entry_vectors_are_refused_though_signed_by_the_owner():
    data = load("log.json")
    owner = data["genesis"][0]["inputs"]["owner_seed"]
    key = signer(owner).verify_key
    assert len(data["invalid_entries"]) >= 8
    for v in data["invalid_entries"]:
        raw = h(v["raw"])
        value = cbor.decode(raw, log.MAX_ENTRY_SIZE)  # well-formed CBOR, a valid signature
        key.verify(signing.signable(log.ENTRY_TAG, log.ENTRY_VERSION, value["body"]), value["sig"])
        with pytest.raises(FormatError):
            log.parse_entry(raw)


def test_stored_chain_entries_out_of_order_are_refused():
    data = load("log.json")
    chain = data["chains"][1]
    genesis = log.parse_entry(h(chain["genesis"]["raw"]))
    entries = [log.parse_entry(h(v["raw"])) for v in chain["entries"]]
    state = log.CollectionState.from_genesis(genesis)
    with pytest.raises(ChainError):
        state.apply(entries[1])
    other = log.parse_entry(h(data["chains"][0]["entries"][0]["raw"]))
    with pytest.raises(ChainError):
        state.apply(other)  # the public chain's first entry: another collection


# --- items, blocks, metadata ------------------------------------------------------------------


def _pattern(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def test_public_item_vector():
    data = load("items.json")
    v = data["public"]
    inputs = v["inputs"]
    content = h(inputs["content"])
    meta = value_of(inputs["meta"])
    fields = {
        "v": 1,
        "col": h(inputs["collection"]),
        "salt": h(inputs["salt"]),
        "size": len(content),
        "chunk": data["chunk_size"],
        "blocks": [ids.sha256_id(content)],
        "meta": meta,
    }
    assert [b.hex() for b in fields["blocks"]] == v["block_ids"]
    record = item_mod.build_record(fields)
    assert record.raw.hex() == v["raw"]
    assert record.id.hex() == v["id"]
    assert ids.to_text("itm", record.id) == v["id_text"]
    stored = item_mod.parse_record(h(v["raw"]))
    assert stored.fields == value_of(v["record"]) == fields
    assert stored.fields["meta"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert metadata_mod.validate(stored.fields["meta"])


def test_encrypted_item_vector():
    data = load("items.json")
    v = data["encrypted"]
    inputs = v["inputs"]
    assert inputs["content"]["pattern"] == "byte i is i mod 251"
    content = _pattern(inputs["content"]["size"])
    col, key, salt = h(inputs["collection"]), h(inputs["epoch_key"]), h(inputs["salt"])
    chunk = data["chunk_size"]
    assert crypto.item_key(key, salt).hex() == v["item_key"]
    cipher = crypto.ItemCipher(key, col, salt)
    stored = [
        cipher.seal(crypto.PURPOSE_BLOCK, i, content[i * chunk : (i + 1) * chunk])
        for i in range(item_mod.block_count(len(content), chunk))
    ]
    assert len(stored) == 2
    assert [ids.sha256_id(s).hex() for s in stored] == v["block_ids"]
    assert [hashlib.sha256(s).hexdigest() for s in stored] == v["block_sha256"]
    assert stored[-1].hex() == v["last_block_ciphertext"]
    assert cipher.open(crypto.PURPOSE_BLOCK, 1, h(v["last_block_ciphertext"])) == content[chunk:]
    with pytest.raises(IntegrityError):
        cipher.open(crypto.PURPOSE_BLOCK, 0, h(v["last_block_ciphertext"]))
    meta = value_of(inputs["meta"])
    assert cbor.encode(meta).hex() == v["meta_cbor"]
    assert cipher.seal(crypto.PURPOSE_METADATA, 0, cbor.encode(meta)).hex() == v["meta_enc"]
    fields = {
        "v": 1,
        "col": col,
        "salt": salt,
        "size": len(content),
        "chunk": chunk,
        "blocks": [ids.sha256_id(s) for s in stored],
        "epoch": inputs["epoch"],
        "meta_enc": h(v["meta_enc"]),
    }
    record = item_mod.build_record(fields)
    assert record.raw.hex() == v["raw"]
    assert record.id.hex() == v["id"]
    assert ids.to_text("itm", record.id) == v["id_text"]
    parsed = item_mod.parse_record(h(v["raw"]))
    assert parsed.encrypted and parsed.fields == value_of(v["record"])
    plain = cipher.open(crypto.PURPOSE_METADATA, 0, parsed.fields["meta_enc"])
    opened = item_mod.decode_metadata(plain)
    assert opened == meta
    assert opened["sha256"] == hashlib.sha256(content).hexdigest()
    assert opened["sha256"].encode() not in h(v["raw"])


def test_manifest_item_vector():
    data = load("items.json")
    v = data["manifest"]
    inputs = v["inputs"]
    count = inputs["size"] // data["chunk_size"]
    assert count == item_mod.INLINE_BLOCKS + 1
    block_ids = [ids.sha256_id(b"block %d" % i) for i in range(count)]
    manifest = item_mod.encode_manifest(block_ids)
    assert manifest.hex() == v["manifest"]
    assert ids.sha256_id(manifest).hex() == v["manifest_id"]
    assert item_mod.decode_manifest(h(v["manifest"]), count) == block_ids
    fields = {
        "v": 1,
        "col": h(inputs["collection"]),
        "salt": h(inputs["salt"]),
        "size": inputs["size"],
        "chunk": data["chunk_size"],
        "manifest": [h(v["manifest_id"])],
        "meta": value_of(inputs["meta"]),
    }
    assert item_mod.build_record(fields).raw.hex() == v["raw"]
    parsed = item_mod.parse_record(h(v["raw"]))
    assert parsed.id.hex() == v["id"] and ids.to_text("itm", parsed.id) == v["id_text"]
    assert parsed.manifest_ids() == [h(v["manifest_id"])]


def test_items_belong_to_the_chains():
    items, chains = load("items.json"), load("log.json")["chains"]
    for record, chain in ((items["public"], chains[0]), (items["encrypted"], chains[1])):
        assert record["inputs"]["collection"] == chain["genesis"]["id"]
        item_entries = [e for e in chain["entries"] if e["inputs"]["type"] == "item"]
        assert item_entries[0]["inputs"]["item"] == record["id"]
    assert items["encrypted"]["inputs"]["epoch_key"] == chains[1]["epoch_keys"]["0"]


def test_block_vectors():
    data = load("blocks.json")
    assert len(data["encrypted"]) >= 4
    for v in data["encrypted"]:
        key, col, salt = h(v["epoch_key"]), h(v["collection"]), h(v["salt"])
        purpose, index, plaintext = v["purpose"], v["index"], h(v["plaintext"])
        assert crypto.item_key(key, salt).hex() == v["item_key"]
        assert crypto.nonce(purpose, index).hex() == v["nonce"]
        assert crypto.associated_data(col, salt, purpose, index).hex() == v["associated_data"]
        cipher = crypto.ItemCipher(key, col, salt)
        sealed = cipher.seal(purpose, index, plaintext)
        assert sealed.hex() == v["ciphertext"]
        assert ids.sha256_id(sealed).hex() == v["block_id"]
        assert ids.to_text("blk", ids.sha256_id(sealed)) == v["block_id_text"]
        assert cipher.open(purpose, index, h(v["ciphertext"])) == plaintext
        # libsodium decrypts the stored bytes from the recorded key, nonce and associated data
        theirs = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
            h(v["ciphertext"]), h(v["associated_data"]), h(v["nonce"]), h(v["item_key"])
        )
        assert theirs == plaintext
        with pytest.raises(IntegrityError):
            cipher.open(purpose, index + 1, h(v["ciphertext"]))
    for v in data["public"]:
        assert ids.sha256_id(h(v["plaintext"])).hex() == v["block_id"]
        assert ids.to_text("blk", h(v["block_id"])) == v["block_id_text"]


def test_metadata_vectors():
    data = load("metadata.json")
    for v in data["vectors"]:
        meta = value_of(v["meta"])
        assert metadata_mod.validate(meta) == meta
        assert cbor.encode(meta).hex() == v["cbor"]
        key, col, salt = h(v["epoch_key"]), h(v["collection"]), h(v["salt"])
        assert crypto.nonce(crypto.PURPOSE_METADATA, 0).hex() == v["nonce"]
        ad = crypto.associated_data(col, salt, crypto.PURPOSE_METADATA, 0)
        assert ad.hex() == v["associated_data"]
        cipher = crypto.ItemCipher(key, col, salt)
        assert cipher.seal(crypto.PURPOSE_METADATA, 0, h(v["cbor"])).hex() == v["ciphertext"]
        plain = cipher.open(crypto.PURPOSE_METADATA, 0, h(v["ciphertext"]))
        assert item_mod.decode_metadata(plain) == meta
        with pytest.raises(IntegrityError):
            cipher.open(crypto.PURPOSE_BLOCK, 0, h(v["ciphertext"]))
    assert len(data["invalid"]) >= 5
    for v in data["invalid"]:
        with pytest.raises(FormatError):
            metadata_mod.validate(value_of(v["meta"]))


# --- keys -------------------------------------------------------------------------------------


def test_key_wrap_vectors():
    for v in load("keys.json")["wraps"]:
        reader = signer(v["reader_seed"])
        public = bytes(reader.verify_key)
        assert public.hex() == v["reader_public_key"]
        assert crypto.x25519_public(public).hex() == v["reader_x25519_public"]
        secret = crypto.x25519_secret(reader)
        assert bytes(secret).hex() == v["reader_x25519_secret"]
        eph_public = bytes(nacl.public.PrivateKey(h(v["ephemeral_secret"])).public_key)
        assert eph_public.hex() == v["ephemeral_public"]
        box_nonce = nacl.hash.blake2b(
            eph_public + h(v["reader_x25519_public"]),
            digest_size=24,
            encoder=nacl.encoding.RawEncoder,
        )
        assert box_nonce.hex() == v["nonce"]
        sealed = crypto.wrap_key(public, h(v["key"]), h(v["ephemeral_secret"]))
        assert sealed.hex() == v["sealed"]
        assert sealed[:32] == eph_public
        # any sealed-box implementation opens it: here libsodium's, through PyNaCl
        opened = nacl.public.SealedBox(nacl.public.PrivateKey(h(v["reader_x25519_secret"])))
        assert opened.decrypt(h(v["sealed"])) == h(v["key"])
        assert crypto.unwrap_key(reader, h(v["sealed"])) == h(v["key"])


def test_key_chain_vectors():
    for v in load("keys.json")["chain"]:
        new, previous, col = h(v["new_key"]), h(v["previous_key"]), h(v["collection"])
        assert crypto.chain_seal(new, previous, col, v["epoch"]).hex() == v["chained"]
        assert crypto.chain_open(new, h(v["chained"]), col, v["epoch"]) == previous


def test_log_text_vectors():
    for v in load("keys.json")["log_texts"]:
        key, context = h(v["key"]), h(v["context"])
        assert crypto.seal_log_text(key, context, v["text"]).hex() == v["ciphertext"]
        assert crypto.open_log_text(key, context, h(v["ciphertext"])) == v["text"]
