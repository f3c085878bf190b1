"""Damage done to a home's LMDB directly (with the `lmdb` package, as an attacker or a failing
disk would) is found by `verify` and refused by `get`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cbor2
import nacl.signing
import pytest
from amanah.protocol import ids, log
from amanah.protocol import item as item_mod

from tests.conftest import Cli
from tests.nodeutil import MiB, blk_text, clone, open_store, run_bytes

BIG = MiB + 70_000  # two blocks, the first stored as 17 LMDB values


@dataclass
class Archive:
    cli: Cli
    pub: str  # collection ids
    sec: str
    items: dict[str, str]  # a, b, c in "pub"; d in "sec" -> item id
    data: dict[str, bytes]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    base = tmp_path_factory.mktemp("integrity")
    cli = Cli(base / "home", base / "work")
    cli.cwd.mkdir()
    cli.ok("init")
    pub = cli.ok("collection", "create", "pub", "--tier", "public", "--json").json()["id"]
    sec = cli.ok("collection", "create", "sec", "--tier", "closed", "--json").json()["id"]
    data = {
        "a": os.urandom(5_000),
        "b": os.urandom(BIG),
        "c": os.urandom(700),
        "d": os.urandom(BIG),
    }
    for name, content in data.items():
        (cli.cwd / f"{name}.bin").write_bytes(content)
    added = []
    for name in "abc":  # one add each: one log entry each, the positions the tests tamper with
        added += cli.ok("add", "pub", f"{name}.bin", "--json").json()
    added += cli.ok("add", "sec", "d.bin", "--json").json()
    for f in data:
        (cli.cwd / f"{f}.bin").unlink()
    return Archive(cli, pub, sec, dict(zip("abcd", (a["id"] for a in added), strict=True)), data)


@pytest.fixture
def archive(template: Archive, tmp_path: Path) -> Archive:
    return Archive(
        clone(template.cli, tmp_path), template.pub, template.sec, template.items, template.data
    )


def verify_fails(cli: Cli, *target: str) -> list[dict]:
    r = cli("verify", *target, "--json")
    assert r.code == 1, f"verify {target} should fail: {r.out} {r.err}"
    assert "Traceback" not in r.err
    report = r.json()
    assert report["ok"] is False and report["damaged"]
    return report["damaged"]


def get_refused(cli: Cli, item: str) -> str:
    r = cli("get", item, "-o", "out.bin")
    assert r.code == 1 and r.err.startswith("error: ") and "Traceback" not in r.err, r.err
    assert not (cli.cwd / "out.bin").exists()
    assert not [p.name for p in cli.cwd.iterdir() if "partial" in p.name or p.name.startswith(".")]
    piped = run_bytes(cli, "get", item, "-o", "-")
    assert piped.returncode == 1 and piped.stdout == b""  # nothing unverified reaches the pipe
    return r.err


def record_blocks(home: Path, item: str) -> list[bytes]:
    with open_store(home) as (txn, dbs):
        record = item_mod.parse_record(
            bytes(txn.get(ids.from_text(item, "itm"), db=dbs["records"]))
        )
    return record.inline_blocks()


def log_key(collection: str, seq: int) -> bytes:
    return ids.from_text(collection, "col") + seq.to_bytes(8, "big")


def test_untouched_archive_verifies(archive):
    report = archive.cli.ok("verify", "--json").json()
    assert report["ok"] is True
    assert report["checked"] == {
        "collections": 2,
        "entries": 6,
        "items": 4,
        "blocks": 6,
        "bytes": 5_000 + BIG + 700 + BIG + 2 * 16,
    }


@pytest.mark.parametrize("which", ["b", "d"], ids=["public", "closed"])
def test_flipped_byte_in_a_block(archive, which):
    cli, item = archive.cli, archive.items[which]
    first = record_blocks(cli.home, item)[0]
    with open_store(cli.home, write=True) as (txn, dbs):
        key = first + (5).to_bytes(2, "big")  # the sixth of its 17 values
        value = bytearray(txn.get(key, db=dbs["blocks"]))
        value[1234] ^= 0x01
        txn.put(key, bytes(value), db=dbs["blocks"])

    damaged = verify_fails(cli)
    assert damaged == [
        {
            "kind": "block",
            "collection": archive.pub if which == "b" else archive.sec,
            "item": item,
            "id": blk_text(first),
            "problem": f"block {blk_text(first)} is damaged (hash mismatch)",
        }
    ]
    assert verify_fails(cli, item) == damaged
    r = cli("verify", "pub" if which == "b" else "sec")
    assert r.code == 1 and "DAMAGED block" in r.out and blk_text(first) in r.out
    assert "damaged" in get_refused(cli, item)
    # the other items are intact and still served
    other = archive.items["c" if which == "b" else "a"]
    assert cli.ok("verify", other, "--json").json()["ok"] is True
    cli.ok("get", other, "-o", "other.bin")


def test_deleted_block_is_missing(archive):
    cli, item = archive.cli, archive.items["a"]
    [block] = record_blocks(cli.home, item)
    with open_store(cli.home, write=True) as (txn, dbs):
        assert txn.delete(block + b"\0\0", db=dbs["blocks"])
    [damage] = verify_fails(cli)
    assert damage["kind"] == "block" and damage["id"] == blk_text(block)
    assert "missing" in damage["problem"]
    assert "missing" in get_refused(cli, item)


def test_missing_fragment_of_a_block(archive):
    cli, item = archive.cli, archive.items["d"]
    first = record_blocks(cli.home, item)[0]
    with open_store(cli.home, write=True) as (txn, dbs):
        assert txn.delete(first + (16).to_bytes(2, "big"), db=dbs["blocks"])
    [damage] = verify_fails(cli, "sec")
    assert damage["kind"] == "block" and damage["id"] == blk_text(first)
    get_refused(cli, item)


def test_damaged_item_record(archive):
    cli, item = archive.cli, archive.items["c"]
    key = ids.from_text(item, "itm")
    with open_store(cli.home, write=True) as (txn, dbs):
        raw = bytearray(txn.get(key, db=dbs["records"]))
        raw[-3] ^= 0x40
        txn.put(key, bytes(raw), db=dbs["records"])
    [damage] = verify_fails(cli)
    assert damage["kind"] == "record" and damage["item"] == item
    assert "damaged" in get_refused(cli, item)
    rows = cli.ok("ls", "pub", "--json").json()  # one bad record does not hide the others
    assert [r["id"] for r in rows] == [archive.items[k] for k in "abc"]
    assert "damaged" in rows[2] and rows[2]["readable"] is False
    assert all("damaged" not in r and r["readable"] for r in rows[:2])
    assert "damaged" in cli.ok("ls", "pub").out.splitlines()[2]


def test_adding_the_original_again_repairs_a_damaged_block(archive):
    """Public blocks are content-addressed: a re-put of the right bytes replaces a bad copy."""
    cli, item = archive.cli, archive.items["a"]
    [block] = record_blocks(cli.home, item)
    with open_store(cli.home, write=True) as (txn, dbs):
        value = bytearray(txn.get(block + b"\0\0", db=dbs["blocks"]))
        value[0] ^= 0x80
        txn.put(block + b"\0\0", bytes(value), db=dbs["blocks"])
    verify_fails(cli, item)
    (cli.cwd / "a.bin").write_bytes(archive.data["a"])
    [again] = cli.ok("add", "pub", "a.bin", "--json").json()
    assert cli.ok("verify", "--json").json()["ok"] is True
    for ref in (item, again["id"]):
        cli.ok("get", ref, "-o", "back.bin", "--force")
        assert (cli.cwd / "back.bin").read_bytes() == archive.data["a"]


def rewrite_entry(home: Path, collection: str, seq: int, change) -> None:  # noqa: ANN001
    with open_store(home, write=True) as (txn, dbs):
        key = log_key(collection, seq)
        entry = cbor2.loads(txn.get(key, db=dbs["log"]))
        txn.put(key, change(entry), db=dbs["log"])


@pytest.mark.parametrize("tier", ["public", "closed"])
def test_entry_altered_keeping_its_signature(archive, tier):
    cli = archive.cli
    collection = archive.pub if tier == "public" else archive.sec
    seq, item = (2, archive.items["b"]) if tier == "public" else (1, archive.items["d"])

    def backdate(entry: dict) -> bytes:
        entry["body"]["at"] -= 86_400_000  # claim it was added a day earlier
        return cbor2.dumps(entry, canonical=True)

    rewrite_entry(cli.home, collection, seq, backdate)
    [damage] = verify_fails(cli)
    assert damage["kind"] == "entry" and damage["position"] == seq
    assert damage["collection"] == collection and "signature" in damage["problem"]
    [damage] = verify_fails(cli, item)
    assert damage["kind"] == "entry" and "signature" in damage["problem"]


def test_entry_resigned_with_another_key(archive):
    cli = archive.cli
    forger = nacl.signing.SigningKey.generate()

    def resign(entry: dict) -> bytes:
        return log.make_entry(forger, entry["body"]).raw  # same body, the forger's signature

    rewrite_entry(cli.home, archive.pub, 3, resign)
    [damage] = verify_fails(cli)
    assert damage["kind"] == "entry" and damage["position"] == 3
    assert "signature" in damage["problem"]
    verify_fails(cli, archive.items["c"])


def test_entry_appended_by_a_forger(archive):
    """A well-formed 'item' entry chained to the head, signed by someone else's key."""
    cli = archive.cli
    forger = nacl.signing.SigningKey.generate()
    state = cli.ok("collection", "show", "pub", "--json").json()
    body = {
        "type": "item",
        "seq": 4,
        "at": 1_700_000_000_000,
        "col": ids.from_text(archive.pub, "col"),
        "prev": ids.from_text(state["head"], "ent"),
        "item": ids.sha256_id(b"planted"),
    }
    with open_store(cli.home, write=True) as (txn, dbs):
        assert txn.put(log_key(archive.pub, 4), log.make_entry(forger, body).raw, db=dbs["log"])
    damaged = verify_fails(cli)
    assert {"kind": "entry", "position": 4} in [
        {"kind": d["kind"], "position": d.get("position")} for d in damaged
    ]
    assert any("signature" in d["problem"] for d in damaged)


