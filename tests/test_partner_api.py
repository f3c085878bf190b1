"""The partner HTTP API (node/partner_api.py) against a real `amanah run` daemon, cross-checked
with the real CLI: uploads (in chunks, cut and resumed, across a restart), listings, downloads
with ranges, and every kind of bad request refused cleanly with nothing changed."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.nodeutil import MiB, block_ids, open_store
from tests.test_e2e_replication import Daemon, free_port, peer_id

pytestmark = pytest.mark.timeout(180)

ARABIC_NAME = "شهادة الشاهد ٣.mp4"


class EnvCli(Cli):
    """A CLI (and the daemon it starts) with extra environment: the upload limits."""

    def __init__(self, home: Path, cwd: Path, extra: dict[str, str] | None = None) -> None:
        super().__init__(home, cwd)
        self.extra = extra or {}

    def env(self, **extra: str) -> dict:
        return super().env(**{**self.extra, **extra})


class Api:
    """A small HTTP client: one connection per request, raw bytes in and out."""

    def __init__(self, daemon: Daemon) -> None:
        self.host, port = daemon.info["http"].rsplit(":", 1)
        self.port = int(port)
        self.token = (daemon.cli.home / "http.token").read_text().strip()

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        token: str | None = "",
    ) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = dict(headers or {})
        token = self.token if token == "" else token
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, doc: object = None, **kw) -> tuple[int, dict]:
        body = None if doc is None else json.dumps(doc).encode()
        status, _, raw = self.call(method, path, body, **kw)
        return status, json.loads(raw) if raw else {}

    def create(self, **doc) -> tuple[int, dict]:
        return self.json("POST", "/api/v1/uploads", doc)

    def patch(self, uid: str, offset: int, data: bytes, **kw) -> tuple[int, dict]:
        headers = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        status, _, raw = self.call("PATCH", f"/api/v1/uploads/{uid}", data, headers, **kw)
        return status, json.loads(raw) if raw else {}

    def offset(self, uid: str) -> int | None:
        status, headers, body = self.call("HEAD", f"/api/v1/uploads/{uid}")
        assert body == b""
        return int(headers["upload-offset"]) if status == 200 else None

    def raw(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=30)

    def raw_patch(self, uid: str, offset: int, length: int, extra: str = "") -> socket.socket:
        """A PATCH whose headers are sent and whose body is left to the caller."""
        s = self.raw()
        s.sendall(
            (
                f"PATCH /api/v1/uploads/{uid} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {self.token}\r\nUpload-Offset: {offset}\r\n"
                f"Content-Length: {length}\r\n{extra}\r\n"
            ).encode()
        )
        return s


def read_response(s: socket.socket) -> tuple[int, bytes]:
    """Status and everything the server sends until it closes or the body is complete."""
    data = b""
    while True:
        try:
            piece = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not piece:
            break
        data += piece
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = [
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                break
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def archive_digest(home: Path) -> str:
    """A digest of what the archive holds (logs, records, blocks; not the peers' sync state,
    which changes on its own): equal means nothing was stored or removed."""
    h = hashlib.sha256()
    with open_store(home) as (txn, dbs):
        for name in ("log", "cols", "records", "items", "blocks", "refs", "pending", "redacted"):
            h.update(b"\0db " + name.encode())
            for k, v in txn.cursor(dbs[name]):
                h.update(len(k).to_bytes(4, "big") + bytes(k))
                h.update(len(v).to_bytes(8, "big") + bytes(v))
    return h.hexdigest()


def uploads_dir(cli: Cli) -> list[str]:
    path = cli.home / "uploads"
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def start(cli: Cli) -> tuple[Daemon, Api]:
    daemon = Daemon(cli, free_port())
    return daemon, Api(daemon)


@pytest.fixture
def node_core(tmp_path):
    """An initialised node opened in this process (conftest's `node`, renamed: this module's
    `node` is a daemon)."""
    from amanah.node.home import Node, init_home

    from tests.conftest import PASSPHRASE

    home = tmp_path / "core"
    init_home(home, "core", PASSPHRASE)
    n = Node(home, lambda: PASSPHRASE)
    yield n
    n.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node and its daemon for the module: a closed and a public collection."""
    base = tmp_path_factory.mktemp("partner")
    (base / "work").mkdir()
    cli = EnvCli(base / "home", base / "work", {"AMANAH_UPLOAD_IDLE_TIMEOUT": "20"})
    cli.ok("init", "--name", "Partner API test")
    closed = cli.ok("collection", "create", "Cases", "--tier", "closed", "--json").json()["id"]
    public = cli.ok("collection", "create", "Reports", "--tier", "public", "--json").json()["id"]
    daemon, api = start(cli)
    yield cli, api, closed, public
    daemon.stop()


