"""The CLI's happy paths, end to end: a real `amanah` process against a real home and LMDB."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from amanah.protocol import ids
from nacl.signing import SigningKey

from tests.conftest import PASSPHRASE, Cli
from tests.nodeutil import MiB, block_ids, fails, run_bytes

TIERS = ("public", "trusted", "closed")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create(cli: Cli, name: str, tier: str) -> dict:
    return cli.ok("collection", "create", name, "--tier", tier, "--json").json()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- init, id --------------------------------------------------------------------------------


def test_init_and_id(cli):
    r = cli.ok("init", "--name", "Syria desk")
    info = cli.ok("id", "--json").json()
    assert set(info) == {"peer_id", "name", "public_key"}
    assert info["name"] == "Syria desk"
    assert info["peer_id"].startswith("12D3KooW")
    assert info["peer_id"] == ids.peer_id_from_public_key(bytes.fromhex(info["public_key"]))
    assert info["peer_id"] in r.out
    assert cli.ok("id").out.split() == [info["peer_id"], "Syria", "desk"]


def test_id_needs_no_passphrase(node_cli):
    """The public key is kept in the clear: `id` works on a locked node."""
    env = node_cli.env()
    del env["AMANAH_PASSPHRASE"]
    r = node_cli("id", "--json", env=env, input="")
    assert r.code == 0, r.err
    assert r.json()["peer_id"].startswith("12D3KooW")


def test_home_is_private(node_cli):
    """Directories 0700, files 0600 (the store directory must stay usable by its owner)."""
    home = node_cli.home
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{path.relative_to(home.parent)} has mode {oct(mode)}"


def test_init_with_home_option_and_no_passphrase(cli):
    home = cli.home.parent / "other"
    env = cli.env()
    del env["AMANAH_HOME"], env["AMANAH_PASSPHRASE"]
    r = cli("--home", str(home), "init", "--no-passphrase", env=env, input="")
    assert r.code == 0, r.err
    r = cli("--home", str(home), "collection", "create", "open", "--tier", "closed", env=env)
    assert r.code == 0, r.err
    assert not cli.home.exists()


# --- collections -----------------------------------------------------------------------------


def test_collections_create_list_show(node_cli):
    assert node_cli.ok("collection", "list").out.strip() == "(no collections)"
    assert node_cli.ok("collection", "list", "--json").json() == []
    made = {t: create(node_cli, f"{t} files", t) for t in TIERS}
    for tier, c in made.items():
        assert set(c) == {"id", "name", "tier"}
        assert c["tier"] == tier and c["name"] == f"{tier} files"
        ids.from_text(c["id"], "col")
    listed = node_cli.ok("collection", "list", "--json").json()
    assert sorted(listed, key=lambda c: c["id"]) == sorted(made.values(), key=lambda c: c["id"])
    text = node_cli.ok("collection", "list").out
    for c in made.values():
        assert f"{c['id']}  {c['tier']:<7}  {c['name']}" in text
    me = node_cli.ok("id", "--json").json()["peer_id"]
    for tier, c in made.items():
        shown = node_cli.ok("collection", "show", c["id"], "--json").json()
        assert shown["id"] == c["id"] and shown["name"] == c["name"]
        assert shown["tier"] == tier
        assert shown["owner"] == me and shown["owned"] is True
        assert shown["log_length"] == 1
        assert shown["items"] == 0 and shown["redacted"] == 0 and shown["grants"] == []
        assert shown["key_epoch"] == (None if tier == "public" else 0)
        assert shown["head"] == "ent_" + c["id"][4:]  # the genesis entry's id is the col id
    text = node_cli.ok("collection", "show", "closed files").out
    assert "log length: 1" in text and "(this node)" in text and "closed" in text


# --- one item's life, per tier ---------------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_item_lifecycle(node_cli, tier):
    cli = node_cli
    col = create(cli, f"Aleppo {tier}", tier)
    data = os.urandom(5_000)
    src = write(cli.cwd / "in" / "report.pdf", data)
    added = cli.ok("add", col["name"], str(src), "--title", "Report", "--json").json()
    assert len(added) == 1
    a = added[0]
    assert set(a) == {"id", "path", "sha256", "size"}
    assert a["path"] == str(src) and a["sha256"] == sha256(data) and a["size"] == len(data)
    ids.from_text(a["id"], "itm")

    [row] = cli.ok("ls", col["id"], "--json").json()
    assert {"id", "size", "sha256", "metadata", "readable"} <= set(row)
    assert row["id"] == a["id"] and row["size"] == len(data) and row["sha256"] == sha256(data)
    assert row["readable"] is True
    meta = row["metadata"]
    assert meta["filename"] == "report.pdf" and meta["title_en"] == "Report"
    assert meta["size"] == len(data) and meta["sha256"] == sha256(data)
    assert meta["mime"] == "application/pdf"
    assert meta["ingested_at"].endswith("Z")

    out = cli.cwd / "restored.pdf"
    r = cli.ok("get", a["id"], "-o", str(out))
    assert out.read_bytes() == data
    assert sha256(data) in r.err and "verified" in r.err

    assert cli.ok("verify", col["name"]).out.strip().endswith("intact")
    report = cli.ok("verify", a["id"], "--json").json()
    assert report["ok"] is True and report["damaged"] == []
    assert report["checked"]["items"] == 1 and report["checked"]["blocks"] == 1
    shown = cli.ok("collection", "show", col["id"], "--json").json()
    assert shown["log_length"] == 2 and shown["items"] == 1

    cli.ok("redact", a["id"], "--reason", "Consent withdrawn by the witness")
    assert cli.ok("ls", col["id"], "--json").json() == []
    [gone] = cli.ok("ls", col["id"], "--all", "--json").json()
    assert gone["id"] == a["id"] and gone["redacted"] is True and gone["metadata"] is None
    fails(cli("get", a["id"], "-o", str(cli.cwd / "again")), "redacted", "Consent withdrawn")
    assert not (cli.cwd / "again").exists()
    report = cli.ok("verify", "--json").json()
    assert report["ok"] is True and report["checked"]["blocks"] == 0
    shown = cli.ok("collection", "show", col["id"], "--json").json()
    assert shown["log_length"] == 3 and shown["items"] == 0 and shown["redacted"] == 1
    assert block_ids(cli.home) == set()  # the content is erased, not just hidden
    fails(cli("redact", a["id"], "--reason", "twice"), "already redacted")


def test_several_files_in_one_add(node_cli):
    create(node_cli, "batch", "trusted")
    files = [write(node_cli.cwd / f"f{i}.txt", os.urandom(100 * i + 1)) for i in range(5)]
    added = node_cli.ok("add", "batch", *map(str, files), "--tag", "batch", "--json").json()
    assert [a["path"] for a in added] == list(map(str, files))
    assert [a["sha256"] for a in added] == [sha256(f.read_bytes()) for f in files]
    rows = node_cli.ok("ls", "batch", "--json").json()
    assert [r["id"] for r in rows] == [a["id"] for a in added]
    assert [r["position"] for r in rows] == [1] * 5  # one signed entry adds the whole batch
    assert all(r["metadata"]["tags"] == ["batch"] for r in rows)
    shown = node_cli.ok("collection", "show", "batch", "--json").json()
    assert (shown["log_length"], shown["items"]) == (2, 5)


def test_folder_is_added_recursively_without_following_symlinks(node_cli, tmp_path):
    create(node_cli, "folder", "closed")
    root = node_cli.cwd / "evidence"
    contents = {
        "evidence/a.txt": b"a" * 10,
        "evidence/sub/b.bin": os.urandom(70_000),
        "evidence/sub/deeper/c.jpg": os.urandom(1_500_000),
        "evidence/z.txt": b"",
    }
    for rel, data in contents.items():
        write(node_cli.cwd / rel, data)
    (root / "empty").mkdir()
    outside = write(tmp_path / "outside" / "secret.txt", b"must not be added")
    (root / "link-to-file").symlink_to(outside)
    (root / "link-to-dir").symlink_to(outside.parent, target_is_directory=True)
    (root / "sub" / "broken").symlink_to(tmp_path / "nowhere")

    added = node_cli.ok("add", "folder", "evidence", "--json").json()
    assert len(added) == len(contents)
    rows = node_cli.ok("ls", "folder", "--json").json()
    names = {r["metadata"]["filename"]: r for r in rows}
    assert set(names) == set(contents)
    for rel, data in contents.items():
        assert names[rel]["sha256"] == sha256(data)
    assert sha256(b"must not be added") not in {r["sha256"] for r in rows}

    nested = names["evidence/sub/deeper/c.jpg"]
    node_cli.ok("get", nested["id"])  # default name: the last part of the recorded name
    assert (node_cli.cwd / "c.jpg").read_bytes() == contents["evidence/sub/deeper/c.jpg"]
    assert node_cli.ok("verify", "folder").out.strip().endswith("intact")


# --- metadata --------------------------------------------------------------------------------


def test_arabic_metadata_and_file_name_round_trip(node_cli):
    create(node_cli, "شهادات", "trusted")
    name = "شهادة-حلب ٢٠١٦.mp4"
    data = os.urandom(3_000)
    write(node_cli.cwd / name, data)
    title_ar = "قصف سوق الخضار في حلب"
    description_ar = "شهادة مصورة من أحد السكان.\nالتصوير بعد الغارة بعشر دقائق."
    tags = ["حلب", "قصف جوي", "civilians"]
    args = ["--title-ar", title_ar, "--description-ar", description_ar]
    args += ["--title", "Market shelling", "--description", "Resident's video"]
    for t in tags:
        args += ["--tag", t]
    [added] = node_cli.ok("add", "شهادات", name, *args, "--json").json()
    [row] = node_cli.ok("ls", "شهادات", "--json").json()
    meta = row["metadata"]
    assert meta["filename"] == name
    assert meta["title_ar"] == title_ar and meta["description_ar"] == description_ar
    assert meta["title_en"] == "Market shelling" and meta["description_en"] == "Resident's video"
    assert meta["tags"] == tags
    text = node_cli.ok("ls", "شهادات").out
    assert name in text and "Market shelling" in text
    assert node_cli.ok("collection", "list", "--json").json()[0]["name"] == "شهادات"

    (node_cli.cwd / name).unlink()
    node_cli.ok("get", added["id"])  # default output name: the Arabic file name
    assert (node_cli.cwd / name).read_bytes() == data


def test_arabic_title_alone_is_shown(node_cli):
    create(node_cli, "ar", "public")
    write(node_cli.cwd / "v.mp4", b"v")
    node_cli.ok("add", "ar", "v.mp4", "--title-ar", "عنوان فقط")
    assert "عنوان فقط" in node_cli.ok("ls", "ar").out


def test_meta_file_with_location_and_flags(node_cli):
    create(node_cli, "douma", "closed")
    meta_file = node_cli.cwd / "meta.json"
    meta_file.write_text(
        json.dumps(
            {
                "title_en": "From the file",
                "title_ar": "من الملف",
                "source_url": "https://example.org/watch?v=abc&t=1",
                "captured_at": "2018-04-07T19:30:00+03:00",
                "location": {"name": "دوما", "lat": 33.5711, "lon": "36.4017", "precision": "city"},
                "tags": ["chemical"],
                "extra": {"camera": "Nokia", "acquired_from": "a resident"},
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    write(node_cli.cwd / "clip.mp4", os.urandom(2_000))
    node_cli.ok(
        "add",
        "douma",
        "clip.mp4",
        "--meta-file",
        str(meta_file),
        "--title",
        "From the flag",  # a flag overrides the file
        "--tag",
        "douma",
        "--meta",
        "verified_by=desk 2",
        "--meta",
        "note=a=b",  # only the first '=' separates
    )
    [row] = node_cli.ok("ls", "douma", "--json").json()
    m = row["metadata"]
    assert m["title_en"] == "From the flag" and m["title_ar"] == "من الملف"
    assert m["source_url"] == "https://example.org/watch?v=abc&t=1"
    assert m["captured_at"] == "2018-04-07T19:30:00+03:00"
    assert m["location"] == {
        "name": "دوما",
        "lat": "33.5711",
        "lon": "36.4017",
        "precision": "city",
    }
    assert m["tags"] == ["chemical", "douma"]
    assert m["extra"] == {
        "camera": "Nokia",
        "acquired_from": "a resident",
        "verified_by": "desk 2",
        "note": "a=b",
    }


def test_flags_for_every_metadata_field(node_cli):
    create(node_cli, "flags", "public")
    write(node_cli.cwd / "x.txt", b"x")
    node_cli.ok(
        "add",
        "flags",
        "x.txt",
        "--source-url",
        "http://example.com/a",
        "--captured-at",
        "2024-05-01T13:45:00Z",
        "--description",
        "line one\nline two",
    )
    m = node_cli.ok("ls", "flags", "--json").json()[0]["metadata"]
    assert m["source_url"] == "http://example.com/a"
    assert m["captured_at"] == "2024-05-01T13:45:00Z"
    assert m["description_en"] == "line one\nline two"


# --- get -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["public", "closed"])
def test_get_to_stdout(node_cli, tier):
    create(node_cli, "c", tier)
    data = os.urandom(MiB + 4_321) + b"\xff\xfe\x00\n\r\n"  # binary, not text
    write(node_cli.cwd / "bin.dat", data)
    [a] = node_cli.ok("add", "c", "bin.dat", "--json").json()
    r = run_bytes(node_cli, "get", a["id"], "-o", "-")
    assert r.returncode == 0, r.stderr
    assert r.stdout == data
    assert r.stderr == b""
    assert sorted(p.name for p in node_cli.cwd.iterdir()) == ["bin.dat"]


def test_get_into_a_folder_and_default_name(node_cli):
    create(node_cli, "c", "trusted")
    data = os.urandom(1234)
    write(node_cli.cwd / "src" / "photo.jpg", data)
    [a] = node_cli.ok("add", "c", "src/photo.jpg", "--json").json()
    out = node_cli.cwd / "out"
    out.mkdir()
    node_cli.ok("get", a["id"], "-o", "out")
    assert (out / "photo.jpg").read_bytes() == data
    (out / "photo.jpg").unlink()
    node_cli.ok("get", a["id"], "-o", "out/")
    assert (out / "photo.jpg").read_bytes() == data
    node_cli.ok("get", a["id"])
    assert (node_cli.cwd / "photo.jpg").read_bytes() == data
    # --force replaces an existing file
    (node_cli.cwd / "photo.jpg").write_bytes(b"old")
    node_cli.ok("get", a["id"], "--force")
    assert (node_cli.cwd / "photo.jpg").read_bytes() == data
    assert not list(node_cli.cwd.rglob("*.partial"))


SIZES = [0, 1, MiB - 1, MiB, MiB + 1, 2 * MiB + 17]  # empty, tiny, around one chunk, several


@pytest.mark.parametrize("tier", ["public", "closed"])
def test_sizes_around_the_chunk_size(node_cli, tier):
    create(node_cli, "c", tier)
    files = {size: write(node_cli.cwd / f"f{size}.bin", os.urandom(size)) for size in SIZES}
    added = node_cli.ok("add", "c", *(f.name for f in files.values()), "--json").json()
    assert [a["size"] for a in added] == SIZES
    assert added[0]["sha256"] == EMPTY_SHA256
    for a, (size, f) in zip(added, files.items(), strict=True):
        assert a["sha256"] == sha256(f.read_bytes())
        node_cli.ok("get", a["id"], "-o", f"back{size}")
        assert (node_cli.cwd / f"back{size}").read_bytes() == f.read_bytes(), size
    assert run_bytes(node_cli, "get", added[0]["id"], "-o", "-").stdout == b""
    rows = node_cli.ok("ls", "c", "--json").json()
    assert [(r["size"], r["sha256"]) for r in rows] == [(a["size"], a["sha256"]) for a in added]
    report = node_cli.ok("verify", "--json").json()
    assert report["ok"] is True
    assert report["checked"]["items"] == len(SIZES)
    assert report["checked"]["blocks"] == sum(-(-size // MiB) for size in SIZES)


def test_same_file_twice_makes_two_items(node_cli):
    create(node_cli, "c", "public")
    write(node_cli.cwd / "f", os.urandom(500))
    first = node_cli.ok("add", "c", "f", "--json").json()[0]
    second = node_cli.ok("add", "c", "f", "--json").json()[0]
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    node_cli.ok("redact", first["id"], "--reason", "duplicate")
    node_cli.ok("get", second["id"], "-o", "back")  # the shared block outlives one redaction
    assert (node_cli.cwd / "back").read_bytes() == (node_cli.cwd / "f").read_bytes()
    assert node_cli.ok("verify", "--json").json()["ok"] is True


# --- identity backup and passphrase sources -------------------------------------------------


def test_identity_export_and_restore(node_cli, tmp_path):
    backup = tmp_path / "backup.amanah"
    node_cli.ok("identity", "export", str(backup))
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    original = node_cli.ok("id", "--json").json()
    raw = backup.read_bytes()
    fails(node_cli("identity", "export", str(backup)), "exists")
    assert backup.read_bytes() == raw

    restored = Cli(tmp_path / "home2", node_cli.cwd)
    r = restored.ok("init", "--restore", str(backup))
    assert original["peer_id"] in r.out
    again = restored.ok("id", "--json").json()
    assert again == original  # same key, and the name comes back from the backup
    restored.ok("collection", "create", "after restore", "--tier", "closed")

    named = Cli(tmp_path / "home3", node_cli.cwd)
    named.ok("init", "--restore", str(backup), "--name", "New name")
    assert named.ok("id", "--json").json()["name"] == "New name"


def test_restore_with_the_wrong_passphrase(node_cli, tmp_path):
    backup = tmp_path / "backup.amanah"
    node_cli.ok("identity", "export", str(backup))
    other = Cli(tmp_path / "home2", node_cli.cwd, passphrase="not the one")
    fails(other("init", "--restore", str(backup)), "wrong passphrase")
    assert not other.home.exists()


def _crafted_backup(path: Path, payload: dict, **extra: object) -> Path:
    """A backup sealed with PASSPHRASE at libsodium's minimum cost (any cost within 9.1 reads)."""
    from amanah.node import identity as identity_mod
    from amanah.protocol import cbor

    public = identity_mod.Identity(SigningKey(payload["seed"])).public_key
    record = {"v": 1, "tag": identity_mod.BACKUP_TAG, "public": public, **extra}
    record.update(identity_mod._seal(cbor.encode(payload), PASSPHRASE, (1, 8192)))
    path.write_bytes(cbor.encode(record))
    return path


