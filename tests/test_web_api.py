"""The mirror's public JSON API, downloads, search, feed and bad input, against real daemons.

One owner and one mirror (real `amanah` processes, real LMDB) are set up once for the module:
see tests/webutil.py. Range choice tested here (and documented in node/web/content.py): a
malformed bytes range is rejected with 416, like an unsatisfiable one.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import nacl.signing
import pytest
from amanah.protocol import cbor, ids
from amanah.protocol import item as item_mod

from .nodeutil import open_store
from .webutil import ARABIC_NAME, BULK, TITLE_AR, TITLE_EN, MiB, World, build_world, request

pytestmark = pytest.mark.timeout(300)

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = build_world(tmp_path_factory.mktemp("web-api"))
    yield w
    w.stop()


def item_id(world: World, name: str) -> str:
    return world.items[name]["id"]


# --- collections and pagination -------------------------------------------------------------


def test_collections_lists_only_the_published_public_collection(world):
    r = world.get("/api/v1/collections")
    assert r.status == 200
    assert r.header("Content-Type") == "application/json; charset=utf-8"
    cols = r.json()["collections"]
    assert [c["id"] for c in cols] == [world.public_col]
    c = cols[0]
    assert c["name"] == "Witness statements"
    assert c["items"] == 4 + BULK
    assert c["owner"] == {
        "peer_id": world.owner_id,
        "name": "أرشيف السودان",
        "public_key": ids.public_key_from_peer_id(world.owner_id).hex(),
    }
    single = world.get(f"/api/v1/collections/{world.public_col}").json()
    assert single == c


def test_items_are_paginated_fifty_a_page_newest_first(world):
    base = f"/api/v1/collections/{world.public_col}/items"
    first = world.get(base).json()
    assert first == world.get(base + "?page=1").json()
    assert (first["page"], first["page_size"], first["pages"]) == (1, 50, 2)
    assert first["total"] == 4 + BULK
    second = world.get(base + "?page=2").json()
    assert len(first["items"]) == 50 and len(second["items"]) == 4 + BULK - 50
    everything = first["items"] + second["items"]
    positions = [i["position"] for i in everything]
    assert positions == sorted(positions, reverse=True)  # a batch's items share its entry's
    assert len({i["id"] for i in everything}) == 4 + BULK
    assert first["links"] == {"prev": None, "next": f"{base}?page=2"}
    assert second["links"] == {"prev": f"{base}?page=1", "next": None}
    # the oldest item (the video) is last; the newest bulk document first
    assert second["items"][-1]["id"] == item_id(world, "video")
    assert first["items"][0]["id"] == item_id(world, f"bulk-{BULK - 1}")
    summary = second["items"][-1]
    assert summary["title_ar"] == TITLE_AR and summary["title_en"] == TITLE_EN
    assert summary["sha256"] == world.items["video"]["sha256"]
    for bad in ("0", "-1", "abc", "1.5", "", "٢", "1e3", "99999999999", "1&page=2"):
        r = world.get(base + "?page=" + urllib.parse.quote(bad, safe="&="))
        assert r.status == 400, bad
        assert "page" in r.json()["error"]
    r = world.get(base + "?page=3")
    assert (r.status, r.json()) == (404, {"error": "Not Found"})


# --- the item document and its proof ------------------------------------------------------------


def test_item_document_carries_the_proof_and_verifies_independently(world, tmp_path):
    video = item_id(world, "video")
    r = world.get(f"/api/v1/items/{video}")
    assert r.status == 200
    doc = r.json()
    row = world.items["video"]
    assert doc["id"] == video
    assert (doc["sha256"], doc["size"]) == (row["sha256"], row["size"])
    assert (doc["mime"], doc["filename"]) == ("video/mp4", "video.mp4")
    assert doc["collection"] == {"id": world.public_col, "name": "Witness statements"}
    assert doc["metadata"]["title_ar"] == TITLE_AR
    assert doc["owner"]["peer_id"] == world.owner_id
    assert doc["owner"]["name"] == "أرشيف السودان"
    assert doc["log"]["position"] == 1
    assert doc["log"]["collection"] == world.public_col
    assert len(bytes.fromhex(doc["log"]["signature"])) == 64
    assert any("sha256sum" in step for step in doc["verify"]["steps"])

    # The raw record and entry check out by hand: record hash = item id, signature valid.
    record = world.get(f"/api/v1/items/{video}/record").body
    entry_raw = world.get(f"/api/v1/items/{video}/entry").body
    assert ids.sha256_id(record) == ids.from_text(video, "itm")
    assert hashlib.sha256(record).hexdigest() == doc["record_sha256"]
    entry = cbor.decode(entry_raw, 65_000)
    signed = cbor.encode(["amanah/log-entry", 1, entry["body"]])
    owner_key = bytes.fromhex(doc["owner"]["public_key"])
    nacl.signing.VerifyKey(owner_key).verify(signed, entry["sig"])
    assert entry["sig"].hex() == doc["log"]["signature"]
    assert entry["body"]["seq"] == doc["log"]["position"]

    # The script the page gives, run on the downloaded files, passes; a changed file fails.
    content = world.get(f"/api/v1/items/{video}/content").body
    script = doc["verify"]["script"]
    ok = run_proof(tmp_path, script, "video.mp4", content, record, entry_raw)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: signed by {world.owner_id} at position 1")
    bad = run_proof(tmp_path, script, "video.mp4", b"X" + content[1:], record, entry_raw)
    assert bad.returncode != 0 and "the file differs" in bad.stderr


def run_proof(
    where: Path, script: str, name: str, content: bytes, record: bytes, entry: bytes
) -> subprocess.CompletedProcess:
    """Run an item page's verification script on the files, as an investigator would."""
    for file, data in ((name, content), ("record.cbor", record), ("entry.cbor", entry)):
        (where / file).write_bytes(data)
    (where / "verify_amanah.py").write_text(script)
    cmd = [sys.executable, "verify_amanah.py", name, "record.cbor", "entry.cbor"]
    return subprocess.run(cmd, cwd=where, capture_output=True, text=True, timeout=60)


