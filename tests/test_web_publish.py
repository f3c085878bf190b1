"""Publishing to a mirror end to end: only public collections ever reach it, redactions take
effect on the web, new items appear without a restart.

Real processes: an owner driven through the CLI and a mirror running `amanah run`.
"""

from __future__ import annotations

import time
import urllib.parse

import pytest
from amanah.protocol import ids

from .nodeutil import fails, open_store
from .test_e2e_replication import Daemon
from .webutil import World, make_nodes

pytestmark = pytest.mark.timeout(300)


def served_ids(world: World) -> set[str]:
    return {c["id"] for c in world.get("/api/v1/collections").json()["collections"]}


def mirror_collections(world: World) -> set[str]:
    return {c["id"] for c in world.mirror.ok("collection", "list", "--json").json()}


def test_only_public_collections_reach_a_mirror_and_redactions_take_effect(tmp_path):
    owner, mirror, oid, mid, owner_port, mirror_port = make_nodes(tmp_path)
    public = owner.ok("collection", "create", "Public", "--tier", "public", "--json").json()["id"]
    closed = owner.ok("collection", "create", "Closed", "--tier", "closed", "--json").json()["id"]
    trusted = owner.ok("collection", "create", "Trusted", "--tier", "trusted", "--json")
    trusted = trusted.json()["id"]

    # The owner's node refuses every way of sending a non-public collection to a mirror.
    fails(owner("publish", "Closed", mid), "public")
    fails(owner("publish", "Trusted", "mirror"), "public")
    fails(owner("share", "Closed", mid), "mirror")
    fails(owner("share", "Trusted", "mirror", "--read"), "mirror")
    fails(owner("share", "Trusted", mid), "mirror")

    work = owner.cwd
    files = {}
    for name in ("a.txt", "b.txt", "secret.txt", "partner.txt"):
        files[name] = work / name
        files[name].write_text(f"content of {name}\n")
    a = owner.ok("add", "Public", str(files["a.txt"]), "--title", "Alpha report", "--json")
    b = owner.ok("add", "Public", str(files["b.txt"]), "--title-ar", "تقرير بيتا", "--json")
    a, b = a.json()[0]["id"], b.json()[0]["id"]
    secret = owner.ok(
        "add", "Closed", str(files["secret.txt"]), "--title", "Alpha secret", "--json"
    ).json()[0]["id"]
    owner.ok("add", "Trusted", str(files["partner.txt"]), "--title", "Alpha partner")
    owner.ok("publish", "Public", "mirror")

    daemon = Daemon(mirror, mirror_port)
    world = World(owner, mirror, daemon, oid, mid)
    try:
        world.sync(expect_items=2)
        assert served_ids(world) == {public}
        assert mirror_collections(world) == {public}
        found = world.get("/api/v1/search?q=alpha").json()["items"]
        assert [i["id"] for i in found] == [a]

        # A new item reaches the web without a restart.
        c_file = work / "c.txt"
        c_file.write_text("third\n")
        c = owner.ok("add", "Public", str(c_file), "--title", "Gamma", "--json").json()[0]["id"]
        world.sync(expect_items=3)
        assert world.get(f"/api/v1/items/{c}").status == 200

        # A redaction removes the item from every page, list, search and download.
        missing = world.get(f"/api/v1/items/{ids.to_text('itm', ids.sha256_id(b'x'))}")
        before = {p: world.get(p) for p in (f"/api/v1/items/{b}", f"/items/{b}")}
        assert all(r.status == 200 for r in before.values())
        owner.ok("redact", b, "--reason", "consent withdrawn")
        world.sync()
        world.wait_for(lambda: world.get(f"/api/v1/items/{b}").status == 404)
        for path in (
            f"/api/v1/items/{b}",
            f"/api/v1/items/{b}/content",
            f"/api/v1/items/{b}/record",
            f"/api/v1/items/{b}/entry",
        ):
            r = world.get(path)
            assert (r.status, r.body) == (missing.status, missing.body), path
        assert world.get(f"/items/{b}").body == world.get("/items/none").body
        assert world.get("/api/v1/search?q=" + urllib.parse.quote("بيتا")).json()["total"] == 0
        listed = world.get(f"/api/v1/collections/{public}/items").json()
        assert {i["id"] for i in listed["items"]} == {a, c} and listed["total"] == 2

        # A misconfigured owner (the mirror added as a partner) can grant it a closed
        # collection, but the mirror refuses the data: it never holds any of it.
        owner.ok("peer", "remove", mid)
        owner.ok(
            "peer", "add", mid, "--addr", f"/ip4/127.0.0.1/tcp/{mirror_port}", "--name", "mirror"
        )
        owner.ok("share", "Closed", "mirror")
        owner.ok("share", "Trusted", "mirror", "--read")
        owner("sync", "--wait", "--timeout", "5")  # cannot complete: the mirror refuses
        log = tmp_path / "mirror.log"
        deadline = time.monotonic() + 30
        while "non-public collection to a mirror" not in log.read_text():
            assert time.monotonic() < deadline, "the mirror did not report the refusal"
            time.sleep(0.2)
        assert mirror_collections(world) == {public}
        assert served_ids(world) == {public}
        for col in (closed, trusted):
            assert world.get(f"/api/v1/collections/{col}/items").status == 404
        assert world.get(f"/api/v1/items/{secret}").status == 404
    finally:
        daemon.stop()
    # In the mirror's store: no log entry, record or block of a non-public collection.
    with open_store(mirror.home) as (txn, dbs):
        cols = {bytes(k) for k, _ in txn.cursor(dbs["cols"])}
        logs = {bytes(k[:-8]) for k, _ in txn.cursor(dbs["log"])}
        records = {bytes(k) for k, _ in txn.cursor(dbs["records"])}
    assert cols == logs == {ids.from_text(public, "col")}
    assert ids.from_text(secret, "itm") not in records
    assert ids.from_text(a, "itm") in records and ids.from_text(b, "itm") not in records
