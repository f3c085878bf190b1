"""The node's identity: one Ed25519 key, its libp2p peer id, kept encrypted under a passphrase.

The seed is sealed with SecretBox (XSalsa20-Poly1305) under a key stretched from the passphrase
by Argon2id; the file also carries the public key in the clear so `amanah id` works locked.
An identity backup is the same construction over the seed, the node's name and its peers:
with the partners still alive, it is all a node needs to come back after a seizure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils
from amanah.protocol import cbor, ids
from amanah.protocol.errors import FormatError

from .errors import HomeError, InvalidInput, PassphraseError

IDENTITY_VERSION = 1
BACKUP_TAG = "amanah/identity-backup"
MAX_IDENTITY_FILE = 1 << 20

# Unlocking happens on every command that signs or decrypts: ~0.1 s and 64 MiB is the
# interactive setting. A backup travels (USB sticks, other countries), so it pays for more.
HOME_KDF = (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
BACKUP_KDF = (nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)
_MAX_OPS = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
_MAX_MEM = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE
_MIN_MEM = nacl.pwhash.argon2id.MEMLIMIT_MIN  # 8,192: libsodium refuses less
_BOX_OVERHEAD = nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES  # 24 + 16

# The closed key sets of SPEC 9 (1.2: a reader refuses a key the structure does not define).
_SEALED_KEYS = frozenset({"kdf", "ops", "mem", "salt", "box"})  # 9.1 sealed-fields
_PLAIN_KEYS = frozenset({"kdf", "secret"})  # 9.2, "kdf": "none"
_IDENTITY_KEYS = frozenset({"v", "public"})  # 9.2 identity-file and 9.3 backup-file (+ "tag")
_PAYLOAD_KEYS = frozenset({"seed", "name", "peers"})  # 9.3 backup-payload, all required


@dataclass(frozen=True)
class Identity:
    signing_key: nacl.signing.SigningKey

    @classmethod
    def generate(cls) -> Identity:
        return cls(nacl.signing.SigningKey.generate())

    @property
    def seed(self) -> bytes:
        return bytes(self.signing_key)

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def peer_id(self) -> str:
        return ids.peer_id_from_public_key(self.public_key)


@dataclass
class Backup:
    """What an identity backup restores: the key, the node's name and the peers it trusted."""

    identity: Identity
    name: str
    # Written from `peers.Peer.as_dict()`. As read, elements are kept as they are, maps or not:
    # the restorer skips and reports each one it cannot use, it never refuses the backup (9.3).
    peers: list[Any] = field(default_factory=list)


# --- sealing under a passphrase ---------------------------------------------------------------


def _kdf(passphrase: str, salt: bytes, ops: int, mem: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase.encode("utf-8"), salt, opslimit=ops, memlimit=mem
    )


def _seal(secret: bytes, passphrase: str, params: tuple[int, int]) -> dict:
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_kdf(passphrase, salt, *params))
    return {
        "kdf": "argon2id",
        "ops": params[0],
        "mem": params[1],
        "salt": salt,
        "box": box.encrypt(secret),
    }


def _open(record: dict, passphrase: str | None, what: str) -> bytes:
    """The secret of a record `_read_record` accepted (its fields checked there, 9.1).
    PassphraseError if the passphrase is missing or wrong."""
    if record.get("kdf") == "none":
        return record["secret"]
    if passphrase is None:
        raise PassphraseError(
            f"{what} is protected by a passphrase: set AMANAH_PASSPHRASE, use --passphrase-file, "
            "or run in a terminal to be asked"
        )
    ops, mem, salt = record["ops"], record["mem"], record["salt"]
    try:
        return nacl.secret.SecretBox(_kdf(passphrase, salt, ops, mem)).decrypt(record["box"])
    except (nacl.exceptions.CryptoError, TypeError, ValueError):
        raise PassphraseError(f"wrong passphrase for {what}") from None


def _check_sealed(record: dict, secret_size: int | None = None) -> None:
    """9.1: integers (not booleans) in range, a 16-byte salt and a box long enough (exactly
    `secret_size` sealed, if given), before running Argon2id: a damaged file is reported as
    damaged, not as a wrong passphrase."""
    ops, mem = record.get("ops"), record.get("mem")
    in_range = type(ops) is int and 0 < ops <= _MAX_OPS
    if not (in_range and type(mem) is int and _MIN_MEM <= mem <= _MAX_MEM):
        raise FormatError("key-stretching parameters out of range")
    salt = record.get("salt")
    if not isinstance(salt, bytes) or len(salt) != nacl.pwhash.argon2id.SALTBYTES:
        raise FormatError("bad salt")
    box = record.get("box")
    if not isinstance(box, bytes):
        raise FormatError("no sealed key")
    if len(box) <= _BOX_OVERHEAD or (secret_size and len(box) != _BOX_OVERHEAD + secret_size):
        raise FormatError(f"the sealed key has the wrong length ({len(box)} bytes)")


def _check_keys(value: dict, keys: frozenset[str], optional: frozenset[str] = frozenset()) -> None:
    """Refuse a map with a key outside `keys | optional`, or without one of `keys` (1.2)."""
    for key in sorted(value):
        if key not in keys and key not in optional:
            shown = key if len(key) <= 40 else key[:40] + "…"
            raise FormatError(f"undefined key {shown!r}")
    for key in sorted(keys):
        if key not in value:
            raise FormatError(f"missing {key!r}")


