"""The identity file and the identity backup (SPEC 9): what the writers produce reads back, and the
readers refuse whatever the structures do not define (closed maps, 1.2; type-exact integers).

Crafted files are sealed with libsodium's minimum Argon2id cost so the refusals stay fast; a
reader accepts any cost within 9.1's limits, as the first tests show.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.pwhash
import pytest
from amanah.node import identity as identity_mod
from amanah.node.errors import HomeError, InvalidInput
from amanah.node.identity import Backup, Identity
from amanah.protocol import cbor

PW = "a passphrase"
FAST = (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)
DROP = object()  # in a `changes` map: remove the key


def _peer() -> dict:
    return {
        "peer_id": Identity.generate().peer_id,
        "name": "partner",
        "addrs": ["/ip4/127.0.0.1/tcp/4710"],
        "role": "partner",
    }


def _apply(value: dict, changes: dict | None) -> dict:
    for key, new in (changes or {}).items():
        if new is DROP:
            del value[key]
        else:
            value[key] = new
    return value


def identity_bytes(ident: Identity, sealed: bool, changes: dict | None = None) -> bytes:
    record: dict[str, Any] = {"v": 1, "public": ident.public_key}
    if sealed:
        record.update(identity_mod._seal(ident.seed, PW, FAST))
    else:
        record.update({"kdf": "none", "secret": ident.seed})
    return cbor.encode(_apply(record, changes))


def backup_bytes(
    ident: Identity, payload_changes: dict | None = None, changes: dict | None = None
) -> bytes:
    payload = _apply({"seed": ident.seed, "name": "node", "peers": [_peer()]}, payload_changes)
    record = {"v": 1, "tag": identity_mod.BACKUP_TAG, "public": ident.public_key}
    record.update(identity_mod._seal(cbor.encode(payload), PW, FAST))
    return cbor.encode(_apply(record, changes))


def assert_refused(read: Callable[[], object], path: Path, error: type, *needles: str) -> None:
    """`read` raises `error` with a one-line message holding `needles`; the file is untouched."""
    before, stat = path.read_bytes(), path.stat()
    with pytest.raises(error) as info:
        read()
    message = str(info.value)
    assert "\n" not in message and type(info.value) is error, message
    for needle in needles:
        assert needle in message, message
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def refused_as_identity(path: Path, *needles: str) -> None:
    for read in (
        lambda: identity_mod.read_public_key(path),
        lambda: identity_mod.is_encrypted(path),
        lambda: identity_mod.load_identity(path, PW),
    ):
        assert_refused(read, path, HomeError, "is damaged or not an Amanah identity", *needles)


def refused_as_backup(path: Path, *needles: str) -> None:
    assert_refused(lambda: identity_mod.read_backup(path, PW), path, InvalidInput, *needles)


@pytest.fixture
def file(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    return folder / "f"


# --- what the writers produce, and well-formed crafted files, read back -------------------------


@pytest.mark.parametrize("passphrase", [PW, None])
def test_written_identity_reads_back(file, passphrase):
    ident = Identity.generate()
    identity_mod.write_identity(file, ident, passphrase)
    assert identity_mod.read_public_key(file) == ident.public_key
    assert identity_mod.is_encrypted(file) is (passphrase is not None)
    assert identity_mod.load_identity(file, passphrase).seed == ident.seed


def test_written_backup_reads_back(file):
    ident, peers = Identity.generate(), [_peer(), _peer()]
    identity_mod.write_backup(file, Backup(ident, "My node", peers), PW)
    back = identity_mod.read_backup(file, PW)
    assert (back.identity.seed, back.name, back.peers) == (ident.seed, "My node", peers)


@pytest.mark.parametrize("sealed", [True, False])
def test_crafted_identity_file_reads_back(file, sealed):
    ident = Identity.generate()
    file.write_bytes(identity_bytes(ident, sealed))
    assert identity_mod.load_identity(file, PW).seed == ident.seed


def test_crafted_backup_reads_back(file):
    ident = Identity.generate()
    file.write_bytes(backup_bytes(ident))
    assert identity_mod.read_backup(file, PW).identity.seed == ident.seed


# --- the identity file (9.2) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "sealed, key",
    [
        (True, "x"),
        (False, "x"),
        (True, "tag"),
        (False, "tag"),
        (True, "secret"),  # a key of the other variant
        (False, "salt"),
        (False, "box"),
    ],
)
def test_identity_file_refuses_an_undefined_key(file, sealed, key):
    file.write_bytes(identity_bytes(Identity.generate(), sealed, {key: b"\x00" * 16}))
    refused_as_identity(file, f"undefined key {key!r}")


@pytest.mark.parametrize("v", [True, 2, 0, "1", DROP])
@pytest.mark.parametrize("sealed", [True, False])
def test_identity_file_version_must_be_the_integer_1(file, v, sealed):
    file.write_bytes(identity_bytes(Identity.generate(), sealed, {"v": v}))
    refused_as_identity(file, "unknown format")


@pytest.mark.parametrize(
    "changes",
    [
        {"ops": True},
        {"mem": True},
        {"ops": 5},
        {"ops": 0},
        {"mem": 0},
        {"mem": 8191},
        {"mem": (1 << 30) + 1},
    ],
    ids=repr,
)
def test_identity_file_kdf_parameters_must_be_integers_in_range(file, changes):
    file.write_bytes(identity_bytes(Identity.generate(), True, changes))
    refused_as_identity(file, "key-stretching parameters out of range")


@pytest.mark.parametrize(
    "sealed, changes, needle",
    [
        (True, {"salt": DROP}, "missing 'salt'"),
        (True, {"box": DROP}, "missing 'box'"),
        (True, {"ops": DROP}, "missing 'ops'"),
        (True, {"salt": b"\x00" * 15}, "bad salt"),
        (True, {"box": "text"}, "no sealed key"),
        (True, {"box": b"\x00" * 71}, "wrong length (71 bytes)"),
        (True, {"box": b"\x00" * 73}, "wrong length (73 bytes)"),
        (True, {"kdf": "scrypt"}, "unknown key protection"),
        (True, {"public": DROP}, "missing 'public'"),
        (False, {"secret": DROP}, "missing 'secret'"),
        (False, {"secret": b"\x00" * 31}, "no key"),
        (False, {"public": b"\x00" * 31}, "no public key"),
    ],
)
def test_identity_file_refuses_missing_or_mistyped_fields(file, sealed, changes, needle):
    file.write_bytes(identity_bytes(Identity.generate(), sealed, changes))
    refused_as_identity(file, needle)


def test_identity_file_refuses_a_backup(file):
    file.write_bytes(backup_bytes(Identity.generate()))
    refused_as_identity(file, "undefined key 'tag'")


# --- the identity backup (9.3) ------------------------------------------------------------------


def test_backup_refuses_an_undefined_key(file):
    file.write_bytes(backup_bytes(Identity.generate(), changes={"note": "x"}))
    refused_as_backup(file, "is damaged or not an Amanah backup", "undefined key 'note'")


def test_backup_shows_a_long_undefined_key_on_one_line(file):
    file.write_bytes(backup_bytes(Identity.generate(), changes={"a\n" * 1000: 1}))
    refused_as_backup(file, "undefined key 'a\\na\\n")


@pytest.mark.parametrize("v", [True, 2, DROP])
def test_backup_version_must_be_the_integer_1(file, v):
    file.write_bytes(backup_bytes(Identity.generate(), changes={"v": v}))
    refused_as_backup(file, "unknown format")


@pytest.mark.parametrize("changes", [{"ops": True}, {"mem": True}], ids=repr)
def test_backup_kdf_parameters_must_be_integers(file, changes):
    file.write_bytes(backup_bytes(Identity.generate(), changes=changes))
    refused_as_backup(file, "key-stretching parameters out of range")


def test_backup_box_too_short_to_hold_anything_is_damage(file):
    file.write_bytes(backup_bytes(Identity.generate(), changes={"box": b"\x00" * 40}))
    refused_as_backup(file, "wrong length (40 bytes)")


def test_backup_refuses_an_identity_file(file):
    file.write_bytes(identity_bytes(Identity.generate(), True))
    refused_as_backup(file, "not an Amanah identity backup")
    file.unlink()
    file.write_bytes(identity_bytes(Identity.generate(), False, {"tag": identity_mod.BACKUP_TAG}))
    refused_as_backup(file, "not a passphrase-protected Amanah identity backup")


def test_backup_payload_refuses_an_undefined_key(file):
    file.write_bytes(backup_bytes(Identity.generate(), {"created": 1}))
    refused_as_backup(file, "is damaged: undefined key 'created'")


@pytest.mark.parametrize("key", ["peers", "name", "seed"])
def test_backup_payload_requires_every_field(file, key):
    file.write_bytes(backup_bytes(Identity.generate(), {key: DROP}))
    refused_as_backup(file, f"is damaged: missing {key!r}")


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"peers": {}}, "bad peers"),
        ({"peers": None}, "bad peers"),
        ({"name": b"node"}, "bad name"),
        ({"seed": b"\x00" * 31}, "bad seed"),
    ],
    ids=repr,
)
def test_backup_payload_refuses_mistyped_fields(file, changes, needle):
    file.write_bytes(backup_bytes(Identity.generate(), changes))
    refused_as_backup(file, needle)


def test_backup_keeps_peer_elements_it_cannot_use_for_the_restorer_to_skip(file):
    """9.3: an unusable element of `peers` is skipped and reported, never a reason to refuse."""
    odd = [_peer(), 7, "text", None, {"peer_id": "nope"}, {**_peer(), "extra": 1}, {}]
    file.write_bytes(backup_bytes(Identity.generate(), {"peers": odd}))
    assert identity_mod.read_backup(file, PW).peers == odd