# --- uploads -------------------------------------------------------------------------------------


def test_upload_in_chunks_survives_a_cut_and_matches_the_cli(node):
    cli, api, closed, _ = node
    data = os.urandom(3 * MiB + 12_345)
    code, up = api.create(
        collection="Cases",  # by name, as the CLI takes it
        size=len(data),
        filename=ARABIC_NAME,
        metadata={"title_ar": "إفادة شاهد", "tags": ["حلب"], "captured_at": "2024-05-01T10:00:00Z"},
        sha256=hashlib.sha256(data).hexdigest(),
    )
    assert code == 201, up
    uid = up["id"]
    assert up["offset"] == 0 and up["collection"] == closed and up["filename"] == ARABIC_NAME
    assert api.offset(uid) == 0
    # the spool is private and shows neither the name nor the content
    spool = cli.home / "uploads"
    assert oct(spool.stat().st_mode & 0o777) == "0o700"
    for p in spool.iterdir():
        assert oct(p.stat().st_mode & 0o777) == "0o600"
        assert "شهادة".encode() not in p.read_bytes()

    # first chunk, as curl sends a large body: Expect: 100-continue, then the bytes
    s = api.raw_patch(uid, 0, MiB, "Expect: 100-continue\r\n")
    assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(data[:MiB])
    code, body = read_response(s)
    s.close()
    assert code == 200 and json.loads(body) == {"offset": MiB, "size": len(data), "complete": False}
    # second chunk, cut mid-body: the socket is closed after part of what it announced
    s = api.raw_patch(uid, MiB, MiB + 500_000)
    s.sendall(data[MiB : MiB + 700_000])
    time.sleep(0.3)
    s.close()
    offset = wait_for(lambda: (o := api.offset(uid)) > MiB and o, what="the cut chunk to land")
    assert MiB < offset <= MiB + 700_000
    assert spool.joinpath(f"{uid}.data").stat().st_size == offset
    assert data[:100] not in spool.joinpath(f"{uid}.data").read_bytes()  # encrypted at rest

    # resume from the offset the server reports (retrying while the cut request winds down)
    def resume() -> tuple[int, dict] | None:
        code, r = api.patch(uid, offset, data[offset:])
        return None if code == 423 else (code, r)

    code, r = wait_for(resume, what="the upload to be free")
    assert code == 200 and r["complete"], r
    item = r["item"]
    assert item["sha256"] == hashlib.sha256(data).hexdigest() and item["size"] == len(data)
    assert item["filename"] == ARABIC_NAME and item["collection"] == closed
    assert not spool.joinpath(f"{uid}.data").exists()
    # the outcome stays visible, and a repeated final PATCH returns it again
    assert api.offset(uid) == len(data)
    assert api.json("GET", f"/api/v1/uploads/{uid}")[1]["item"] == item
    assert api.patch(uid, len(data), b"") == (200, r)
    code, again = api.patch(uid, offset, data[offset:])  # the last chunk again: refused
    assert code == 409 and again["item"] == item

    # the CLI sees the same item, with the same bytes
    rows = cli.ok("ls", "Cases", "--json").json()
    [row] = [x for x in rows if x["id"] == item["id"]]
    assert row["metadata"]["filename"] == ARABIC_NAME
    assert row["metadata"]["title_ar"] == "إفادة شاهد" and row["metadata"]["tags"] == ["حلب"]
    out = cli.cwd / "from-cli.bin"
    cli.ok("get", item["id"], "-o", str(out))
    assert out.read_bytes() == data
    # and the API serves them back
    code, headers, body = api.call("GET", f"/api/v1/items/{item['id']}/content")
    assert code == 200 and body == data
    disposition = headers["content-disposition"]
    assert urllib.parse.unquote(disposition.split("filename*=UTF-8''")[1]) == ARABIC_NAME
    cli.ok("verify")


