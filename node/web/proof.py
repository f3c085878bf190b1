"""The proof that a file is authentic, and the exact steps to check it without trusting the mirror.

The chain an investigator checks: the file's SHA-256 is named in the item record (meta.sha256);
the item id is the SHA-256 multihash of the record's bytes; the owner's log entry at position N
names that item id (alone, or in the list of a batch added together) and is signed by the
owner's Ed25519 key, which is inside the owner's libp2p peer ID. The script below checks every
link from the three files (original, record, entry) and the peer ID alone: it needs nothing from
this mirror, so a compromised mirror cannot fake a pass.
"""

from __future__ import annotations

from amanah.protocol import ids
from amanah.protocol.log import ENTRY_TAG, ENTRY_VERSION

from .catalog import ItemDetail, rfc3339_ms

SCRIPT = """\
# verify_amanah.py ORIGINAL record.cbor entry.cbor   (pip install cbor2 pynacl)
import hashlib, sys
import cbor2, nacl.signing
PEER_ID = "{peer_id}"  # the owner: confirm it with them through another channel
ITEM_ID = bytes.fromhex("{item_hex}")  # {item_id}
FILE_SHA256 = "{sha256}"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
n = 0
for c in PEER_ID:
    n = n * 58 + B58.index(c)
peer = n.to_bytes(38, "big")  # identity multihash of a protobuf Ed25519 public key
assert peer[:6] == bytes.fromhex("002408011220"), "not an Ed25519 peer ID"
owner_key = peer[6:]
with open(sys.argv[1], "rb") as f:
    assert hashlib.file_digest(f, "sha256").hexdigest() == FILE_SHA256, "the file differs"
record = open(sys.argv[2], "rb").read()
assert bytes.fromhex("1220") + hashlib.sha256(record).digest() == ITEM_ID, "not this record"
assert cbor2.loads(record)["meta"]["sha256"] == FILE_SHA256, "the record names another file"
entry = cbor2.loads(open(sys.argv[3], "rb").read())
body = entry["body"]
named = [body["item"]] if "item" in body else body.get("items", [])  # one item, or a batch
assert body["type"] == "item" and ITEM_ID in named, "the entry does not name this item"
signed = cbor2.dumps(["{tag}", {version}, body], canonical=True)
nacl.signing.VerifyKey(owner_key).verify(signed, entry["sig"])  # raises if forged
print("OK: signed by", PEER_ID, "at position", body["seq"], "of", body["col"].hex())
"""


def script(detail: ItemDetail) -> str:
    return SCRIPT.format(
        peer_id=detail.owner_peer_id,
        item_hex=detail.record.id.hex(),
        item_id=detail.view.id,
        sha256=detail.view.sha256,
        tag=ENTRY_TAG,
        version=ENTRY_VERSION,
    )


def shell_name(filename: str) -> str:
    """The original's name as one shell word (single-quoted), for the sha256sum line."""
    from ..items import safe_filename

    return "'" + safe_filename(filename).replace("'", "'\\''") + "'"


def commands(detail: ItemDetail, base: str) -> dict[str, str]:
    """The command lines of each step, for a mirror reached at `base` (scheme://host)."""
    item = detail.view.id
    name = shell_name(detail.view.filename)
    return {
        "download": f"curl -o {name} {base}/api/v1/items/{item}/content",
        "sha256sum": f"sha256sum {name}",
        "record": f"curl -o record.cbor {base}/api/v1/items/{item}/record",
        "record_sha256sum": "sha256sum record.cbor",
        "entry": f"curl -o entry.cbor {base}/api/v1/items/{item}/entry",
        "script": f"python3 verify_amanah.py {name} record.cbor entry.cbor",
    }


def document(detail: ItemDetail, base: str) -> dict:
    """The provenance and verification part of an item's JSON."""
    entry = detail.entry
    cmds = commands(detail, base)
    return {
        "owner": {
            "peer_id": detail.owner_peer_id,
            "name": detail.owner_name,
            "public_key": detail.owner.hex(),
        },
        "log": {
            "collection": detail.view.collection,
            "position": entry.seq,
            "entry_id": ids.to_text("ent", entry.id),
            "signature": entry.signature.hex(),
            "signed_at": rfc3339_ms(entry.body["at"]),
            "signed_bytes": f'deterministic CBOR of ["{ENTRY_TAG}", {ENTRY_VERSION}, body]',
        },
        "record_sha256": detail.record_sha256,
        "verify": {
            "steps": [
                f"{cmds['download']} && {cmds['sha256sum']}: the printed hash must be "
                f"{detail.view.sha256}",
                f"{cmds['record']} && {cmds['record_sha256sum']}: the printed hash must be "
                f"{detail.record_sha256} (the item id is its multihash); the record's "
                "meta.sha256 names the original",
                f"{cmds['entry']}: a CBOR map {{body, sig}}; sig is the owner's Ed25519 "
                f'signature over the deterministic CBOR of ["{ENTRY_TAG}", {ENTRY_VERSION}, '
                "body]; body.item is the item id (or body.items, for a batch added together, "
                "lists it) and body.seq is the log position",
                f"{cmds['script']}: checks all of the above with the key inside the owner's "
                "peer ID; confirm that peer ID with the owner through another channel",
            ],
            "commands": cmds,
            "script": script(detail),
        },
    }
