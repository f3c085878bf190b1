"""Encryption of non-public content, and the wrapping of collection keys to readers.

- Block and metadata encryption: ChaCha20-Poly1305 (RFC 8439) through OpenSSL, about five times
  the speed of libsodium's here. Its 12-byte nonce is safe because every item has its own key,
  derived by HKDF-SHA256 from the collection's epoch key and a random 32-byte item salt, and the
  nonce is (purpose, index), never reused under one item key.
- The associated data binds each ciphertext to its collection, its item (the salt) and its
  position (purpose and index): a block moved to another place fails to authenticate.
- Collection keys reach readers wrapped with libsodium's sealed box (crypto_box_seal) to the
  X25519 form of the reader's Ed25519 identity key.
"""

from __future__ import annotations

import hmac
import struct

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.public
import nacl.signing
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import FormatError, IntegrityError

KEY_LEN = 32
SALT_LEN = 32
TAG_LEN = 16
SEALED_KEY_LEN = 32 + 16 + KEY_LEN  # ephemeral public key, MAC, key

# Nonce purposes (first four bytes of the 12-byte nonce).
PURPOSE_BLOCK = 1
PURPOSE_METADATA = 3  # 2 is reserved (manifests are stored in the clear)
PURPOSE_LOG_TEXT = 4

_ITEM_KEY_INFO = b"amanah/v1/item-key"
_LOG_KEY_INFO = b"amanah/v1/log-text-key"
_CHAIN_KEY_INFO = b"amanah/v1/key-chain"
_BLOCK_AD = b"amanah/v1/block"


def hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) for one 32-byte output block: extract, then expand with T(1).

    Written on hmac.digest (two C calls) because the generic HKDF object cost a tenth of a
    small item's ingest; tests check it against `cryptography`'s HKDF.
    """
    prk = hmac.digest(salt or bytes(32), key, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


def item_key(epoch_key: bytes, salt: bytes) -> bytes:
    """The per-item key: HKDF-SHA256(ikm=epoch key, salt=item salt, info="amanah/v1/item-key")."""
    if len(salt) != SALT_LEN:
        raise FormatError("an item salt is 32 bytes")
    return hkdf(epoch_key, salt, _ITEM_KEY_INFO)


def nonce(purpose: int, index: int) -> bytes:
    return struct.pack(">IQ", purpose, index)


def associated_data(collection: bytes, salt: bytes, purpose: int, index: int) -> bytes:
    return _BLOCK_AD + collection + salt + nonce(purpose, index)


class ItemCipher:
    """Encrypts and decrypts the blocks, manifest and metadata of one item."""

    __slots__ = ("_aead", "_collection", "_salt")

    def __init__(self, epoch_key: bytes, collection: bytes, salt: bytes) -> None:
        self._aead = ChaCha20Poly1305(item_key(epoch_key, salt))
        self._collection = collection
        self._salt = salt

    def seal(self, purpose: int, index: int, plaintext: bytes | memoryview) -> bytes:
        ad = associated_data(self._collection, self._salt, purpose, index)
        return self._aead.encrypt(nonce(purpose, index), plaintext, ad)

    def seal_into(self, purpose: int, index: int, plaintext: memoryview, out: memoryview) -> int:
        """Encrypt into `out` (at least len(plaintext) + 16 bytes); returns the bytes written."""
        ad = associated_data(self._collection, self._salt, purpose, index)
        n = len(plaintext) + TAG_LEN
        self._aead.encrypt_into(nonce(purpose, index), plaintext, ad, out[:n])
        return n

    def open(self, purpose: int, index: int, ciphertext: bytes | memoryview) -> bytes:
        ad = associated_data(self._collection, self._salt, purpose, index)
        try:
            return self._aead.decrypt(nonce(purpose, index), ciphertext, ad)
        except InvalidTag:
            raise IntegrityError("ciphertext does not authenticate") from None


# --- short texts in the log (collection names, redaction reasons) -------------------------


def seal_log_text(epoch_key: bytes, context: bytes, text: str) -> bytes:
    """Encrypt a short text carried in a log entry; `context` is unique to that entry's field."""
    aead = ChaCha20Poly1305(hkdf(epoch_key, context, _LOG_KEY_INFO))
    return aead.encrypt(nonce(PURPOSE_LOG_TEXT, 0), text.encode("utf-8"), context)


def open_log_text(epoch_key: bytes, context: bytes, ciphertext: bytes) -> str:
    aead = ChaCha20Poly1305(hkdf(epoch_key, context, _LOG_KEY_INFO))
    try:
        return aead.decrypt(nonce(PURPOSE_LOG_TEXT, 0), ciphertext, context).decode("utf-8")
    except (InvalidTag, UnicodeDecodeError):
        raise IntegrityError("encrypted text does not authenticate") from None


# --- key chain: each new epoch key encrypts the one before it ---------------------------------


def chain_seal(new_key: bytes, previous_key: bytes, collection: bytes, epoch: int) -> bytes:
    aead = ChaCha20Poly1305(hkdf(new_key, collection, _CHAIN_KEY_INFO))
    return aead.encrypt(nonce(0, epoch), previous_key, _CHAIN_KEY_INFO)


def chain_open(new_key: bytes, sealed: bytes, collection: bytes, epoch: int) -> bytes:
    aead = ChaCha20Poly1305(hkdf(new_key, collection, _CHAIN_KEY_INFO))
    try:
        return aead.decrypt(nonce(0, epoch), sealed, _CHAIN_KEY_INFO)
    except InvalidTag:
        raise IntegrityError("key chain does not authenticate") from None


# --- wrapping keys to readers ---------------------------------------------------------------


def x25519_public(ed25519_public: bytes) -> bytes:
    return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ed25519_public)


def x25519_secret(signing_key: nacl.signing.SigningKey) -> nacl.public.PrivateKey:
    return signing_key.to_curve25519_private_key()


def wrap_key(reader_ed25519_public: bytes, key: bytes, ephemeral: bytes | None = None) -> bytes:
    """crypto_box_seal(key) to the reader's X25519 key.

    `ephemeral` fixes the ephemeral secret for known-answer vectors only; in use it is random,
    which makes the result byte-identical to libsodium's crypto_box_seal.
    """
    recipient = x25519_public(reader_ed25519_public)
    if ephemeral is None:
        return nacl.public.SealedBox(nacl.public.PublicKey(recipient)).encrypt(key)
    esk = nacl.public.PrivateKey(ephemeral)
    epk = bytes(esk.public_key)
    box_nonce = nacl.hash.blake2b(epk + recipient, digest_size=24, encoder=nacl.encoding.RawEncoder)
    box = nacl.public.Box(esk, nacl.public.PublicKey(recipient))
    return epk + box.encrypt(key, box_nonce).ciphertext


def unwrap_key(signing_key: nacl.signing.SigningKey, sealed: bytes) -> bytes:
    try:
        key = nacl.public.SealedBox(x25519_secret(signing_key)).decrypt(sealed)
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, TypeError):
        raise IntegrityError("wrapped key does not open with this identity") from None
    if len(key) != KEY_LEN:
        raise IntegrityError("wrapped key has the wrong length")
    return key