def test_an_upload_resumes_after_the_daemon_restarts(tmp_path):
    (tmp_path / "work").mkdir()
    cli = EnvCli(tmp_path / "home", tmp_path / "work")
    cli.ok("init", "--name", "restart")
    cli.ok("collection", "create", "Cases", "--tier", "trusted")
    data = os.urandom(2 * MiB + 1)
    daemon, api = start(cli)
    try:
        code, up = api.create(collection="Cases", size=len(data), filename="video.mp4")
        assert code == 201
        assert api.patch(up["id"], 0, data[:MiB])[0] == 200
    finally:
        daemon.stop()
    daemon, api = start(cli)
    try:
        assert api.offset(up["id"]) == MiB
        code, r = api.patch(up["id"], MiB, data[MiB:])
        assert code == 200 and r["complete"]
        out = cli.cwd / "v.mp4"
        cli.ok("get", r["item"]["id"], "-o", str(out))
        assert out.read_bytes() == data
        assert uploads_dir(cli) == [f"{up['id']}.state"]  # the outcome, until it expires
    finally:
        daemon.stop()


def test_bad_uploads_are_refused_and_change_nothing(node):
    cli, api, closed, public = node
    code, up = api.create(collection=public, size=1000, filename="a.txt")
    assert code == 201
    uid = up["id"]
    assert api.patch(uid, 0, b"x" * 100)[0] == 200
    before = archive_digest(cli.home), uploads_dir(cli)

    # wrong offset: 409 with the right one
    code, r = api.patch(uid, 0, b"y" * 10)
    assert code == 409 and r["offset"] == 100
    code, r = api.patch(uid, 500, b"y" * 10)
    assert code == 409 and r["offset"] == 100
    # more than declared: 413 before a byte is written
    code, r = api.patch(uid, 100, b"z" * 901)
    assert code == 413 and r["offset"] == 100
    # no Content-Length (chunked): 411; no or bad Upload-Offset: 400
    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    conn.putrequest("PATCH", f"/api/v1/uploads/{uid}")
    for k, v in {
        "Authorization": f"Bearer {api.token}",
        "Upload-Offset": "100",
        "Transfer-Encoding": "chunked",
    }.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(b"5\r\nhello\r\n0\r\n\r\n")
    assert conn.getresponse().status == 411
    conn.close()
    for bad in (None, "-1", "abc", "1e3", "١٠٠".encode(), "²"):
        headers = {} if bad is None else {"Upload-Offset": bad}
        code, _, raw = api.call("PATCH", f"/api/v1/uploads/{uid}", b"q", headers)
        assert code == 400 and json.loads(raw)["field"] == "Upload-Offset"
    assert api.offset(uid) == 100
    # Expect: 100-continue with a wrong offset is refused before the body is sent
    s = api.raw_patch(uid, 7, 1 << 30, "Expect: 100-continue\r\n")
    code, body = read_response(s)
    s.close()
    assert code == 409 and json.loads(body)["offset"] == 100

    # invalid metadata: 400 naming the field; no upload is created
    bad_metadata = {
        "title_en": ({"title_en": 5}, "metadata.title_en"),
        "captured_at": ({"captured_at": "yesterday"}, "metadata.captured_at"),
        "unknown": ({"title_en": "ok", "colour": "red"}, "metadata.colour"),
        "location": ({"location": {"lat": "33.5"}}, "metadata.location"),
        "tags": ({"tags": "one"}, "metadata.tags"),
        "extra": ({"extra": {"k": 1}}, "metadata.extra"),
        "url": ({"source_url": "javascript:alert(1)"}, "metadata.source_url"),
        "control": ({"title_ar": "سطر\x1b[31m"}, "metadata.title_ar"),
        "not an object": (["title_en"], "metadata"),
        "too large": ({"description_ar": "ب" * 19_000}, "metadata"),
    }
    for case, (meta, field) in bad_metadata.items():
        code, r = api.create(collection=closed, size=10, filename="a.txt", metadata=meta)
        assert code == 400 and r["field"] == field, (case, r)
        assert "metadata" in r["error"], r
    # bad file names, sizes and fields
    for name in ("../../etc/passwd", "/etc/passwd", "a/../b", "a//b", ".", "a\\b", "", "a\nb", 5):
        code, r = api.create(collection=closed, size=10, filename=name)
        assert code == 400 and r["field"] == "filename", (name, r)
    for size in (-1, "10", 1.5, True, None):
        code, r = api.create(collection=closed, size=size, filename="a")
        assert code == 400 and r["field"] == "size", (size, r)
    code, r = api.create(collection=closed, size=2 << 40, filename="a")  # past the cap
    assert code == 413 and r["field"] == "size"
    code, r = api.create(collection=closed, size=1, filename="a", owner="me")
    assert code == 400 and r["field"] == "owner"
    code, r = api.create(collection=closed, size=1, filename="a", sha256="ABC")
    assert code == 400 and r["field"] == "sha256"
    # unknown collections: 404
    for ref in ("No such", "col_" + "a" * 56, "col_x", "../Cases"):
        code, r = api.create(collection=ref, size=1, filename="a")
        assert code == 404 and r["field"] == "collection", (ref, r)
    # bodies that are not JSON objects, or too large
    for body in (b"", b"{", b"[1]", b'"x"', b"\xff\xfe"):
        assert api.call("POST", "/api/v1/uploads", body)[0] == 400
    assert api.call("POST", "/api/v1/uploads", b" " * (300 << 10))[0] == 413
    assert (archive_digest(cli.home), uploads_dir(cli)) == before

    # content that does not match the declared SHA-256: 422, the upload discarded, nothing stored
    code, bad = api.create(collection=closed, size=5, filename="a", sha256="0" * 64)
    assert code == 201
    code, r = api.patch(bad["id"], 0, b"hello")
    assert code == 422 and r["field"] == "sha256"
    assert api.offset(bad["id"]) is None
    assert (archive_digest(cli.home), uploads_dir(cli)) == before

    # cancel
    assert api.call("DELETE", f"/api/v1/uploads/{uid}")[0] == 204
    assert api.offset(uid) is None and api.call("DELETE", f"/api/v1/uploads/{uid}")[0] == 404
    assert not any(n.startswith(uid) for n in uploads_dir(cli))
    assert archive_digest(cli.home) == before[0]

    # an empty file is an upload of size 0, completed by a PATCH of 0 bytes
    code, empty = api.create(collection=public, size=0, filename="empty.txt")
    code, r = api.patch(empty["id"], 0, b"")
    assert code == 200 and r["item"]["sha256"] == hashlib.sha256(b"").hexdigest()