def test_restore_skips_and_reports_peer_entries_it_cannot_use(cli, tmp_path):
    """9.3: an unusable element of `peers` is skipped and reported; the backup still restores."""
    seed, partner = os.urandom(32), SigningKey.generate().verify_key.encode()
    good = {
        "peer_id": ids.peer_id_from_public_key(partner),
        "name": "partner",
        "addrs": ["/ip4/127.0.0.1/tcp/4710"],
        "role": "partner",
    }
    extra = {**good, "peer_id": ids.peer_id_from_public_key(bytes(32)), "x": 1}  # closed map
    bad_addr = {**good, "peer_id": ids.peer_id_from_public_key(b"\1" * 32), "addrs": ["nope"]}
    payload = {
        "seed": seed,
        "name": "Restored",
        "peers": [7, good, {"peer_id": "nope"}, extra, bad_addr],
    }
    r = cli.ok("init", "--restore", str(_crafted_backup(tmp_path / "b", payload)))
    assert "skipped a peer entry of the backup: 7" in r.err
    assert "skipped a peer entry of the backup: {'peer_id': 'nope'}" in r.err
    assert "'x': 1" in r.err  # the element with an undefined key, shown
    assert "skipped a peer entry of the backup (" in r.err  # the address refused, with why
    assert "Restored 1 trusted peer(s)" in r.out
    assert [p["peer_id"] for p in cli.ok("peer", "list", "--json").json()] == [good["peer_id"]]
    assert cli.ok("id", "--json").json()["name"] == "Restored"


