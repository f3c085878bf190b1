"""End to end: three real `amanah run` daemons on 127.0.0.1, driven through the CLI.

The owner shares a closed and a trusted collection, adds files, and the partners replicate
them; then the owner's server is destroyed and a fresh machine restores it from its identity
backup and gets every collection back from the partners, every original's SHA-256 verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import AMANAH, Cli

pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, cli: Cli, port: int) -> None:
        self.cli = cli
        self.port = port
        self.proc = subprocess.Popen(
            [
                AMANAH,
                "run",
                "--listen",
                f"/ip4/127.0.0.1/tcp/{port}",
                "--http",
                "127.0.0.1:0",
                "--no-mdns",
            ],
            env=cli.env(),
            stdout=subprocess.PIPE,
            stderr=open(cli.home.parent / f"{cli.home.name}.log", "ab"),  # noqa: SIM115
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line, f"daemon for {cli.home} did not start: see {cli.home.name}.log"
        self.info = json.loads(line)
        assert self.info["ready"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(timeout=15) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()


def peer_id(cli: Cli) -> str:
    return cli.ok("id", "--json").json()["peer_id"]


@pytest.fixture
def trio_of_nodes(tmp_path: Path):
    clis = {}
    for name in "abc":
        work = tmp_path / f"work-{name}"
        work.mkdir()
        c = Cli(tmp_path / f"home-{name}", work)
        c.ok("init", "--name", f"node {name}")
        clis[name] = c
    ports = {name: free_port() for name in clis}
    ids = {name: peer_id(c) for name, c in clis.items()}
    for x, cx in clis.items():
        for y in clis:
            if x != y:
                cx.ok(
                    "peer", "add", ids[y], "--addr", f"/ip4/127.0.0.1/tcp/{ports[y]}", "--name", y
                )
    daemons = {name: Daemon(c, ports[name]) for name, c in clis.items()}
    yield clis, ids, ports, daemons
    for d in daemons.values():
        d.stop()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_three_daemons_replicate_and_survive_the_owners_takedown(trio_of_nodes, tmp_path):
    clis, ids, ports, daemons = trio_of_nodes
    a, b, c = clis["a"], clis["b"], clis["c"]
    closed_id = a.ok(
        "collection", "create", "Witness statements", "--tier", "closed", "--json"
    ).json()["id"]
    a.ok("collection", "create", "Partner evidence", "--tier", "trusted")
    a.ok("share", "Witness statements", "b")
    a.ok("share", "Witness statements", "c")
    a.ok("share", "Partner evidence", "b", "--read")
    files = {}
    for name, size in [("statement.txt", 5_000), ("video.mp4", 3_500_000)]:
        p = a.cwd / name
        p.write_bytes(os.urandom(size))
        files[name] = p
    closed = a.ok(
        "add", "Witness statements", str(files["statement.txt"]), "--title-ar", "إفادة", "--json"
    ).json()
    trusted = a.ok("add", "Partner evidence", str(files["video.mp4"]), "--json").json()

    a.ok("sync", "--wait", "--timeout", "60")
    status = a.ok("status", "--json").json()
    for col in status:
        assert col["complete"]
        holders = [p for p in col["peers"] if p["complete"]]
        assert len(holders) == (2 if col["tier"] == "closed" else 1), col
        assert col["copies"] == len(holders) + 1

    # B and C hold the closed collection as ciphertext they cannot read, yet verify it
    for holder in (b, c):
        holder.ok("verify")
        r = holder("get", closed[0]["id"], "-o", str(holder.cwd / "x"))
        assert r.code == 1 and "only as ciphertext" in r.err
        assert not (holder.cwd / "x").exists()
    # B can read the trusted collection; C does not hold it at all
    b.ok("get", trusted[0]["id"], "-o", str(b.cwd / "video.mp4"))
    assert sha256(b.cwd / "video.mp4") == trusted[0]["sha256"]
    assert c("get", trusted[0]["id"]).code == 1

    # A new item reaches a connected partner promptly, without anyone asking
    extra = a.cwd / "extra.bin"
    extra.write_bytes(os.urandom(10_000))
    new = a.ok("add", "Witness statements", str(extra), "--json").json()[0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(r["id"] == new["id"] for r in b.ok("ls", closed_id, "--json").json()):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the new item did not reach B")

    # Takedown: A's server is seized; its operator kept an identity backup offline.
    backup = tmp_path / "a.backup"
    a.ok("identity", "export", str(backup))
    daemons["a"].stop()
    shutil.rmtree(a.home)
    fresh = Cli(tmp_path / "home-a-restored", a.cwd)
    fresh.ok("init", "--restore", str(backup))
    assert peer_id(fresh) == ids["a"]
    fresh.ok("sync", "--wait", "--timeout", "60")
    names = {col["name"]: col for col in fresh.ok("collection", "list", "--json").json()}
    assert set(names) == {"Witness statements", "Partner evidence"}
    for item, src in [(closed[0], "statement.txt"), (trusted[0], "video.mp4"), (new, None)]:
        out = fresh.cwd / f"restored-{item['id'][-8:]}"
        fresh.ok("get", item["id"], "-o", str(out))
        assert sha256(out) == item["sha256"]
        if src:
            assert out.read_bytes() == files[src].read_bytes()
    fresh.ok("verify")
