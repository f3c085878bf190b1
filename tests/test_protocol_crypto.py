"""Block and metadata encryption, log texts, the key chain and key wrapping."""

from __future__ import annotations

import hashlib
import hmac
import os

import nacl.bindings
import nacl.public
import nacl.signing
import pytest
from amanah.protocol import crypto, ids
from amanah.protocol.errors import FormatError, IntegrityError
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from .strategies import block_indexes, keys, raw_ids, salts, seeds

COL = ids.sha256_id(b"collection")
OTHER_COL = ids.sha256_id(b"other collection")
KEY = hashlib.sha256(b"epoch key").digest()
SALT = hashlib.sha256(b"salt").digest()
B = crypto.PURPOSE_BLOCK
M = crypto.PURPOSE_METADATA


def rfc5869(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 written out from RFC 5869, independent of the code under test."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def test_hkdf_rfc_5869_test_case_1():
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    assert crypto.hkdf(ikm, salt, info) == okm[:32]


def test_hkdf_rfc_5869_test_case_3_empty_salt_and_info():
    okm = bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )
    assert crypto.hkdf(bytes.fromhex("0b" * 22), b"", b"") == okm[:32]


@given(keys, st.binary(max_size=80), st.binary(max_size=40))
def test_hkdf_matches_cryptography_and_rfc_5869(ikm, salt, info):
    theirs = HKDF(algorithm=SHA256(), length=32, salt=salt or None, info=info).derive(ikm)
    assert crypto.hkdf(ikm, salt, info) == theirs == rfc5869(ikm, salt, info)


def test_item_key_derivation():
    assert crypto.item_key(KEY, SALT) == rfc5869(KEY, SALT, b"amanah/v1/item-key")
    for bad in (b"", SALT[:-1], SALT + b"\0"):
        with pytest.raises(FormatError):
            crypto.item_key(KEY, bad)
    with pytest.raises(FormatError):
        crypto.ItemCipher(KEY, COL, SALT[:16])


def test_nonce_and_associated_data_layout():
    assert crypto.nonce(1, 2) == bytes.fromhex("000000010000000000000002")
    assert crypto.nonce(3, 2**64 - 1) == bytes.fromhex("00000003ffffffffffffffff")
    ad = crypto.associated_data(COL, SALT, 1, 7)
    assert ad == b"amanah/v1/block" + COL + SALT + bytes.fromhex("000000010000000000000007")


@settings(deadline=None)
@given(keys, raw_ids, salts, st.sampled_from([B, M]), block_indexes, st.binary(max_size=300))
def test_seal_matches_libsodium_and_opens(key, col, salt, purpose, index, plaintext):
    cipher = crypto.ItemCipher(key, col, salt)
    sealed = cipher.seal(purpose, index, plaintext)
    assert len(sealed) == len(plaintext) + crypto.TAG_LEN
    # an independent ChaCha20-Poly1305 (libsodium's IETF variant) gives the same bytes
    theirs = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
        plaintext,
        crypto.associated_data(col, salt, purpose, index),
        crypto.nonce(purpose, index),
        crypto.item_key(key, salt),
    )
    assert sealed == theirs
    assert cipher.open(purpose, index, sealed) == plaintext
    assert cipher.open(purpose, index, memoryview(sealed)) == plaintext


@given(st.binary(max_size=300), block_indexes)
def test_seal_into_writes_the_same_bytes(plaintext, index):
    cipher = crypto.ItemCipher(KEY, COL, SALT)
    out = memoryview(bytearray(len(plaintext) + crypto.TAG_LEN + 5))
    n = cipher.seal_into(B, index, memoryview(plaintext), out)
    assert n == len(plaintext) + crypto.TAG_LEN
    assert bytes(out[:n]) == cipher.seal(B, index, plaintext)


SEALED = crypto.ItemCipher(KEY, COL, SALT).seal(B, 3, b"block three of an item")


@pytest.mark.parametrize(
    ("why", "key", "col", "salt", "purpose", "index"),
    [
        ("moved to another index", KEY, COL, SALT, B, 4),
        ("moved to index 0", KEY, COL, SALT, B, 0),
        ("moved to another item (salt)", KEY, COL, hashlib.sha256(b"other").digest(), B, 3),
        ("moved to another collection", KEY, OTHER_COL, SALT, B, 3),
        ("read as metadata", KEY, COL, SALT, M, 3),
        ("read as a log text", KEY, COL, SALT, crypto.PURPOSE_LOG_TEXT, 3),
        ("another epoch's key", hashlib.sha256(b"epoch 1").digest(), COL, SALT, B, 3),
    ],
)
def test_a_block_out_of_place_does_not_authenticate(why, key, col, salt, purpose, index):
    assert crypto.ItemCipher(KEY, COL, SALT).open(B, 3, SEALED)  # in place it opens
    with pytest.raises(IntegrityError):
        crypto.ItemCipher(key, col, salt).open(purpose, index, SEALED)


def test_truncated_or_extended_ciphertext_does_not_authenticate():
    cipher = crypto.ItemCipher(KEY, COL, SALT)
    for n in range(len(SEALED)):
        with pytest.raises(IntegrityError):
            cipher.open(B, 3, SEALED[:n])
    with pytest.raises(IntegrityError):
        cipher.open(B, 3, SEALED + b"\0")
    with pytest.raises(IntegrityError):
        cipher.open(B, 3, SEALED[1:])