# --- the identity file in a home ----------------------------------------------------------------


def write_identity(path: Path, identity: Identity, passphrase: str | None) -> None:
    """Create the identity file (0600). Refuses to replace an existing one."""
    if passphrase is None:
        sealed = {"kdf": "none", "secret": identity.seed}
    else:
        sealed = _seal(identity.seed, passphrase, HOME_KDF)
    record = {"v": IDENTITY_VERSION, "public": identity.public_key, **sealed}
    _write_new(path, cbor.encode(record))


def read_public_key(path: Path) -> bytes:
    return _read_record(path, "identity")["public"]


def load_identity(path: Path, passphrase: str | None) -> Identity:
    record = _read_record(path, "identity")
    seed = _open(record, passphrase, "the node identity")  # its fields checked by _read_record
    identity = _identity_from_seed(seed, "identity")
    if identity.public_key != record["public"]:
        raise HomeError(f"identity file {path} is damaged (key does not match)")
    return identity


def is_encrypted(path: Path) -> bool:
    return _read_record(path, "identity").get("kdf") != "none"


def _identity_from_seed(seed: object, what: str) -> Identity:
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise HomeError(f"{what} is damaged (bad seed)")
    return Identity(nacl.signing.SigningKey(seed))


def _read_record(path: Path, what: str, backup: bool = False) -> dict:
    """Read an identity file (9.2) or, with `backup`, the outer map of a backup (9.3), whose
    `tag` the caller checks. HomeError, naming `what`, if it is missing or does not follow 9."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_IDENTITY_FILE + 1)
    except FileNotFoundError:
        raise HomeError(f"{what} file {path} is missing") from None
    except OSError as exc:
        raise HomeError(f"cannot read {what} file {path}: {exc.strerror}") from None
    try:
        record = cbor.decode(raw, MAX_IDENTITY_FILE)
        if not isinstance(record, dict):
            raise FormatError("unknown format")
        v = record.get("v")
        if not (type(v) is int and v == IDENTITY_VERSION):  # `true` == 1 in Python
            raise FormatError("unknown format")
        kdf = record.get("kdf")
        if kdf not in ("none", "argon2id"):
            raise FormatError("unknown key protection")
        sealed = _SEALED_KEYS if kdf == "argon2id" else _PLAIN_KEYS
        if backup:
            _check_keys(record, _IDENTITY_KEYS | sealed, optional=frozenset({"tag"}))
        else:
            _check_keys(record, _IDENTITY_KEYS | sealed)
        if not isinstance(record["public"], bytes) or len(record["public"]) != 32:
            raise FormatError("no public key")
        if kdf == "argon2id":
            _check_sealed(record, None if backup else 32)  # a home's identity seals its seed
        elif not isinstance(record["secret"], bytes) or len(record["secret"]) != 32:
            raise FormatError("no key")
    except FormatError as exc:
        raise HomeError(f"{what} file {path} is damaged or not an Amanah {what}: {exc}") from None
    return record


def _write_new(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if `path` exists: an identity is never overwritten
    except FileExistsError:
        raise HomeError(f"{path} already exists; refusing to overwrite an identity") from None
    finally:
        tmp.unlink(missing_ok=True)


# --- backups ------------------------------------------------------------------------------------


def write_backup(path: Path, backup: Backup, passphrase: str) -> None:
    if not passphrase:
        raise InvalidInput("an identity backup needs a passphrase")
    payload = cbor.encode(
        {"seed": backup.identity.seed, "name": backup.name, "peers": backup.peers}
    )
    record = {"v": IDENTITY_VERSION, "tag": BACKUP_TAG, "public": backup.identity.public_key}
    record.update(_seal(payload, passphrase, BACKUP_KDF))
    try:
        _write_new(path, cbor.encode(record))
    except HomeError:
        raise InvalidInput(f"{path} already exists; choose another file name") from None
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None


def read_backup(path: Path, passphrase: str | None) -> Backup:
    """Open a backup (9.3). InvalidInput if it does not follow 9, PassphraseError if the
    passphrase is missing or wrong. `peers` elements are not checked here (see `Backup`)."""
    try:
        record = _read_record(path, "backup", backup=True)
    except HomeError as exc:
        raise InvalidInput(str(exc)) from None
    if record.get("tag") != BACKUP_TAG:
        raise InvalidInput(f"{path} is not an Amanah identity backup")
    if record["kdf"] != "argon2id":
        raise InvalidInput(f"{path} is not a passphrase-protected Amanah identity backup")
    try:
        payload = cbor.decode(_open(record, passphrase, "the backup"), MAX_IDENTITY_FILE)
        if not isinstance(payload, dict):
            raise FormatError("bad payload")
        _check_keys(payload, _PAYLOAD_KEYS)
        if not isinstance(payload["name"], str):
            raise FormatError("bad name")
        peers = payload["peers"]
        if not isinstance(peers, list):
            raise FormatError("bad peers")
        identity = _identity_from_seed(payload["seed"], "backup")
    except (FormatError, HomeError) as exc:
        raise InvalidInput(f"backup {path} is damaged: {exc}") from None
    if identity.public_key != record["public"]:
        raise InvalidInput(f"backup {path} is damaged (key does not match)")
    return Backup(identity, payload["name"], peers)
