"""Helpers for the public-web tests: an owner and a mirror as real processes, and raw HTTP.

`build_world` makes two node homes with the CLI (an owner, and a mirror made with
`init --role mirror`), trusts each other, creates collections of every tier, adds items with
Arabic and English metadata, publishes one public collection to the mirror, starts the mirror's
daemon (`amanah run`) and has the owner push with `amanah sync --wait`. Requests go through
http.client, which sends the path exactly as given (no normalisation), so path tricks reach
the server as written.
"""

from __future__ import annotations

import http.client
import json
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .conftest import Cli
from .test_e2e_replication import Daemon, free_port, peer_id

MiB = 1 << 20
TITLE_AR = "إفادة الشاهد"
TITLE_EN = "Witness Statement"
ARABIC_NAME = "تقرير الشاهد ٢٠٢٤.txt"
BULK = 52  # with the 4 named items: 56 items, two pages of 50


@dataclass
class Resp:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):  # noqa: ANN201
        return json.loads(self.body)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    @property
    def text(self) -> str:
        return self.body.decode()


def request(address: str, path: str, headers: dict | None = None, method: str = "GET") -> Resp:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        skip_host = any(k.lower() == "host" for k in headers or {})
        conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v.encode() if isinstance(v, str) else v)
        conn.endheaders()
        r = conn.getresponse()
        return Resp(r.status, r.headers, r.read())
    finally:
        conn.close()


def png_bytes() -> bytes:
    """A valid 1x1 PNG (so `image/png` previews have something real to show)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@dataclass
class World:
    owner: Cli
    mirror: Cli
    daemon: Daemon
    owner_id: str
    mirror_id: str
    public_col: str = ""
    unpublished_col: str = ""
    closed_col: str = ""
    items: dict[str, dict] = field(default_factory=dict)  # name -> `add --json` row
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return self.daemon.info["http"]

    def get(self, path: str, headers: dict | None = None, method: str = "GET") -> Resp:
        return request(self.http, path, headers, method)

    def add(self, collection: str, name: str, path: Path, *args: str) -> dict:
        row = self.owner.ok("add", collection, str(path), "--json", *args).json()[0]
        self.items[name] = row
        self.files[name] = path
        return row

    def sync(self, expect_items: int | None = None, timeout: float = 60) -> None:
        self.owner.ok("sync", "--wait", "--timeout", str(timeout))
        if expect_items is not None:
            self.wait_for(lambda: self.served_items() == expect_items, timeout)

    def served_items(self) -> int:
        r = self.get("/api/v1/collections")
        assert r.status == 200, r.body
        return sum(c["items"] for c in r.json()["collections"])

    def wait_for(self, check, timeout: float = 30) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("the mirror did not catch up in time")
            time.sleep(0.1)

    def stop(self) -> None:
        self.daemon.stop()


def make_nodes(root: Path) -> tuple[Cli, Cli, str, str, int, int]:
    owner = Cli(root / "owner", root / "owner-work")
    mirror = Cli(root / "mirror", root / "mirror-work")
    for c in (owner, mirror):
        c.cwd.mkdir(parents=True)
    owner.ok("init", "--name", "Sudan Archive (own name)")
    mirror.ok("init", "--name", "Public mirror", "--role", "mirror")
    owner_port, mirror_port = free_port(), free_port()
    oid, mid = peer_id(owner), peer_id(mirror)
    owner.ok(
        "peer",
        "add",
        mid,
        "--addr",
        f"/ip4/127.0.0.1/tcp/{mirror_port}",
        "--role",
        "mirror",
        "--name",
        "mirror",
    )
    # The name the mirror shows for the owner is the one its operator gave when trusting it.
    mirror.ok(
        "peer", "add", oid, "--addr", f"/ip4/127.0.0.1/tcp/{owner_port}", "--name", "أرشيف السودان"
    )
    return owner, mirror, oid, mid, owner_port, mirror_port


def build_world(root: Path, bulk: int = BULK) -> World:
    owner, mirror, oid, mid, _, mirror_port = make_nodes(root)
    col = owner.ok("collection", "create", "Witness statements", "--tier", "public", "--json")
    unpub = owner.ok("collection", "create", "Not published", "--tier", "public", "--json")
    closed = owner.ok("collection", "create", "Closed cases", "--tier", "closed", "--json")
    daemon = Daemon(mirror, mirror_port)
    world = World(owner, mirror, daemon, oid, mid)
    world.public_col = col.json()["id"]
    world.unpublished_col = unpub.json()["id"]
    world.closed_col = closed.json()["id"]
    work = owner.cwd

    video = work / "video.mp4"
    video.write_bytes(os.urandom(3 * MiB + 12_345))
    meta = {
        "title_ar": TITLE_AR,
        "title_en": TITLE_EN,
        "description_en": "Testimony recorded after the attack on the market.",
        "description_ar": "شهادة سُجّلت بعد الهجوم على السوق.",
        "tags": ["شهادات", "Darfur"],
        "captured_at": "2024-05-01T13:45:00Z",
        "source_url": "https://example.org/original?id=7",
        "location": {
            "name": "El Geneina",
            "lat": "13.4526",
            "lon": "22.4472",
            "precision": "exact",
        },
        "extra": {"collector": "staff member Khalid, +249 912 345 678"},
    }
    (work / "video.json").write_text(json.dumps(meta, ensure_ascii=False))
    world.add("Witness statements", "video", video, "--meta-file", str(work / "video.json"))

    report = work / ARABIC_NAME
    report.write_text("نص الإفادة\n", encoding="utf-8")
    meta2 = {
        "title_en": "Field report",
        "title_ar": "تقرير ميداني",
        "location": {"name": "Nyala", "lat": "12.0489", "lon": "24.8807", "precision": "city"},
        "extra": {"source_note": "published with consent", "contact": "amal@example.org"},
        "public_fields": ["location", "extra.source_note"],
    }
    (work / "report.json").write_text(json.dumps(meta2, ensure_ascii=False))
    world.add("Witness statements", "report", report, "--meta-file", str(work / "report.json"))

    photo = work / "photo.png"
    photo.write_bytes(png_bytes())
    world.add("Witness statements", "photo", photo, "--title", "Photo of the market")

    damage = work / "damage-me.bin"
    damage.write_bytes(os.urandom(2 * MiB + 100))
    world.add("Witness statements", "damage", damage, "--title", "Kept to be damaged")

    if bulk:
        folder = work / "bulk"
        folder.mkdir()
        for i in range(bulk):
            (folder / f"doc-{i:03d}.txt").write_text(f"document {i}\n")
        rows = owner.ok(
            "add", "Witness statements", str(folder), "--title", "Bulk document", "--json"
        ).json()
        for i, row in enumerate(rows):
            world.items[f"bulk-{i}"] = row

    hidden = work / "closed.txt"
    hidden.write_text("closed evidence\n")
    world.add("Closed cases", "closed", hidden, "--title", "Closed witness")
    secret = work / "unpublished.txt"
    secret.write_text("not published\n")
    world.add("Not published", "unpublished", secret, "--title", "Witness unpublished")

    owner.ok("publish", "Witness statements", mid)
    world.sync(expect_items=4 + bulk)
    return world
