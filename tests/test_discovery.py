"""LAN discovery: daemons in a network namespace of our own (loopback with multicast on) find
each other over mDNS and replicate with no configured address; an untrusted node advertising on
the same LAN is never trusted.

Needs root and iproute2 (`ip netns`); skipped otherwise, since the default namespace's loopback
has no multicast here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from .conftest import AMANAH, Cli

pytestmark = pytest.mark.timeout(120)


def _can_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.fixture
def netns():
    if not _can_netns():
        pytest.skip("needs root and `ip netns` for a namespace with multicast on loopback")
    name = f"amanah-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {r.stderr.strip()}")
    try:
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", "lo", "multicast", "on"],
            ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"],
        ):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def start(cli: Cli, ns: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            AMANAH,
            "run",
            "--listen",
            f"/ip4/127.0.0.1/tcp/{port}",
            "--http",
            "127.0.0.1:0",
        ],
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=open(cli.home.parent / f"{cli.home.name}.log", "ab"),  # noqa: SIM115
        text=True,
    )
    assert json.loads(proc.stdout.readline())["ready"]
    return proc


def test_trusted_peers_find_each_other_on_the_lan_and_strangers_do_not(netns, tmp_path):
    clis = {}
    for name in ("owner", "partner", "stranger"):
        (tmp_path / name).mkdir()
        clis[name] = Cli(tmp_path / f"home-{name}", tmp_path / name)
        clis[name].ok("init", "--name", name)
    ids = {n: c.ok("id", "--json").json()["peer_id"] for n, c in clis.items()}
    owner, partner, stranger = clis["owner"], clis["partner"], clis["stranger"]
    # trust by peer id only: no address is configured anywhere
    owner.ok("peer", "add", ids["partner"], "--name", "partner")
    partner.ok("peer", "add", ids["owner"], "--name", "owner")
    stranger.ok("peer", "add", ids["partner"])  # the stranger trusts the partner; not vice versa
    owner.ok("collection", "create", "Reports", "--tier", "public")
    owner.ok("share", "Reports", "partner")
    (owner.cwd / "r.txt").write_text("report")
    owner.ok("add", "Reports", str(owner.cwd / "r.txt"))
    stranger.ok("collection", "create", "Spam", "--tier", "public")
    stranger.ok("share", "Spam", ids["partner"])

    procs = [start(c, netns, 47400 + i) for i, c in enumerate(clis.values())]
    try:
        deadline = time.monotonic() + 30
        names: set = set()
        while time.monotonic() < deadline:
            names = {c["name"] for c in partner.ok("collection", "list", "--json").json()}
            if "Reports" in names:
                break
            time.sleep(0.5)
        assert "Reports" in names, "the partner never found the owner on the LAN"
        time.sleep(2)
        names = {c["name"] for c in partner.ok("collection", "list", "--json").json()}
        assert "Spam" not in names, "discovery must never grant trust"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=15)
    log = (tmp_path / "home-partner.log").read_text()
    assert "found trusted peer " + ids["owner"] in log
    assert "found trusted peer " + ids["stranger"] not in log
