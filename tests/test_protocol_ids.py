"""Content ids and peer ids: text forms, round trips, and refusals."""

from __future__ import annotations

import base64
import hashlib

import pytest
from amanah.protocol import ids
from amanah.protocol.errors import FormatError
from hypothesis import given, settings
from hypothesis import strategies as st

from .strategies import digests, kinds, raw_ids, seeds

ABC = ids.sha256_id(b"abc")
ABC_TEXT = "col_ciqlu6awx6hqdt7kifaubxs5vyrchmadmgrzmf32ts2bb73b6iablli"
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def test_known_id():
    assert ABC.hex() == "1220" + hashlib.sha256(b"abc").hexdigest()
    assert ids.to_text("col", ABC) == ABC_TEXT
    assert ids.from_text(ABC_TEXT, "col") == ABC


def test_content_id_value_type():
    cid = ids.ContentId.of(b"abc")
    assert cid.raw == ABC
    assert cid.digest == hashlib.sha256(b"abc").digest()
    assert cid.text("blk") == "blk_" + ABC_TEXT[4:]
    assert ids.ContentId.of(memoryview(b"abc")) == cid
    with pytest.raises(FormatError):
        ids.ContentId(ABC[:-1])
    with pytest.raises(FormatError):
        ids.ContentId(b"\x13" + ABC[1:])


def test_multihash_needs_a_32_byte_digest():
    with pytest.raises(FormatError):
        ids.multihash(bytes(31))
    with pytest.raises(FormatError):
        ids.multihash(bytes(33))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        ABC[:-1],
        ABC + b"\0",
        b"\x13" + ABC[1:],  # sha2-512 code
        b"\x00" + ABC[1:],  # identity code
        b"\x12\x21" + ABC[2:],  # wrong digest length byte
        "1220" + "00" * 32,  # not bytes
        None,
    ],
)
def test_check_raw_id_refuses(raw):
    with pytest.raises(FormatError):
        ids.check_raw_id(raw)


def test_to_text_refuses_unknown_kinds_and_bad_ids():
    with pytest.raises(ValueError, match="kind"):
        ids.to_text("usr", ABC)
    with pytest.raises(FormatError):
        ids.to_text("col", b"\x13" + ABC[1:])


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().lower().rstrip("=")


BODY = ABC_TEXT[4:]
BAD_TEXTS = {
    "wrong prefix": "itm_" + BODY,
    "no prefix": BODY,
    "prefix without underscore": "col" + BODY,
    "upper-case prefix": "COL_" + BODY,
    "upper-case body": "col_" + BODY.upper(),
    "mixed-case body": "col_" + BODY[:10].upper() + BODY[10:],
    "54 characters": "col_" + BODY[:-1],
    "56 characters": "col_" + BODY + "a",
    "padding": "col_" + BODY + "=",
    "digit 1 (not base32)": "col_1" + BODY[1:],
    "digit 0 (not base32)": "col_0" + BODY[1:],
    "space inside": "col_" + BODY[:20] + " " + BODY[21:],
    "trailing newline": ABC_TEXT + "\n",
    "leading space": " " + ABC_TEXT,
    "hash code 0x13": "col_" + _b32(b"\x13\x20" + ABC[2:]),
    "hash code 0x00": "col_" + _b32(b"\x00\x20" + ABC[2:]),
    "digest length 0x21": "col_" + _b32(b"\x12\x21" + ABC[2:]),
    "35 bytes": "col_" + _b32(ABC + b"\0"),
    "33 bytes": "col_" + _b32(ABC[:-1]),
    "empty": "",
    "prefix only": "col_",
}


@pytest.mark.parametrize("text", BAD_TEXTS.values(), ids=BAD_TEXTS.keys())
def test_from_text_refuses(text):
    with pytest.raises(FormatError):
        ids.from_text(text, "col")


@pytest.mark.parametrize("value", [None, 1, b"col_" + BODY.encode(), ["col_" + BODY]])
def test_from_text_refuses_non_text(value):
    with pytest.raises(FormatError):
        ids.from_text(value, "col")


def test_non_canonical_trailing_bits_are_refused():
    # 34 bytes are 272 bits; 55 base32 characters carry 275: the last 3 must be zero
    last = ALPHABET.index(BODY[-1])
    assert last & 0b111 == 0
    for low in range(1, 8):
        text = "col_" + BODY[:-1] + ALPHABET[last | low]
        # the same bytes, spelled another way: a lenient decoder would accept it
        assert base64.b32decode(text[4:].upper() + "=") == ABC
        with pytest.raises(FormatError):
            ids.from_text(text, "col")