def test_the_proof_of_an_item_added_in_a_batch_checks_its_place_in_the_entry(world, tmp_path):
    doc_id = item_id(world, "bulk-3")
    doc = world.get(f"/api/v1/items/{doc_id}").json()
    entry_raw = world.get(f"/api/v1/items/{doc_id}/entry").body
    body = cbor.decode(entry_raw, 65_000)["body"]
    assert ids.from_text(doc_id, "itm") in body["items"]  # one signed entry for the folder
    content = world.get(f"/api/v1/items/{doc_id}/content").body
    record = world.get(f"/api/v1/items/{doc_id}/record").body
    script = doc["verify"]["script"]
    ok = run_proof(tmp_path, script, "doc.txt", content, record, entry_raw)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: signed by {world.owner_id} at position {body['seq']}")
    # another item's entry, validly signed, does not prove this item
    other = world.get(f"/api/v1/items/{item_id(world, 'video')}/entry").body
    bad = run_proof(tmp_path, script, "doc.txt", content, record, other)
    assert bad.returncode != 0 and "the entry does not name this item" in bad.stderr


def test_the_allow_list_hides_precise_location_and_free_fields_unless_listed(world):
    video = world.get(f"/api/v1/items/{item_id(world, 'video')}").json()
    assert video["metadata"]["location"] == {"name": "El Geneina"}
    assert "extra" not in video["metadata"]
    raw = json.dumps(video, ensure_ascii=False)
    for secret in ("13.4526", "22.4472", "Khalid", "+249", "collector", "exact"):
        assert secret not in raw
    page = world.get(f"/items/{item_id(world, 'video')}").text
    for secret in ("13.4526", "22.4472", "Khalid", "+249", "collector"):
        assert secret not in page

    report = world.get(f"/api/v1/items/{item_id(world, 'report')}").json()
    assert report["metadata"]["location"] == {
        "name": "Nyala",
        "lat": "12.0489",
        "lon": "24.8807",
        "precision": "city",
    }
    assert report["metadata"]["extra"] == {"source_note": "published with consent"}
    assert "amal@example.org" not in json.dumps(report)
    assert "public_fields" not in report["metadata"]
    page = world.get(f"/items/{item_id(world, 'report')}").text
    assert "12.0489" in page and "published with consent" in page
    assert "amal@example.org" not in page


# --- search -----------------------------------------------------------------------------------


def search_ids(world: World, q: str, page: int | None = None) -> list[str]:
    path = "/api/v1/search?q=" + urllib.parse.quote(q)
    if page is not None:
        path += f"&page={page}"
    r = world.get(path)
    assert r.status == 200, r.body
    return [i["id"] for i in r.json()["items"]]