def test_every_bit_flip_of_a_block_is_detected():
    cipher = crypto.ItemCipher(KEY, COL, SALT)
    data = bytearray(SEALED)
    for pos in range(len(data)):
        for bit in range(8):
            data[pos] ^= 1 << bit
            with pytest.raises(IntegrityError):
                cipher.open(B, 3, bytes(data))
            data[pos] ^= 1 << bit


@given(st.binary(min_size=1, max_size=100), block_indexes, st.data())
def test_swapped_blocks_of_one_item_do_not_authenticate(plaintext, index, data):
    cipher = crypto.ItemCipher(KEY, COL, SALT)
    other = data.draw(block_indexes.filter(lambda i: i != index))
    with pytest.raises(IntegrityError):
        cipher.open(B, other, cipher.seal(B, index, plaintext))


def test_same_plaintext_differs_across_items_and_positions():
    a = crypto.ItemCipher(KEY, COL, SALT)
    b = crypto.ItemCipher(KEY, COL, os.urandom(32))
    texts = {a.seal(B, 0, b"x" * 32), a.seal(B, 1, b"x" * 32), b.seal(B, 0, b"x" * 32)}
    assert len(texts) == 3


# --- log texts ----------------------------------------------------------------------------------


def test_log_text_round_trip_and_binding():
    context = b"amanah/v1/redact-reason" + COL + (5).to_bytes(8, "big")
    sealed = crypto.seal_log_text(KEY, context, "سبب: witness withdrew")
    assert b"witness" not in sealed
    assert crypto.open_log_text(KEY, context, sealed) == "سبب: witness withdrew"
    for key, ctx, data in (
        (os.urandom(32), context, sealed),
        (KEY, context[:-1] + b"\x06", sealed),
        (KEY, b"", sealed),
        (KEY, context, sealed[:-1]),
        (KEY, context, bytes([sealed[0] ^ 1]) + sealed[1:]),
    ):
        with pytest.raises(IntegrityError):
            crypto.open_log_text(key, ctx, data)


def test_log_text_that_is_not_utf8_is_refused():
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    context = b"ctx"
    aead = ChaCha20Poly1305(crypto.hkdf(KEY, context, b"amanah/v1/log-text-key"))
    sealed = aead.encrypt(crypto.nonce(crypto.PURPOSE_LOG_TEXT, 0), b"\xff\xfe", context)
    with pytest.raises(IntegrityError):
        crypto.open_log_text(KEY, context, sealed)


@given(keys, st.binary(max_size=60), st.text(max_size=100))
def test_log_text_property(key, context, text):
    assert crypto.open_log_text(key, context, crypto.seal_log_text(key, context, text)) == text


# --- key chain ----------------------------------------------------------------------------------


@given(keys, keys, raw_ids, st.integers(1, 2**32))
def test_key_chain_round_trip_and_binding(new, previous, col, epoch):
    sealed = crypto.chain_seal(new, previous, col, epoch)
    assert len(sealed) == crypto.KEY_LEN + crypto.TAG_LEN
    assert crypto.chain_open(new, sealed, col, epoch) == previous
    with pytest.raises(IntegrityError):
        crypto.chain_open(new, sealed, col, epoch + 1)  # another epoch
    with pytest.raises(IntegrityError):
        crypto.chain_open(new, sealed, OTHER_COL if col != OTHER_COL else COL, epoch)
    if previous != new:
        with pytest.raises(IntegrityError):
            crypto.chain_open(previous, sealed, col, epoch)  # the old key opens nothing newer


# --- key wrapping -------------------------------------------------------------------------------


READER = nacl.signing.SigningKey(hashlib.sha256(b"reader").digest())
OTHER = nacl.signing.SigningKey(hashlib.sha256(b"other").digest())


def test_x25519_forms_agree():
    public = bytes(READER.verify_key)
    assert crypto.x25519_public(public) == bytes(crypto.x25519_secret(READER).public_key)


def test_wrap_and_unwrap():
    public = bytes(READER.verify_key)
    sealed = crypto.wrap_key(public, KEY)
    assert len(sealed) == crypto.SEALED_KEY_LEN
    assert crypto.unwrap_key(READER, sealed) == KEY
    assert crypto.wrap_key(public, KEY) != sealed  # a fresh ephemeral key every time
    with pytest.raises(IntegrityError):
        crypto.unwrap_key(OTHER, sealed)
    for bad in (sealed[:-1], sealed + b"\0", bytes([sealed[40] ^ 1]) + sealed[1:], b""):
        with pytest.raises(IntegrityError):
            crypto.unwrap_key(READER, bad)


def test_wrapped_key_of_the_wrong_length_is_refused():
    sealed = nacl.public.SealedBox(
        nacl.public.PublicKey(crypto.x25519_public(bytes(READER.verify_key)))
    ).encrypt(KEY[:16])
    with pytest.raises(IntegrityError, match="length"):
        crypto.unwrap_key(READER, sealed)


@settings(deadline=None)
@given(seeds, keys, seeds)
def test_fixed_ephemeral_wrap_is_a_standard_sealed_box(reader_seed, key, ephemeral):
    reader = nacl.signing.SigningKey(reader_seed)
    sealed = crypto.wrap_key(bytes(reader.verify_key), key, ephemeral)
    assert sealed == crypto.wrap_key(bytes(reader.verify_key), key, ephemeral)  # deterministic
    assert sealed[:32] == bytes(nacl.public.PrivateKey(ephemeral).public_key)
    # libsodium's own crypto_box_seal_open (not our unwrap) opens it
    secret = crypto.x25519_secret(reader)
    assert nacl.public.SealedBox(secret).decrypt(sealed) == key
    assert crypto.unwrap_key(reader, sealed) == key