def test_kind_of():
    assert ids.kind_of(ABC_TEXT) == "col"
    assert ids.kind_of("ent_" + BODY) == "ent"
    assert ids.kind_of("usr_" + BODY) is None
    assert ids.kind_of("col") is None
    assert ids.kind_of("12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN") is None


@given(raw_ids, kinds)
def test_text_round_trip(raw, kind):
    text = ids.to_text(kind, raw)
    assert text == kind + "_" + _b32(raw)  # agrees with the standard library's base32
    assert len(text) == len(kind) + 1 + 55
    assert ids.from_text(text, kind) == raw
    assert ids.kind_of(text) == kind


@given(raw_ids, kinds, kinds)
def test_text_of_one_kind_is_refused_as_another(raw, kind, other):
    if kind != other:
        with pytest.raises(FormatError):
            ids.from_text(ids.to_text(kind, raw), other)


@given(raw_ids, st.data())
def test_any_changed_character_is_refused_or_names_other_bytes(raw, data):
    text = ids.to_text("blk", raw)
    pos = data.draw(st.integers(4, len(text) - 1))
    char = data.draw(st.characters(codec="ascii").filter(lambda c: c != text[pos]))
    mutated = text[:pos] + char + text[pos + 1 :]
    try:
        other = ids.from_text(mutated, "blk")
    except FormatError:
        return
    assert other != raw
    assert ids.to_text("blk", other) == mutated


@given(digests)
def test_sha256_id_is_the_multihash_of_the_digest(digest):
    assert ids.multihash(digest) == b"\x12\x20" + digest


# --- peer ids ---------------------------------------------------------------------------------

ZERO_SEED_PEER = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"


def _public(seed: bytes) -> bytes:
    import nacl.signing

    return bytes(nacl.signing.SigningKey(seed).verify_key)


def test_known_peer_id():
    public = _public(bytes(32))
    assert ids.peer_id_from_public_key(public) == ZERO_SEED_PEER
    assert ids.public_key_from_peer_id(ZERO_SEED_PEER) == public


@settings(max_examples=25, deadline=None)
@given(seeds)
def test_peer_id_matches_libp2p(seed):
    peer_id = pytest.importorskip("libp2p.peer.id")
    ed25519 = pytest.importorskip("libp2p.crypto.ed25519")
    public = _public(seed)
    theirs = peer_id.ID.from_pubkey(ed25519.Ed25519PublicKey.from_bytes(public)).to_base58()
    assert ids.peer_id_from_public_key(public) == theirs


@given(st.binary(min_size=32, max_size=32))
def test_peer_id_round_trip(public):
    text = ids.peer_id_from_public_key(public)
    assert text.startswith("12D3KooW")
    assert ids.public_key_from_peer_id(text) == public


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_peer_id_needs_a_32_byte_key(size):
    with pytest.raises(FormatError):
        ids.peer_id_from_public_key(bytes(size))


BAD_PEERS = {
    "empty": "",
    "zero (not base58)": ZERO_SEED_PEER[:-1] + "0",
    "capital O (not base58)": ZERO_SEED_PEER[:-1] + "O",
    "capital I (not base58)": ZERO_SEED_PEER[:-1] + "I",
    "small l (not base58)": ZERO_SEED_PEER[:-1] + "l",
    "one character short": ZERO_SEED_PEER[:-1],
    "one character more": ZERO_SEED_PEER + "z",
    "extra leading 1 (zero byte)": "1" + ZERO_SEED_PEER,
    "far too long": "z" * 129,
    # a sha2-256 peer id (RSA keys): Qm…
    "rsa style": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
    "space": " " + ZERO_SEED_PEER,
}


@pytest.mark.parametrize("text", BAD_PEERS.values(), ids=BAD_PEERS.keys())
def test_public_key_from_peer_id_refuses(text):
    with pytest.raises(FormatError):
        ids.public_key_from_peer_id(text)


def test_secp256k1_peer_id_is_refused():
    # protobuf PublicKey{Type: Secp256k1 (2), Data: 33 bytes} in an identity multihash
    raw = bytes((0x00, 0x25, 0x08, 0x02, 0x12, 0x21)) + b"\x02" + bytes(32)
    text = ids._b58encode(raw)
    assert ids._b58decode(text) == raw
    with pytest.raises(FormatError, match="Ed25519"):
        ids.public_key_from_peer_id(text)