def test_search_normalises_arabic_and_folds_english_case(world):
    video = item_id(world, "video")
    variants = [
        "افادة",  # bare alef for the hamza form in the title
        "إفادة",  # as written
        "\u0627\u0654\u0641\u0627\u062f\u0629",  # decomposed (NFD-like): NFC makes it أ
        "إِفَادَة",  # with harakat
        "افـــادة",  # with tatweel
        "الشّاهِد",  # shadda and kasra on the second word
        "شاهد",  # without the article
        "افادة الشاهد",  # every word must match
        "witness",
        "WITNESS statement",
        "WiTnEsS",
        "darfur",  # a tag
        "شهادات",  # an Arabic tag
        "testimony",  # the English description
        "السوق",  # the Arabic description
        "wit",  # a prefix
    ]
    for q in variants:
        assert search_ids(world, q) == [video], q
    # ة -> ه is off by default: a query with ه does not find ة
    assert search_ids(world, "افاده") == []
    assert search_ids(world, "witness nothere") == []
    assert search_ids(world, "") == []
    # not indexed: file names, free fields, non-published fields, other collections
    assert search_ids(world, "Khalid") == []
    assert search_ids(world, "unpublished") == []
    assert search_ids(world, "Closed") == []
    assert search_ids(world, "تقرير") == [item_id(world, "report")]


def test_search_results_are_paginated_newest_first(world):
    first = world.get("/api/v1/search?q=bulk").json()
    assert (first["total"], first["pages"]) == (BULK, 2)
    rest = search_ids(world, "bulk", 2)
    got = [i["id"] for i in first["items"]] + rest
    assert len(got) == BULK == len(set(got))
    assert got[0] == item_id(world, f"bulk-{BULK - 1}")
    assert world.get("/api/v1/search?q=" + "x" * 257).status == 400
    assert world.get("/api/v1/search?q=bulk&page=0").status == 400


# --- downloads ---------------------------------------------------------------------------------


def content(world: World, name: str) -> str:
    return f"/api/v1/items/{item_id(world, name)}/content"


def test_download_whole_file_with_its_headers(world):
    data = world.files["video"].read_bytes()
    r = world.get(content(world, "video"))
    assert r.status == 200 and r.body == data
    assert hashlib.sha256(r.body).hexdigest() == world.items["video"]["sha256"]
    assert r.header("Content-Length") == str(len(data))
    assert r.header("Content-Type") == "video/mp4"
    assert r.header("Accept-Ranges") == "bytes"
    assert r.header("ETag") == f'"{item_id(world, "video")}"'
    assert r.header("Content-Disposition").startswith("attachment;")


@pytest.mark.parametrize(
    "spec, first, last",
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=1048570-1048590", 1048570, 1048590),  # across a block boundary
        ("bytes=2097100-", 2097100, None),  # open-ended, through two blocks
        ("bytes=-10", -10, None),  # suffix
        ("bytes=100-99999999", 100, None),  # last beyond the end: clamped
        ("bytes=-99999999", 0, None),  # suffix longer than the file: all of it
        ("BYTES = 5 - 9", 5, 9),  # case and whitespace tolerated
    ],
)
def test_single_ranges(world, spec, first, last):
    data = world.files["video"].read_bytes()
    size = len(data)
    lo = first if first >= 0 else size + first
    hi = size - 1 if last is None else last
    r = world.get(content(world, "video"), {"Range": spec})
    assert r.status == 206, (spec, r.body[:100])
    assert r.body == data[lo : hi + 1]
    assert r.header("Content-Range") == f"bytes {lo}-{hi}/{size}"
    assert r.header("Content-Length") == str(hi - lo + 1)


def test_unsatisfiable_and_malformed_ranges_answer_416(world):
    size = world.items["video"]["size"]
    for spec in (
        f"bytes={size}-",  # starts at the end
        f"bytes={size + 10}-{size + 20}",
        "bytes=-0",  # empty suffix
        "bytes=5-2",  # last before first: invalid
        "bytes=abc",
        "bytes=-",
        "bytes=",
        "bytes=1-2-3",
        "bytes=0x10-20",
        "bytes=1" + "0" * 30 + "-",
        "bytes=0-1,abc",
    ):
        r = world.get(content(world, "video"), {"Range": spec})
        assert r.status == 416, spec
        assert r.header("Content-Range") == f"bytes */{size}", spec
        assert r.json() == {"error": "Range Not Satisfiable"}
    # the item is unchanged and still served whole
    assert world.get(content(world, "video")).body == world.files["video"].read_bytes()


