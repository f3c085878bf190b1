"""Crash safety and concurrency with real processes: kill -9 mid-add, two adds at once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time

from tests.conftest import AMANAH, Cli
from tests.nodeutil import MiB, block_ids, counts, distinct_chunks


def spawn(cli: Cli, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [AMANAH, *args],
        cwd=cli.cwd,
        env=cli.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_kill_9_during_a_large_add(node_cli):
    cli, home = node_cli, node_cli.home
    cli.ok("collection", "create", "c", "--tier", "public")
    # An item sharing its three blocks with the start of the big file: public blocks are
    # content-addressed, so the killed ingest lists them too, and the clean-up must keep them.
    seed = os.urandom(MiB)
    distinct_chunks(cli.cwd / "early.bin", 3, seed=seed)
    [early] = cli.ok("add", "c", "early.bin", "--json").json()
    distinct_chunks(cli.cwd / "big.bin", 300, seed=seed)
    kept = block_ids(home)
    assert len(kept) == 3

    data = home / "store" / "data.mdb"
    grown = data.stat().st_size + 40 * MiB  # the file grows only by commits: 2+ checkpoints
    proc = spawn(cli, "add", "c", "big.bin")
    deadline = time.monotonic() + 60
    while proc.poll() is None and data.stat().st_size < grown and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the add ended before it could be killed"

    # the item never appeared; what did commit is intact; the checkpointed blocks are orphans
    assert counts(home)["pending"] > 0
    orphans = block_ids(home) - kept
    assert len(orphans) >= 16
    assert list((home / "run").glob("ingest-*.lock"))  # the dead ingest's lock file remains
    report = cli.ok("verify", "--json").json()
    assert report["ok"] is True and report["checked"]["items"] == 1
    assert [r["id"] for r in cli.ok("ls", "c", "--json").json()] == [early["id"]]
    assert cli.ok("collection", "show", "c", "--json").json()["log_length"] == 2

    # the next add (any file) collects the orphans, keeping blocks live items use
    (cli.cwd / "next.txt").write_bytes(b"the next piece of evidence")
    [after] = cli.ok("add", "c", "next.txt", "--json").json()
    assert counts(home)["pending"] == 0
    assert block_ids(home) == kept | {
        b"\x12\x20" + hashlib.sha256(b"the next piece of evidence").digest()
    }
    assert list((home / "run").iterdir()) == []
    assert cli.ok("verify", "--json").json()["ok"] is True
    cli.ok("get", early["id"], "-o", "early.back")
    assert (cli.cwd / "early.back").read_bytes() == (cli.cwd / "early.bin").read_bytes()
    rows = cli.ok("ls", "c", "--json").json()
    assert [r["id"] for r in rows] == [early["id"], after["id"]]


def test_two_adds_at_once_into_one_collection(node_cli):
    cli = node_cli
    cli.ok("collection", "create", "c", "--tier", "trusted")
    batches = {}
    for side in ("left", "right"):
        folder = cli.cwd / side
        folder.mkdir()
        for i in range(25):
            (folder / f"{i:02}.txt").write_bytes(os.urandom(1_000 + 97 * i))
        distinct_chunks(folder / "large.bin", 40)  # several commits: interleaves with the other
        batches[side] = folder
    procs = {side: spawn(cli, "add", "c", side, "--json") for side in batches}
    results = {side: p.communicate(timeout=120) for side, p in procs.items()}
    for side, p in procs.items():
        assert p.returncode == 0, results[side][1].decode()
    added = {side: json.loads(out) for side, (out, _) in results.items()}
    assert all(len(a) == 26 for a in added.values())
    rows = cli.ok("ls", "c", "--json").json()
    assert sorted(r["id"] for r in rows) == sorted(a["id"] for v in added.values() for a in v)
    # Each add signs one entry for its 25 small files (when the large file's first 16 MiB
    # commit) and one for the large file: four entries, in whatever order the adds interleaved.
    show = cli.ok("collection", "show", "c", "--json").json()
    assert show["log_length"] == 5 and show["items"] == 52
    assert sorted({r["position"] for r in rows}) == [1, 2, 3, 4]
    for side, items in added.items():
        where = {r["id"]: r["position"] for r in rows}
        small = {where[a["id"]] for a in items if not a["path"].endswith("large.bin")}
        assert len(small) == 1, side
    report = cli.ok("verify", "--json").json()
    assert report["ok"] is True and report["checked"]["entries"] == 5
    by_name = {
        r["metadata"]["filename"]: r for r in rows if r["metadata"]["filename"].endswith(".bin")
    }
    for side, folder in batches.items():
        row = by_name[f"{side}/large.bin"]
        assert row["sha256"] == hashlib.sha256((folder / "large.bin").read_bytes()).hexdigest()
    assert counts(cli.home)["pending"] == 0


def test_an_add_during_a_large_add_keeps_its_blocks(node_cli):
    """The second add's orphan collection must not take the running add's committed blocks."""
    cli, home = node_cli, node_cli.home
    cli.ok("collection", "create", "c", "--tier", "closed")
    big_sha = distinct_chunks(cli.cwd / "big.bin", 300)
    (cli.cwd / "small.txt").write_bytes(b"small")
    data = home / "store" / "data.mdb"
    grown = data.stat().st_size + 20 * MiB
    big = spawn(cli, "add", "c", "big.bin", "--json")
    deadline = time.monotonic() + 60
    while big.poll() is None and data.stat().st_size < grown and time.monotonic() < deadline:
        time.sleep(0.002)
    # the large add is under way, with blocks committed under its pending record: the small
    # add's orphan collection (its first step) runs while that ingest holds its lock
    assert big.poll() is None, "the large add ended too soon: nothing would be tested"
    assert counts(home)["pending"] > 0
    small = cli("add", "c", "small.txt", "--json")
    assert small.code == 0, small.err
    out, err = big.communicate(timeout=120)
    assert big.returncode == 0, err.decode()
    [added] = json.loads(out)
    assert added["sha256"] == big_sha
    report = cli.ok("verify", "--json").json()
    assert report["ok"] is True and report["checked"]["items"] == 2
    assert report["checked"]["blocks"] == 300 + 1 + 1  # content, one manifest, small.txt
    assert counts(home)["pending"] == 0
