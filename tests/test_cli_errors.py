"""Bad input and bad conditions: a one-line `error: …`, exit 1, and nothing half-stored.

"Nothing half-stored" is checked on the store itself: every key and value of every named LMDB
database, the identity and config bytes, and the ingest lock folder are compared before and
after (tests/nodeutil.snapshot), which is stricter than comparing `ls` and `verify` output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nacl.signing
import pytest
from amanah.protocol import ids, log

from tests.conftest import PASSPHRASE, Cli
from tests.nodeutil import MiB, clone, counts, fails, run, snapshot

UNKNOWN_ITEM = ids.to_text("itm", ids.sha256_id(b"no such item"))
UNKNOWN_COL = ids.to_text("col", ids.sha256_id(b"no such collection"))


@pytest.fixture(scope="module")
def stocked_template(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    base = tmp_path_factory.mktemp("stocked")
    cli = Cli(base / "home", base / "work")
    cli.cwd.mkdir()
    cli.ok("init", "--name", "Test node")
    cli.ok("collection", "create", "box", "--tier", "closed")
    (cli.cwd / "first.txt").write_bytes(os.urandom(3000))
    cli.ok("add", "box", "first.txt")
    (cli.cwd / "new.txt").write_bytes(b"new evidence")
    return cli


@pytest.fixture
def stocked(stocked_template: Cli, tmp_path: Path) -> Cli:
    """A node with a closed collection "box" holding one item, and a file `new.txt` to add
    (each test gets its own copy of one home built per module)."""
    return clone(stocked_template, tmp_path)


def no_env_passphrase(cli: Cli) -> dict:
    env = cli.env()
    del env["AMANAH_PASSPHRASE"]
    return env


# --- paths -----------------------------------------------------------------------------------


def test_missing_path(stocked):
    before = snapshot(stocked.home)
    listed = stocked.ok("ls", "box", "--json").out
    length = stocked.ok("collection", "show", "box", "--json").json()["log_length"]
    fails(stocked("add", "box", "missing.txt"), "missing.txt", "no such file")
    # named with files that exist: none of them is stored either
    fails(stocked("add", "box", "new.txt", "first.txt", "missing.txt"), "missing.txt")
    assert snapshot(stocked.home) == before
    assert stocked.ok("ls", "box", "--json").out == listed
    assert stocked.ok("collection", "show", "box", "--json").json()["log_length"] == length
    assert stocked.ok("verify", "--json").json()["ok"] is True


def test_special_file(stocked):
    fifo = stocked.cwd / "pipe"
    os.mkfifo(fifo)
    before = snapshot(stocked.home)
    fails(stocked("add", "box", "new.txt", "pipe"), "pipe", "not a regular file")
    assert snapshot(stocked.home) == before


def test_file_name_with_control_characters(stocked):
    """Refused, and the name is quoted escaped: one line, no terminal escape let through."""
    before = snapshot(stocked.home)
    for name, shown in (("line\nbreak.txt", "line\\nbreak.txt"), ("red\x1b[31m.txt", "\\x1b")):
        (stocked.cwd / name).write_bytes(b"x")
        err = fails(stocked("add", "box", "new.txt", name), "filename", "control", shown)
        assert "\x1b" not in err
    assert snapshot(stocked.home) == before


DROP_DAC = (
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
)


@pytest.fixture
def unprivileged(tmp_path: Path) -> tuple[str, ...]:
    """A command prefix under which a mode-000 file really cannot be read.

    These tests run as root, which reads any file whatever its mode (CAP_DAC_OVERRIDE), and a
    folder without x permission stops root no better. So as root the CLI is started through
    setpriv with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped: still uid 0 (it owns the
    home), but subject to file modes. Skipped only when that cannot be arranged.
    """
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root (chmod 000 does not stop root) and setpriv is missing")
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    r = subprocess.run(
        [*DROP_DAC, sys.executable, "-c", f"open({str(probe)!r}).read()"], capture_output=True
    )
    probe.unlink()
    if r.returncode == 0 or b"PermissionError" not in r.stderr:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE: chmod 000 would not bite")
    return DROP_DAC


def test_unreadable_file(stocked, unprivileged):
    secret = stocked.cwd / "locked.txt"
    secret.write_bytes(b"cannot read me")
    secret.chmod(0)
    before = snapshot(stocked.home)
    fails(run(stocked, "add", "box", "new.txt", "locked.txt", prefix=unprivileged), "locked.txt")
    folder = stocked.cwd / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "ok.txt").write_bytes(b"fine")
    secret.rename(folder / "sub" / "locked.txt")
    fails(run(stocked, "add", "box", "folder", prefix=unprivileged), "locked.txt")
    (folder / "sub" / "locked.txt").chmod(0o600)
    (folder / "sub").chmod(0)
    try:
        fails(run(stocked, "add", "box", "folder", prefix=unprivileged), "sub")
    finally:
        (folder / "sub").chmod(0o700)
    assert snapshot(stocked.home) == before
    # the same command works once the file is readable: the failures were about the file
    r = run(stocked, "add", "box", "folder", prefix=unprivileged)
    assert r.code == 0, r.err


# --- metadata --------------------------------------------------------------------------------

BAD_FLAGS = {
    "captured-at words": (["--captured-at", "yesterday"], "captured_at"),
    "captured-at no such day": (["--captured-at", "2024-02-30T10:00:00Z"], "captured_at"),
    "captured-at no zone": (["--captured-at", "2024-02-01T10:00:00"], "captured_at"),
    "url ftp": (["--source-url", "ftp://example.org/x"], "source_url"),
    "url not a url": (["--source-url", "not a url"], "source_url"),
    "url javascript": (["--source-url", "javascript:alert(1)"], "source_url"),
    "title too long": (["--title", "x" * 1001], "title_en"),
    "arabic title too long": (["--title-ar", "ع" * 1001], "title_ar"),
    "title control character": (["--title", "bell\x07"], "control"),
    "empty tag": (["--tag", "  "], "tag"),
    "meta without =": (["--meta", "novalue"], "KEY=VALUE"),
    "meta empty key": (["--meta", "=value"], "KEY=VALUE"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_invalid_metadata_flag(stocked, case):
    args, needle = BAD_FLAGS[case]
    before = snapshot(stocked.home)
    fails(stocked("add", "box", "new.txt", *args), needle)
    assert snapshot(stocked.home) == before


BAD_META_FILES = {
    "unknown field": ('{"titel": "typo"}', "unknown metadata field"),
    "malformed json": ('{"title_en": "x",', "not valid JSON"),
    "not an object": ('["title_en"]', "JSON object"),
    "lat out of range": ('{"location": {"lat": 91, "lon": 0}}', "lat"),
    "lat without lon": ('{"location": {"lat": 1}}', "lat and lon"),
    "unknown location field": ('{"location": {"name": "x", "alt": 3}}', "unknown location"),
    "bad precision": ('{"location": {"name": "x", "precision": "street"}}', "precision"),
    "tags not a list": ('{"tags": "one"}', "tags"),
    "description too long": (json.dumps({"description_en": "d" * 20_001}), "description_en"),
    "extra value not text": ('{"extra": {"n": 1}}', "extra"),
    "fixity field": ('{"sha256": "' + "0" * 64 + '"}', "unknown metadata field"),
}


@pytest.mark.parametrize("case", sorted(BAD_META_FILES))
def test_invalid_meta_file(stocked, case):
    text, needle = BAD_META_FILES[case]
    (stocked.cwd / "meta.json").write_text(text, encoding="utf-8")
    before = snapshot(stocked.home)
    fails(stocked("add", "box", "new.txt", "--meta-file", "meta.json"), needle)
    assert snapshot(stocked.home) == before


def test_meta_file_missing_or_not_utf8(stocked):
    before = snapshot(stocked.home)
    fails(stocked("add", "box", "new.txt", "--meta-file", "nope.json"), "cannot read", "nope.json")
    (stocked.cwd / "latin1.json").write_bytes(b'{"title_en": "caf\xe9"}')
    fails(stocked("add", "box", "new.txt", "--meta-file", "latin1.json"), "cannot read")
    assert snapshot(stocked.home) == before


def test_metadata_too_large_once_fixity_is_added(stocked):
    """Each field within its limit, the whole over 32 KiB: refused inside ingest, rolled back."""
    extra = {f"field{i}": "v" * 10_000 for i in range(4)}
    (stocked.cwd / "meta.json").write_text(json.dumps({"extra": extra}), encoding="utf-8")
    (stocked.cwd / "big.bin").write_bytes(os.urandom(MiB + 1))
    before = snapshot(stocked.home)
    for name in ("new.txt", "big.bin"):
        fails(stocked("add", "box", name, "--meta-file", "meta.json"), "metadata larger")
    assert snapshot(stocked.home) == before


# --- passphrase ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["add", "box", "new.txt"],
        ["collection", "create", "other", "--tier", "public"],
        ["collection", "list"],
        ["identity", "export", "backup.bin"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_wrong_passphrase(stocked, args):
    before = snapshot(stocked.home)
    env = stocked.env(AMANAH_PASSPHRASE="wrong horse")
    fails(stocked(*args, env=env), "wrong passphrase")
    assert snapshot(stocked.home) == before
    assert not (stocked.cwd / "backup.bin").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["add", "box", "new.txt"],
        ["collection", "create", "other", "--tier", "public"],
        ["ls", "box"],
        ["redact", UNKNOWN_ITEM, "--reason", "x"],
    ],
    ids=lambda a: a[0],
)
def test_missing_passphrase_without_a_terminal(stocked, args):
    before = snapshot(stocked.home)
    r = stocked(*args, env=no_env_passphrase(stocked), input="")  # stdin: a pipe, not a tty
    if args[0] == "redact":
        fails(r, "no item")  # the item is looked up first: no passphrase needed to say so
    else:
        fails(r, "passphrase", "AMANAH_PASSPHRASE")
    assert snapshot(stocked.home) == before


def test_init_without_a_passphrase_and_no_terminal(cli):
    env = cli.env()
    del env["AMANAH_PASSPHRASE"]
    fails(cli("init", env=env, input=""), "passphrase is needed", "--no-passphrase")
    assert not cli.home.exists()
    fails(cli("init", env=cli.env(AMANAH_PASSPHRASE="")), "passphrase is needed")
    assert not cli.home.exists()


# --- homes -----------------------------------------------------------------------------------


def test_init_over_an_existing_home(stocked, tmp_path):
    backup = tmp_path / "backup.bin"
    stocked.ok("identity", "export", str(backup))
    before = snapshot(stocked.home)
    files = sorted(p.relative_to(stocked.home) for p in stocked.home.rglob("*"))
    for extra in ([], ["--no-passphrase"], ["--name", "Another"], ["--restore", str(backup)]):
        fails(stocked("init", *extra), "already holds")
    assert snapshot(stocked.home) == before  # identity and config byte for byte, store as is
    assert sorted(p.relative_to(stocked.home) for p in stocked.home.rglob("*")) == files
    other = Cli(stocked.home, stocked.cwd, passphrase="a different one")
    fails(other("init"), "already holds")
    assert snapshot(stocked.home) == before
    stocked.ok("ls", "box")


def test_init_into_a_non_empty_directory(cli):
    cli.home.mkdir()
    (cli.home / "notes.txt").write_text("someone's files", encoding="utf-8")
    fails(cli("init"), "not empty")
    assert [p.name for p in cli.home.iterdir()] == ["notes.txt"]
    assert (cli.home / "notes.txt").read_text(encoding="utf-8") == "someone's files"


def test_home_that_is_a_file_is_a_usage_error(cli):
    cli.home.write_text("x", encoding="utf-8")
    r = cli("init")
    assert r.code == 2 and "is a file" in r.err and "Traceback" not in r.err
    assert cli.home.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize(
    "args",
    [
        ["id"],
        ["collection", "list"],
        ["collection", "create", "c", "--tier", "public"],
        ["ls", "c"],
        ["add", "c", "f.txt"],
        ["get", UNKNOWN_ITEM],
        ["verify"],
        ["identity", "export", "b.bin"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_uninitialised_home(cli, args):
    (cli.cwd / "f.txt").write_bytes(b"x")
    fails(cli(*args), "no Amanah node", "amanah init")
    assert not cli.home.exists()  # looking does not create it
    cli.home.mkdir()
    fails(cli(*args), "not an initialised Amanah node")
    assert list(cli.home.iterdir()) == []


def _garbage_identity(home: Path) -> None:
    (home / "identity").write_bytes(os.urandom(200))


def _truncated_identity(home: Path) -> None:
    raw = (home / "identity").read_bytes()
    (home / "identity").write_bytes(raw[: len(raw) // 2])


def _garbage_store(home: Path) -> None:
    (home / "store" / "data.mdb").write_bytes(os.urandom(64 * 1024))


def _missing_store(home: Path) -> None:
    (home / "store" / "data.mdb").unlink()


def _config_unknown_key(home: Path) -> None:
    text = (home / "config.toml").read_text(encoding="utf-8")
    (home / "config.toml").write_text(
        text.replace("[store]\n", "[store]\nmap_sise_gib = 2\n"), encoding="utf-8"
    )


def _config_unknown_section(home: Path) -> None:
    with open(home / "config.toml", "a", encoding="utf-8") as f:
        f.write("\n[replication]\nfast = true\n")


def _config_wrong_type(home: Path) -> None:
    text = (home / "config.toml").read_text(encoding="utf-8")
    (home / "config.toml").write_text(
        text.replace("map_size_gib = 1024", 'map_size_gib = "1024"'), encoding="utf-8"
    )


def _config_not_toml(home: Path) -> None:
    (home / "config.toml").write_text("[[ not toml", encoding="utf-8")


def _config_missing(home: Path) -> None:
    (home / "config.toml").unlink()


def _config_future_version(home: Path) -> None:
    text = (home / "config.toml").read_text(encoding="utf-8")
    (home / "config.toml").write_text(text.replace("version = 1", "version = 2"), encoding="utf-8")


CORRUPTIONS = {
    "garbage identity": (_garbage_identity, "identity", ["id"]),
    "truncated identity": (_truncated_identity, "identity", ["id"]),
    "garbage data.mdb": (_garbage_store, "store", ["collection", "list"]),
    "missing data.mdb": (_missing_store, "store", ["ls", "box"]),
    "config unknown key": (_config_unknown_key, "unknown key store.map_sise_gib", ["id"]),
    "config unknown section": (_config_unknown_section, "unknown section", ["verify"]),
    "config wrong type": (_config_wrong_type, "map_size_gib", ["id"]),
    "config not toml": (_config_not_toml, "not valid TOML", ["id"]),
    "config missing": (_config_missing, "config.toml", ["id"]),
    "config future version": (_config_future_version, "version", ["id"]),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_home(stocked, case):
    damage, needle, args = CORRUPTIONS[case]
    damage(stocked.home)
    files = {
        p: p.read_bytes()
        for p in stocked.home.rglob("*")
        if p.is_file() and p.name not in ("lock.mdb",)
    }
    fails(stocked(*args), needle)
    fails(stocked("add", "box", "new.txt"))
    after = {
        p: p.read_bytes()
        for p in stocked.home.rglob("*")
        if p.is_file() and p.name not in ("lock.mdb",)
    }
    assert after.keys() == files.keys() and after == files  # a damaged home is left as found


# --- references --------------------------------------------------------------------------------


def test_unknown_collection_and_item(stocked):
    before = snapshot(stocked.home)
    fails(stocked("ls", "nosuch"), "no collection named 'nosuch'")
    fails(stocked("collection", "show", UNKNOWN_COL), "no collection", UNKNOWN_COL)
    fails(stocked("add", "nosuch", "new.txt"), "no collection named")
    fails(stocked("add", UNKNOWN_COL, "new.txt"), "no collection")
    fails(stocked("get", UNKNOWN_ITEM), "no item", UNKNOWN_ITEM)
    fails(stocked("verify", UNKNOWN_ITEM), "no item")
    fails(stocked("verify", "nosuch"), "no collection")
    fails(stocked("redact", UNKNOWN_ITEM, "--reason", "x"), "no item")
    assert snapshot(stocked.home) == before
    assert not any(p.name.startswith("item") for p in stocked.cwd.iterdir())


def test_malformed_ids(stocked):
    col = stocked.ok("collection", "list", "--json").json()[0]["id"]
    [item] = stocked.ok("ls", "box", "--json").json()
    before = snapshot(stocked.home)
    fails(stocked("get", "itm_abc"), "malformed item id")
    fails(stocked("get", item["id"][:-1] + "1"), "malformed item id")  # '1' is not base32
    fails(stocked("get", item["id"].upper().replace("ITM_", "itm_")), "malformed item id")
    fails(stocked("get", col), "not a item id")  # a collection id where an item id goes
    fails(stocked("get", "report.pdf"), "not a item id")
    fails(stocked("redact", "itm_", "--reason", "x"), "malformed item id")
    fails(stocked("verify", "itm_zz"), "malformed item id")
    fails(stocked("ls", "col_zzzz"), "malformed collection id")
    fails(stocked("collection", "show", "col_" + item["id"][4:-2]), "malformed collection id")
    fails(stocked("ls", "col_" + item["id"][4:]), "no collection")  # well formed, not a col
    assert snapshot(stocked.home) == before


def test_ambiguous_collection_name(stocked):
    """Two collections named alike (another owner's, received from a peer, and ours)."""
    from amanah.node.home import Node

    stocked.ok("collection", "create", "shared", "--tier", "public")
    with Node(stocked.home, lambda: PASSPHRASE) as node:
        other = nacl.signing.SigningKey.generate()
        genesis = log.genesis(other, "shared", "public", 1_700_000_000_000, os.urandom(16))
        with node.store.write() as txn:
            node.archive.create(txn, genesis)
    ours = [c for c in stocked.ok("collection", "list", "--json").json() if c["name"] == "shared"]
    assert len(ours) == 2
    before = snapshot(stocked.home)
    err = fails(stocked("ls", "shared"), "several collections are named 'shared'")
    assert all(c["id"] in err for c in ours)
    fails(stocked("add", "shared", "new.txt"), "several collections")
    fails(stocked("verify", "shared"), "several collections")
    assert snapshot(stocked.home) == before
    assert stocked.ok("ls", ours[0]["id"]).code == 0  # an id always works


def test_duplicate_or_bad_collection_names(stocked):
    before = snapshot(stocked.home)
    fails(stocked("collection", "create", "box", "--tier", "public"), "already have")
    fails(stocked("collection", "create", " box ", "--tier", "closed"), "already have")
    fails(stocked("collection", "create", "   ", "--tier", "public"), "collection name")
    fails(stocked("collection", "create", "n" * 201, "--tier", "public"), "collection name")
    fails(stocked("collection", "create", "tab\x01", "--tier", "public"), "control")
    assert snapshot(stocked.home) == before


def test_bad_redaction_reason(stocked):
    [item] = stocked.ok("ls", "box", "--json").json()
    before = snapshot(stocked.home)
    fails(stocked("redact", item["id"], "--reason", "  "), "redaction reason")
    fails(stocked("redact", item["id"], "--reason", "r" * 2001), "redaction reason")
    assert snapshot(stocked.home) == before


# --- get: the destination -----------------------------------------------------------------------


def test_get_over_an_existing_file(stocked):
    [item] = stocked.ok("ls", "box", "--json").json()
    target = stocked.cwd / "keep.txt"
    target.write_bytes(b"do not overwrite me")
    fails(stocked("get", item["id"], "-o", "keep.txt"), "keep.txt", "exists", "--force")
    assert target.read_bytes() == b"do not overwrite me"
    # the default name, in the working folder and in a folder given with -o
    (stocked.cwd / "first.txt").write_bytes(b"mine")
    fails(stocked("get", item["id"]), "first.txt", "exists")
    out = stocked.cwd / "out"
    out.mkdir()
    (out / "first.txt").write_bytes(b"mine too")
    fails(stocked("get", item["id"], "-o", "out"), "exists")
    assert (stocked.cwd / "first.txt").read_bytes() == b"mine"
    assert (out / "first.txt").read_bytes() == b"mine too"
    assert not list(stocked.cwd.rglob("*.partial"))
    fails(stocked("get", item["id"], "-o", "no/such/dir/x.txt"), "cannot write")


# --- full store, full disk ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 6 MiB tmpfs to hold a node home (needs root and permission to mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root to mount")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk(small_disk, tmp_path):
    cli = Cli(small_disk / "home", tmp_path / "work")
    cli.cwd.mkdir()
    cli.ok("init")
    cli.ok("collection", "create", "c", "--tier", "public")
    cli.ok("collection", "create", "k", "--tier", "closed")
    (cli.cwd / "first.bin").write_bytes(os.urandom(200_000))
    [first] = cli.ok("add", "c", "first.bin", "--json").json()
    before = snapshot(cli.home)
    for size, col in ((8 * MiB, "c"), (8 * MiB, "k"), (20 * MiB, "c")):
        (cli.cwd / "big.bin").write_bytes(os.urandom(size))
        fails(cli("add", col, "big.bin"), "disk is full")
        assert snapshot(cli.home) == before
    assert counts(cli.home)["pending"] == 0
    assert cli.ok("verify", "--json").json()["ok"] is True
    assert [r["id"] for r in cli.ok("ls", "c", "--json").json()] == [first["id"]]
    cli.ok("get", first["id"], "-o", "back.bin")
    assert (cli.cwd / "back.bin").read_bytes() == (cli.cwd / "first.bin").read_bytes()
    # the space the failed transactions took is reused: small items still fit
    (cli.cwd / "small.bin").write_bytes(os.urandom(50_000))
    cli.ok("add", "c", "small.bin")
    assert cli.ok("verify", "--json").json()["ok"] is True


def test_restore_from_something_that_is_not_a_backup(stocked, tmp_path):
    (tmp_path / "junk").write_bytes(os.urandom(300))
    for path, needle in (
        (tmp_path / "junk", "not an Amanah backup"),
        (stocked.home / "identity", "not an Amanah identity backup"),  # an identity file
    ):
        other = Cli(tmp_path / "restored", stocked.cwd)
        fails(other("init", "--restore", str(path)), needle)
        assert not other.home.exists()
    r = Cli(tmp_path / "restored", stocked.cwd)("init", "--restore", str(tmp_path / "nope"))
    assert r.code == 2 and "does not exist" in r.err  # a missing file is a usage error