def test_ranges_that_are_ignored(world):
    data = world.files["video"].read_bytes()
    etag = f'"{item_id(world, "video")}"'
    for headers in (
        {"Range": "bytes=0-1,5-6"},  # several ranges: ignored, whole file
        {"Range": "items=0-5"},  # another unit: ignored
        {"Range": "bytes=0-9", "If-Range": '"another"'},  # a stale validator: whole file
        {"Range": "bytes=0-9", "If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"},
    ):
        r = world.get(content(world, "video"), headers)
        assert r.status == 200 and r.body == data, headers
    r = world.get(content(world, "video"), {"Range": "bytes=0-9", "If-Range": etag})
    assert r.status == 206 and r.body == data[:10]


def test_head_etag_and_if_none_match(world):
    path = content(world, "video")
    etag = f'"{item_id(world, "video")}"'
    get = world.get(path)
    head = world.get(path, method="HEAD")
    assert head.status == 200 and head.body == b""
    for h in ("Content-Length", "Content-Type", "ETag", "Content-Disposition", "Accept-Ranges"):
        assert head.header(h) == get.header(h), h
    head = world.get(path, {"Range": "bytes=-5"}, method="HEAD")
    assert head.status == 206 and head.header("Content-Length") == "5" and head.body == b""
    for inm in (etag, f"W/{etag}", f'"x", {etag}', "*"):
        r = world.get(path, {"If-None-Match": inm})
        assert r.status == 304 and r.body == b"", inm
        assert r.header("ETag") == etag
    assert world.get(path, {"If-None-Match": '"other"'}).status == 200
    # the item document has its own validator
    doc_path = f"/api/v1/items/{item_id(world, 'video')}"
    doc = world.get(doc_path)
    assert doc.header("ETag")
    assert world.get(doc_path, {"If-None-Match": doc.header("ETag")}).status == 304
    assert world.get(doc_path, method="HEAD").header("Content-Length") == str(len(doc.body))


def test_content_disposition_keeps_an_arabic_file_name(world):
    r = world.get(content(world, "report"))
    assert r.status == 200 and r.body == world.files["report"].read_bytes()
    disposition = r.header("Content-Disposition")
    kind, fallback, extended = [p.strip() for p in disposition.split(";")]
    assert kind == "attachment"
    assert fallback.startswith('filename="') and fallback.isascii()
    assert fallback.endswith('.txt"')
    assert extended.startswith("filename*=UTF-8''")
    assert urllib.parse.unquote(extended.split("''", 1)[1]) == ARABIC_NAME
    # inline only for what browsers preview safely (images, video, audio)
    inline = world.get(content(world, "photo") + "?inline=1")
    assert inline.header("Content-Disposition").startswith("inline;")
    assert inline.header("Content-Type") == "image/png"
    text = world.get(content(world, "report") + "?inline=1")
    assert text.header("Content-Disposition").startswith("attachment;")
    assert "sandbox" in inline.header("Content-Security-Policy")


def test_a_damaged_block_ends_the_download_and_is_logged(world):
    name = "damage"
    item = item_id(world, name)
    data = world.files[name].read_bytes()
    # Damage the second block of the item in the mirror's store (LMDB is multi-process).
    with open_store(world.mirror.home) as (txn, dbs):
        record = bytes(txn.get(ids.from_text(item, "itm"), db=dbs["records"]))
    block = item_mod.parse_record(record).inline_blocks()[1]
    with open_store(world.mirror.home, write=True) as (txn, dbs):
        key = block + (0).to_bytes(2, "big")
        value = bytearray(txn.get(key, db=dbs["blocks"]))
        value[0] ^= 1
        txn.put(key, bytes(value), db=dbs["blocks"])
    host, port = world.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", content(world, name))
    r = conn.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead) as exc:
        r.read()
    got = exc.value.partial
    assert len(got) <= MiB and got == data[: len(got)]  # never a wrong byte
    conn.close()
    # the first block alone is still served; the damage is in the daemon's log
    r = world.get(content(world, name), {"Range": "bytes=0-99"})
    assert r.status == 206 and r.body == data[:100]
    log = (world.mirror.home.parent / "mirror.log").read_text()
    assert f"download of {item} ended early" in log and "hash mismatch" in log
    # the server is still healthy
    assert world.get("/api/v1/collections").status == 200


