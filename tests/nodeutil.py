"""Helpers shared by the node and CLI tests: looking into a home's LMDB directly, checking errors.

The store is opened here with the `lmdb` package itself, never through our own code, so a test
that inspects or damages it does not depend on what it is testing. Open it only while no
process (and no in-process Node) has the home open.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb
from amanah.node import config as config_mod
from amanah.node.store import DATABASES
from amanah.protocol import ids

from tests.conftest import AMANAH, Cli, Result

MiB = 1 << 20


def fails(r: Result, *needles: str, code: int = 1) -> str:
    """Assert a clean user-facing failure: exit `code`, one `error: …` line, no traceback."""
    assert r.code == code, f"expected exit {code}, got {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    assert "Traceback" not in r.err, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{r.err}"
    assert lines[0].startswith("error: "), lines[0]
    for n in needles:
        assert n.lower() in lines[0].lower(), f"{n!r} not in {lines[0]!r}"
    return lines[0]


def map_size(home: Path) -> int:
    """The map size every process must use for this home (from its config)."""
    return config_mod.load(home / "config.toml").map_size


@contextmanager
def open_store(home: Path, write: bool = False) -> Iterator[tuple[lmdb.Transaction, dict]]:
    """A raw LMDB transaction on the home's store and its named databases (committed if write)."""
    env = lmdb.open(
        str(home / "store"), map_size=map_size(home), max_dbs=len(DATABASES) + 4, create=False
    )
    try:
        dbs = {name.decode(): env.open_db(name, create=False) for name in DATABASES}
        with env.begin(write=write) as txn:
            yield txn, dbs
    finally:
        env.close()


def db_items(home: Path, name: str) -> list[tuple[bytes, bytes]]:
    with open_store(home) as (txn, dbs):
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(dbs[name])]


def counts(home: Path) -> dict[str, int]:
    with open_store(home) as (txn, dbs):
        return {name: txn.stat(db)["entries"] for name, db in dbs.items()}


def block_ids(home: Path) -> set[bytes]:
    """Ids of the blocks in the LMDB blob store (keys are id + 2-byte fragment index)."""
    return {k[:-2] for k, _ in db_items(home, "blocks")}


def store_digest(home: Path) -> str:
    """A digest of every key and value of every named database: equal means nothing changed."""
    h = hashlib.sha256()
    with open_store(home) as (txn, dbs):
        for name, db in dbs.items():
            h.update(b"\0db " + name.encode())
            for k, v in txn.cursor(db):
                h.update(len(k).to_bytes(4, "big") + bytes(k))
                h.update(len(v).to_bytes(8, "big") + bytes(v))
    return h.hexdigest()


def snapshot(home: Path) -> dict:
    """What must not change when a command fails: the store's content, the identity and config,
    and no ingest lock left behind."""
    return {
        "store": store_digest(home),
        "identity": (home / "identity").read_bytes(),
        "config": (home / "config.toml").read_bytes(),
        "run": sorted(p.name for p in (home / "run").iterdir()),
    }


def run_bytes(cli: Cli, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `amanah` with binary stdout (for `get -o -`)."""
    return subprocess.run(
        [AMANAH, *map(str, args)],
        cwd=cli.cwd,
        env=env or cli.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )


def distinct_chunks(path: Path, mib: int, seed: bytes | None = None, extra: int = 0) -> bytes:
    """Write a file of `mib` MiB (+ `extra` bytes) whose 1 MiB chunks all differ; return its
    SHA-256. Fast: one random MiB, with a counter written over its start for each chunk."""
    buf = bytearray(seed if seed is not None else os.urandom(MiB))
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(mib):
            buf[:8] = i.to_bytes(8, "big")
            f.write(buf)
            h.update(buf)
        tail = os.urandom(extra)
        f.write(tail)
        h.update(tail)
    return h.hexdigest()


def blk_text(raw: bytes) -> str:
    return ids.to_text("blk", raw)


def run(
    cli: Cli, *args: str, prefix: tuple[str, ...] = (), env: dict | None = None, input: str = ""
) -> Result:
    """Run `amanah` (after `prefix`, e.g. setpriv) with stdin not a terminal."""
    proc = subprocess.run(
        [*prefix, AMANAH, *map(str, args)],
        cwd=cli.cwd,
        env=env or cli.env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def clone(template: Cli, tmp_path: Path) -> Cli:
    """A private copy of a prepared home and working folder (far cheaper than rebuilding it).
    The template's home must not be open in any process while it is copied."""
    home, cwd = tmp_path / "home", tmp_path / "work"
    shutil.copytree(template.home, home, symlinks=True)
    shutil.copytree(template.cwd, cwd, symlinks=True)
    return Cli(home, cwd, template.passphrase)