@pytest.mark.parametrize(
    "payload, extra, needle",
    [
        ({"peers": []}, {"note": "x"}, "undefined key 'note'"),
        ({"peers": [], "created": 1}, {}, "undefined key 'created'"),
        ({}, {}, "missing 'peers'"),
    ],
)
def test_restore_refuses_a_backup_the_format_does_not_define(cli, tmp_path, payload, extra, needle):
    backup = _crafted_backup(
        tmp_path / "b", {"seed": os.urandom(32), "name": "n", **payload}, **extra
    )
    fails(cli("init", "--restore", str(backup)), needle)
    assert not cli.home.exists()


def test_passphrase_file(cli, tmp_path):
    pw = tmp_path / "pass.txt"
    pw.write_text(PASSPHRASE + "\n", encoding="utf-8")
    bare = Cli(cli.home, cli.cwd, passphrase=None)
    bare.ok("--passphrase-file", str(pw), "init", input="")
    bare.ok("--passphrase-file", str(pw), "collection", "create", "c", "--tier", "closed")
    # the same passphrase works from the environment: the file's newline is not part of it
    cli.ok("collection", "list", "--json")
    assert cli.ok("collection", "list", "--json").json()[0]["name"] == "c"
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n", encoding="utf-8")
    fails(bare("--passphrase-file", str(wrong), "collection", "list", input=""), "wrong passphrase")
    fails(
        bare("--passphrase-file", str(tmp_path / "missing"), "collection", "list", input=""),
        "cannot read",
    )