def test_commands_shown_never_echo_a_hostile_host_header(world):
    video = item_id(world, "video")
    evil = {"Host": 'evil.example"; rm -rf ~; echo "'}
    for path in (f"/api/v1/items/{video}", f"/items/{video}"):
        r = world.get(path, evil)
        assert r.status == 200 and b"rm -rf" not in r.body
        assert f"http://MIRROR/api/v1/items/{video}/content".encode() in r.body
    proxied = {"Host": "mirror.example.org", "X-Forwarded-Proto": "https"}
    doc = world.get(f"/api/v1/items/{video}", proxied).json()
    assert doc["verify"]["commands"]["download"].endswith(
        f"https://mirror.example.org/api/v1/items/{video}/content"
    )
    # and the answer cached for one host is not given to another
    plain = world.get(f"/api/v1/items/{video}").json()
    assert f"http://{world.http}/api/v1" in plain["verify"]["commands"]["download"]


# --- bad input: no oracle, path tricks ---------------------------------------------------------


def test_unknown_non_public_and_malformed_ids_answer_exactly_like_missing_ones(world):
    random_col = ids.to_text("col", ids.sha256_id(b"nothing"))
    random_item = ids.to_text("itm", ids.sha256_id(b"nothing"))
    cols = [
        world.closed_col,  # exists on the owner (closed)
        world.unpublished_col,  # public, but not published to this mirror
        random_col,
        "col_x",
        "itm_" + world.public_col[4:],  # right body, wrong kind
        "%00",
    ]
    items = [
        item_id(world, "closed"),  # exists on the owner, in a closed collection
        item_id(world, "unpublished"),
        random_item,
        "itm_",
        world.public_col,  # a collection id where an item id goes
        "itm_" + "a" * 200,
    ]
    json_paths = [
        *(f"/api/v1/collections/{c}" for c in cols),
        *(f"/api/v1/collections/{c}/items" for c in cols),
        *(f"/api/v1/collections/{c}/items?page=1" for c in cols),
        *(
            f"/api/v1/items/{i}{suffix}"
            for i in items
            for suffix in ("", "/content", "/record", "/entry")
        ),
        "/api/v1/nothing",  # a path that matches no route at all
    ]
    answers = set()
    for path in json_paths:
        r = world.get(path)
        answers.add((r.status, r.header("Content-Type"), r.body))
    assert answers == {(404, "application/json; charset=utf-8", b'{"error": "Not Found"}')}
    html_paths = [f"/collections/{c}" for c in cols] + [f"/items/{i}" for i in items]
    html_paths += [f"/collections/{c}/feed.atom" for c in cols]
    for lang in ("en", "ar"):
        answers = {
            (r.status, r.header("Content-Type"), r.body)
            for r in (world.get(p, {"Accept-Language": lang}) for p in html_paths)
        }
        assert len(answers) == 1, lang
        status, ctype, body = answers.pop()
        assert status == 404 and ctype == "text/html; charset=utf-8"
    # HEAD and Range on a missing item: the same 404
    for headers in ({"Range": "bytes=0-1"}, {"If-None-Match": "*"}):
        r = world.get(f"/api/v1/items/{random_item}/content", headers)
        assert (r.status, r.body) == (404, b'{"error": "Not Found"}')


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/items/../../config.toml",
        "/api/v1/items/%2e%2e/%2e%2e/identity",
        "/api/v1/items/..%2f..%2fidentity",
        "/api/v1/items/%2e%2e%2f%2e%2e%2fstore%2fdata.mdb/content",
        "/static/../identity",
        "/static/%2e%2e/%2e%2e/identity",
        "/static/..%2fhttp.token",
        "/collections/..%2f..%2fidentity",
        "/items/%2e%2e",
        "/items/itm_x%2fcontent",
        "//etc/passwd",
        "/api/v1/items/itm_%00",
        "/api/v1/collections/%ff%fe/items",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/http.token",
        "/api/v1/items/itm_x/content/../../../../identity",
    ],
)
def test_path_tricks_get_a_clean_4xx(world, path):
    r = world.get(path)
    assert 400 <= r.status < 500, (path, r.status)
    if r.header("Content-Type", "").startswith("text/html"):
        assert r.body == world.get("/items/missing").body  # the one not-found page
    else:
        assert r.body in (b'{"error": "Not Found"}', b"400: Bad Request"), r.body


def test_bad_input_changes_nothing(world):
    def digest() -> str:
        from .nodeutil import store_digest

        return store_digest(world.mirror.home)

    before = (digest(), world.get("/api/v1/collections").body)
    for path, headers in [
        ("/api/v1/items/%2e%2e/content", {}),
        (content(world, "video"), {"Range": "bytes=abc"}),
        (content(world, "video"), {"Range": "bytes=99999999-"}),
        (f"/api/v1/collections/{world.public_col}/items?page=-1", {}),
        ("/api/v1/search?q=" + "%D8%A7" * 300, {}),
        ("/search?q=%ff%fe&page=x", {}),
    ]:
        assert 400 <= world.get(path, headers).status < 500
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert world.get(content(world, "video"), method=method).status in (401, 405)
    assert (digest(), world.get("/api/v1/collections").body) == before