def test_reordered_entries(archive):
    cli = archive.cli
    with open_store(cli.home, write=True) as (txn, dbs):
        one, two = log_key(archive.pub, 1), log_key(archive.pub, 2)
        first, second = txn.get(one, db=dbs["log"]), txn.get(two, db=dbs["log"])
        txn.put(one, second, db=dbs["log"])
        txn.put(two, first, db=dbs["log"])
    damaged = verify_fails(cli, "pub")
    assert sorted(d["position"] for d in damaged if d["kind"] == "entry") == [1, 2]
    assert all(d["collection"] == archive.pub for d in damaged)


def test_lost_entry_at_the_end(archive):
    cli = archive.cli
    with open_store(cli.home, write=True) as (txn, dbs):
        assert txn.delete(log_key(archive.pub, 3), db=dbs["log"])
    damaged = verify_fails(cli)
    assert [(d["kind"], "missing" in d["problem"]) for d in damaged] == [("log", True)]


def test_garbage_log_entry(archive):
    cli = archive.cli
    with open_store(cli.home, write=True) as (txn, dbs):
        txn.put(log_key(archive.pub, 2), os.urandom(300), db=dbs["log"])
    damaged = verify_fails(cli, "pub")
    assert [(d["kind"], d.get("position")) for d in damaged] == [("entry", 2)]


def test_damaged_collection_state(archive):
    cli = archive.cli
    with open_store(cli.home, write=True) as (txn, dbs):
        txn.put(ids.from_text(archive.pub, "col"), cbor2.dumps([1, 2, 3]), db=dbs["cols"])
    for args in (["verify"], ["ls", archive.pub], ["collection", "list"]):
        r = cli(*args)
        assert r.code == 1 and "Traceback" not in r.err, r.err