def test_every_route_needs_the_token(node):
    cli, api, closed, _ = node
    code, up = api.create(collection=closed, size=10, filename="t")
    uid = up["id"]
    src = cli.cwd / "token-test.txt"
    src.write_text("x")
    item = cli.ok("add", "Cases", str(src), "--json").json()[0]["id"]
    routes = [
        ("GET", "/api/v1/collections"),
        ("GET", f"/api/v1/collections/{closed}"),
        ("GET", f"/api/v1/collections/{closed}/items"),
        ("GET", f"/api/v1/items/{item}"),
        ("GET", f"/api/v1/items/{item}/content"),
        ("HEAD", f"/api/v1/items/{item}/content"),
        ("POST", "/api/v1/uploads"),
        ("GET", "/api/v1/uploads"),
        ("GET", f"/api/v1/uploads/{uid}"),
        ("HEAD", f"/api/v1/uploads/{uid}"),
        ("PATCH", f"/api/v1/uploads/{uid}"),
        ("DELETE", f"/api/v1/uploads/{uid}"),
        ("GET", "/api/v1/openapi.json"),
    ]
    body = json.dumps({"collection": closed, "size": 1, "filename": "x"}).encode()
    for bad in (None, "", "wrong", api.token + "x", api.token[:-1]):
        for method, path in routes:
            headers = {"Upload-Offset": "0"}
            if bad == "":
                headers["Authorization"] = "Basic " + api.token  # the right token, wrong scheme
            code, _, raw = api.call(method, path, body, headers, token=None if bad == "" else bad)
            assert code == 401, (bad, method, path)
            assert raw == b"" if method == "HEAD" else b"token" in raw
            assert api.token.encode() not in raw
    # Expect: 100-continue without the token: refused before a byte of the body is sent
    s = api.raw()
    s.sendall(
        f"PATCH /api/v1/uploads/{uid} HTTP/1.1\r\nHost: x\r\nUpload-Offset: 0\r\n"
        "Content-Length: 10\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    assert read_response(s)[0] == 401
    s.close()
    assert api.offset(uid) == 0 and len(api.json("GET", "/api/v1/uploads")[1]["uploads"]) >= 1
    assert api.call("DELETE", f"/api/v1/uploads/{uid}")[0] == 204


def test_path_tricks_find_nothing(node):
    cli, api, closed, _ = node
    token = api.token.encode()
    identity = (cli.home / "identity").read_bytes()[:32]
    for path in (
        "/api/v1/items/../../http.token",
        "/api/v1/items/..%2F..%2Fhttp.token",
        "/api/v1/items/%2e%2e/%2e%2e/identity/content",
        "/api/v1/items/itm_%00/content",
        "/api/v1/items/itm_" + "a" * 56,
        "/api/v1/items/" + closed,  # a collection id is not an item
        "/api/v1/uploads/../http.token",
        "/api/v1/uploads/..%2Fhttp.token",
        "/api/v1/uploads/%2e%2e%2fidentity",
        "/api/v1/uploads/" + "0" * 32,
        "/api/v1/uploads/" + "A" * 32,
        "/api/v1/uploads/..%2F..%2Fconfig.toml",
        "/api/v1/collections/..%2F..%2Fstore/items",
        "/api/v1/collections/" + "col_" + "b" * 56,
        "/api/v1/collections/Cases/items",  # names are for the CLI; paths take ids
        "//api/v1/collections/../../../etc/passwd",
    ):
        for method in ("GET", "HEAD", "PATCH", "DELETE"):
            code, _, raw = api.call(method, path, b"", {"Upload-Offset": "0"})
            assert code in (404, 405), (method, path, code)
            assert code == 404 or method not in ("GET",), (method, path, code)
            assert token not in raw and identity not in raw


# --- reading --------------------------------------------------------------------------------------


def test_items_added_by_the_cli_are_listed_and_downloadable_with_ranges(node, tmp_path):
    cli, api, _, _ = node
    public = cli.ok("collection", "create", "Notes", "--tier", "public", "--json").json()["id"]
    data = os.urandom(2 * MiB + 777)
    src = cli.cwd / ARABIC_NAME
    src.write_bytes(data)
    [added] = cli.ok("add", "Notes", str(src), "--title-ar", "تقرير", "--json").json()
    folder = cli.cwd / "many"
    folder.mkdir()
    for i in range(55):
        (folder / f"note-{i:02}.txt").write_text(f"note {i}")
    cli.ok("add", "Notes", str(folder))

    # listing: collections, then items newest first, 50 a page
    code, doc = api.json("GET", "/api/v1/collections")
    by_id = {c["id"]: c for c in doc["collections"]}
    assert by_id[public]["name"] == "Notes" and by_id[public]["owned"]
    code, col = api.json("GET", f"/api/v1/collections/{public}")
    assert code == 200 and col["items"] == 56 and col["replication"]["complete"]
    code, page1 = api.json("GET", f"/api/v1/collections/{public}/items")
    assert code == 200 and len(page1["items"]) == 50 and page1["next_page"] == 2
    code, page2 = api.json("GET", f"/api/v1/collections/{public}/items?page=2")
    assert len(page2["items"]) == 6 and page2["next_page"] is None
    listed = page1["items"] + page2["items"]
    assert listed == list(reversed(cli.ok("ls", "Notes", "--json").json()))
    assert listed[-1]["id"] == added["id"]
    assert api.json("GET", f"/api/v1/collections/{public}/items?page=3")[1]["items"] == []
    for bad in ("0", "-1", "x", "99999999999", "%C2%B2", "%D9%A1"):
        code, r = api.json("GET", f"/api/v1/collections/{public}/items?page={bad}")
        assert code == 400 and r["field"] == "page"
    code, row = api.json("GET", f"/api/v1/items/{added['id']}")
    assert row["metadata"]["title_ar"] == "تقرير" and row["collection"] == public

    # the whole file, verified, with its digest
    url = f"/api/v1/items/{added['id']}/content"
    code, headers, body = api.call("GET", url)
    assert code == 200 and body == data
    assert headers["repr-digest"].startswith("sha-256=:")
    assert headers["accept-ranges"] == "bytes" and headers["content-length"] == str(len(data))
    code, headers, body = api.call("HEAD", url)
    assert code == 200 and body == b"" and headers["content-length"] == str(len(data))
    etag = headers["etag"]
    # ranges: inside a block, across blocks, open, suffix, clipped
    size = len(data)
    for spec, first, last in [
        ("bytes=0-0", 0, 0),
        ("bytes=10-99", 10, 99),
        (f"bytes={MiB - 5}-{MiB + 5}", MiB - 5, MiB + 5),
        (f"bytes={MiB}-", MiB, size - 1),
        ("bytes=-100", size - 100, size - 1),
        (f"bytes=100-{size * 3}", 100, size - 1),
        (f"bytes={2 * MiB}-{2 * MiB}", 2 * MiB, 2 * MiB),
    ]:
        code, headers, body = api.call("GET", url, headers={"Range": spec})
        assert code == 206, spec
        assert body == data[first : last + 1], spec
        assert headers["content-range"] == f"bytes {first}-{last}/{size}"
    for spec in (f"bytes={size}-", "bytes=-0", f"bytes={size + 10}-{size + 20}"):
        code, headers, _ = api.call("GET", url, headers={"Range": spec})
        assert code == 416 and headers["content-range"] == f"bytes */{size}", spec
    for spec in ("bytes=0-1,5-6", "items=0-1", "bytes=9-2", "bytes=x-y"):  # ignored: all of it
        code, _, body = api.call("GET", url, headers={"Range": spec})
        assert code == 200 and body == data, spec
    code, _, body = api.call("GET", url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert code == 206 and body == data[:10]
    code, _, body = api.call("GET", url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert code == 200 and body == data

    # an empty file
    empty = cli.cwd / "empty.txt"
    empty.write_bytes(b"")
    [e] = cli.ok("add", "Notes", str(empty), "--json").json()
    code, headers, body = api.call("GET", f"/api/v1/items/{e['id']}/content")
    assert code == 200 and body == b"" and headers["content-length"] == "0"
    assert (
        api.call("GET", f"/api/v1/items/{e['id']}/content", headers={"Range": "bytes=0-"})[0] == 416
    )

    # a redacted item is gone (410), listed only with all=1
    cli.ok("redact", e["id"], "--reason", "consent withdrawn")
    code, r = api.json("GET", f"/api/v1/items/{e['id']}/content")
    assert code == 410 and "consent withdrawn" in r["error"]
    assert api.json("GET", f"/api/v1/items/{e['id']}")[1]["redacted"] is True
    ids_ = [x["id"] for x in api.json("GET", f"/api/v1/collections/{public}/items")[1]["items"]]
    assert e["id"] not in ids_
    code, page = api.json("GET", f"/api/v1/collections/{public}/items?all=1")
    assert page["items"][0]["id"] == e["id"] and page["items"][0]["redacted"]

    # the description is served, and lists every route mounted
    code, spec = api.json("GET", "/api/v1/openapi.json")
    assert code == 200 and "/api/v1/uploads/{upload}" in spec["paths"]


def test_damaged_blocks_are_never_served(node):
    cli, api, _, public = node
    data = os.urandom(6 * MiB)
    src = cli.cwd / "damaged.bin"
    src.write_bytes(data)
    before = block_ids(cli.home)
    [added] = cli.ok("add", "Reports", str(src), "--json").json()
    new = sorted(block_ids(cli.home) - before)
    blocks = [data[i * MiB : (i + 1) * MiB] for i in range(6)]
    ids_of = {hashlib.sha256(b).digest(): i for i, b in enumerate(blocks)}
    order = {ids_of[b[2:]]: b for b in new if b[2:] in ids_of}
    assert len(order) == 6
    url = f"/api/v1/items/{added['id']}/content"

    def damage(index: int) -> None:
        with open_store(cli.home, write=True) as (txn, dbs):
            key = order[index] + (0).to_bytes(2, "big")
            value = bytearray(txn.get(key, db=dbs["blocks"]))
            value[0] ^= 1
            txn.put(key, bytes(value), db=dbs["blocks"])

    # the last block damaged (read after the headers are out): the body stops short of it
    damage(5)
    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    conn.request("GET", url, headers={"Authorization": f"Bearer {api.token}"})
    r = conn.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead) as exc:
        r.read()
    assert bytes(exc.value.partial) == data[: 4 * MiB]  # the first batch of 4 blocks
    conn.close()
    # a range that avoids it is served; one that touches it is cut
    code, _, body = api.call("GET", url, headers={"Range": "bytes=0-99"})
    assert code == 206 and body == data[:100]
    # the first block damaged: a clean 500, no byte of content
    damage(0)
    code, r = api.json("GET", url)
    assert code == 500 and r["damaged"] and "damaged" in r["error"]
    assert cli("get", added["id"], "-o", str(cli.cwd / "x")).code == 1  # the CLI agrees
    cli.ok("redact", added["id"], "--reason", "damaged on purpose by a test")


# --- limits, ownership ----------------------------------------------------------------------------


def test_limits_open_uploads_slow_clients_busy_and_expiry(tmp_path):
    (tmp_path / "work").mkdir()
    cli = EnvCli(
        tmp_path / "home",
        tmp_path / "work",
        {"AMANAH_UPLOAD_MAX_OPEN": "2", "AMANAH_UPLOAD_IDLE_TIMEOUT": "1"},
    )
    cli.ok("init", "--name", "limits")
    cli.ok("collection", "create", "Cases", "--tier", "closed")
    daemon, api = start(cli)
    try:
        a = api.create(collection="Cases", size=100, filename="a")[1]["id"]
        b = api.create(collection="Cases", size=100, filename="b")[1]["id"]
        code, r = api.create(collection="Cases", size=100, filename="c")
        assert code == 429 and "open" in r["error"]

        # a client that goes quiet mid-body: 408 after the idle timeout, what came is kept
        s = api.raw_patch(a, 0, 100)
        s.sendall(b"x" * 40)
        # meanwhile the upload is busy for anyone else
        assert api.patch(a, 0, b"y")[0] == 423
        assert api.call("DELETE", f"/api/v1/uploads/{a}")[0] == 423
        started = time.monotonic()
        code, body = read_response(s)
        s.close()
        assert code == 408 and json.loads(body)["offset"] == 40
        assert 0.9 < time.monotonic() - started < 10
        assert api.offset(a) == 40

        # an upload untouched for a day is removed (at the next sweep: a new upload runs one)
        day_ago = time.time() - 25 * 3600
        for name in uploads_dir(cli):
            if name.startswith(b):
                os.utime(cli.home / "uploads" / name, (day_ago, day_ago))
        code, c = api.create(collection="Cases", size=1, filename="c")
        assert code == 201
        assert api.offset(b) is None
        assert not any(n.startswith(b) for n in uploads_dir(cli))
        assert api.offset(a) == 40
    finally:
        daemon.stop()


def test_a_collection_held_for_another_owner_is_read_only(tmp_path):
    clis = {}
    for name in "ab":
        (tmp_path / f"work-{name}").mkdir()
        clis[name] = EnvCli(tmp_path / f"home-{name}", tmp_path / f"work-{name}")
        clis[name].ok("init", "--name", name)
    a, b = clis["a"], clis["b"]
    ports = {"a": free_port(), "b": free_port()}
    a.ok("peer", "add", peer_id(b), "--addr", f"/ip4/127.0.0.1/tcp/{ports['b']}", "--name", "b")
    b.ok("peer", "add", peer_id(a), "--addr", f"/ip4/127.0.0.1/tcp/{ports['a']}", "--name", "a")
    theirs = b.ok("collection", "create", "B's cases", "--tier", "closed", "--json").json()["id"]
    b.ok("share", "B's cases", "a")  # A holds ciphertext it cannot read
    src = b.cwd / "s.txt"
    src.write_text("statement")
    [item] = b.ok("add", "B's cases", str(src), "--json").json()
    da, db = Daemon(a, ports["a"]), Daemon(b, ports["b"])
    try:
        b.ok("sync", "--wait", "--timeout", "60")
        api = Api(da)
        code, doc = api.json("GET", "/api/v1/collections")
        [col] = [c for c in doc["collections"] if c["id"] == theirs]
        assert col == {
            "id": theirs,
            "name": None,
            "tier": "closed",
            "owned": False,
            "readable": False,
            "log_length": col["log_length"],
        }
        before = archive_digest(a.home)
        code, r = api.create(collection=theirs, size=1, filename="x")
        assert code == 403 and r["field"] == "collection"
        code, row = api.json("GET", f"/api/v1/items/{item['id']}")
        assert code == 200 and row["readable"] is False and row["metadata"] is None
        code, r = api.json("GET", f"/api/v1/items/{item['id']}/content")
        assert code == 403 and "ciphertext" in r["error"]
        assert archive_digest(a.home) == before and uploads_dir(a) == []
    finally:
        da.stop()
        db.stop()


# --- the core pieces the API added, in process ---------------------------------------------------


def test_newest_first_paging_stays_inside_each_collection(node_core, tmp_path):
    """archive.raw_entries(reverse=True) and list_items(newest_first, skip), whichever collection
    sorts first or last in the log database."""
    from amanah.node import collections, ingest, items

    names = [f"c{i}" for i in range(4)]
    for name in names:
        info = collections.create(node_core, name, "public")
        for j in range(3):
            path = tmp_path / f"{name}-{j}.txt"
            path.write_text(f"{name} {j}")
            ingest.add(node_core, info, ingest.gather([path]), {})
    for name in names:
        state = collections.resolve(node_core, name).state
        with node_core.store.read() as txn:
            forward = [s for s, _ in node_core.archive.raw_entries(txn, state.id)]
            backward = [s for s, _ in node_core.archive.raw_entries(txn, state.id, reverse=True)]
            tail = [s for s, _ in node_core.archive.raw_entries(txn, state.id, 2, reverse=True)]
        assert backward == forward[::-1] == [3, 2, 1, 0] and tail == [3, 2]
        oldest_first = list(items.list_items(node_core, state))
        newest = list(items.list_items(node_core, state, newest_first=True))
        assert newest == oldest_first[::-1]
        assert list(items.list_items(node_core, state, newest_first=True, skip=2)) == newest[2:]
        assert {r["metadata"]["filename"] for r in newest} == {f"{name}-{j}.txt" for j in range(3)}


def test_an_opener_feeds_ingest_and_metadata_is_checked_up_front(node_core, tmp_path):
    import io

    from amanah.node import collections, errors, ingest, items

    info = collections.create(node_core, "k", "closed")
    for size in (0, 10, ingest.CHUNK, ingest.CHUNK + 1, 3 * ingest.CHUNK + 5):
        data = os.urandom(size)
        source = ingest.Source(tmp_path / "unused", "مصدر.bin", size, lambda d=data: io.BytesIO(d))
        [added] = ingest.add(node_core, info, [source], {})
        assert added.sha256 == hashlib.sha256(data).hexdigest() and added.size == size
        out = tmp_path / f"out-{size}"
        items.get(node_core, added.id, str(out))
        assert out.read_bytes() == data
    ingest.check_metadata_fits({"title_ar": "ب" * 1000}, "a.txt", 10)
    with pytest.raises(errors.InvalidInput, match="metadata larger"):
        ingest.check_metadata_fits({"description_ar": "ب" * 16_500}, "a.txt", 10)