# --- headers, OpenAPI, feed --------------------------------------------------------------------


def test_security_headers_on_every_response(world):
    video = item_id(world, "video")
    responses = [
        world.get("/"),
        world.get("/static/style.css"),
        world.get(f"/items/{video}", {"Accept-Language": "ar"}),
        world.get("/api/v1/collections"),
        world.get(f"/api/v1/items/{video}"),
        world.get(f"/api/v1/items/{video}/content", {"Range": "bytes=0-0"}),
        world.get(f"/api/v1/items/{video}/content", {"Range": "bytes=x"}),
        world.get(f"/api/v1/items/{video}/content", {"If-None-Match": "*"}),
        world.get(f"/api/v1/items/{video}/content", method="HEAD"),
        world.get(f"/collections/{world.public_col}/feed.atom"),
        world.get("/api/v1/openapi.json"),
        world.get("/api/v1/items/itm_nothing"),
        world.get("/nothing/here"),
        world.get(f"/api/v1/collections/{world.public_col}/items?page=0"),
        world.get("/api/v1/status"),  # admin: still needs the token
        world.get("/api/v1/collections", method="POST"),
    ]
    statuses = {r.status for r in responses}
    assert {200, 206, 304, 400, 401, 404, 416} <= statuses
    for r in responses:
        csp = r.header("Content-Security-Policy")
        assert csp and "default-src 'none'" in csp, r.status
        assert "frame-ancestors 'none'" in csp
        assert "http:" not in csp and "https:" not in csp and "*" not in csp
        assert "script-src" not in csp  # no script allowed anywhere (default-src 'none')
        assert r.header("X-Frame-Options") == "DENY"
        assert r.header("Referrer-Policy") == "no-referrer"
        assert r.header("X-Content-Type-Options") == "nosniff"
        assert "aiohttp" not in (r.header("Server") or "")
    assert world.get("/api/v1/status").status == 401


def test_openapi_describes_every_contract_path(world):
    r = world.get("/api/v1/openapi.json")
    assert r.status == 200 and r.header("Content-Type").startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/api/v1/collections",
        "/api/v1/collections/{id}/items",
        "/api/v1/items/{id}",
        "/api/v1/items/{id}/content",
        "/api/v1/search",
    ):
        assert "get" in doc["paths"][path], path
        assert doc["paths"][path]["get"]["responses"]["200"]

    def refs(node):  # noqa: ANN001, ANN202
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"]
    # every described path answers (ids filled in)
    video = item_id(world, "video")
    for path in doc["paths"]:
        real = path.replace("{id}", world.public_col if "collections" in path else video)
        assert world.get(real + ("?q=witness" if "search" in path else "")).status == 200, path


def test_atom_feed_parses_with_the_newest_items(world):
    r = world.get(f"/collections/{world.public_col}/feed.atom")
    assert r.status == 200
    assert r.header("Content-Type") == "application/atom+xml; charset=utf-8"
    root = ET.fromstring(r.body)
    assert root.tag == f"{ATOM}feed"
    assert root.find(f"{ATOM}id").text == f"urn:amanah:{world.public_col}"
    assert root.find(f"{ATOM}title").text == "Witness statements"
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 50
    page1 = world.get(f"/api/v1/collections/{world.public_col}/items").json()["items"]
    assert [e.find(f"{ATOM}id").text for e in entries] == [f"urn:amanah:{i['id']}" for i in page1]
    for e in entries:
        assert e.find(f"{ATOM}updated").text.endswith("Z")
        enclosure = e.find(f"{ATOM}link[@rel='enclosure']")
        assert enclosure.get("href").endswith("/content")
        assert int(enclosure.get("length")) > 0
    assert root.find(f"{ATOM}updated").text == entries[0].find(f"{ATOM}updated").text


def test_the_web_is_only_on_the_mirror(world):
    # a partner node's HTTP API has no public routes: everything needs its token
    from .test_e2e_replication import Daemon, free_port

    daemon = Daemon(world.owner, free_port())
    try:
        for path in ("/", "/api/v1/collections", "/api/v1/openapi.json"):
            assert request(daemon.info["http"], path).status == 401
    finally:
        daemon.stop()
