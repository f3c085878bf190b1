"""The mirror's HTML pages: Arabic and English, right-to-left done right, no script, small.

A real owner and mirror (tests/webutil.py), with no bulk items: the pages are read and parsed
(html.parser) to check language, direction and the isolation of every hash, id and number.
"""

from __future__ import annotations

import re
import urllib.parse
from html.parser import HTMLParser

import pytest

from .webutil import ARABIC_NAME, TITLE_AR, TITLE_EN, World, build_world

pytestmark = pytest.mark.timeout(300)

# Things that scramble inside Arabic text unless isolated left-to-right.
LTR_TOKENS = re.compile(
    r"\b([0-9a-f]{64,128}|(itm|col|ent)_[a-z2-7]{55}|12D3KooW[1-9A-Za-z]+|https?://\S+)"
)


class Page(HTMLParser):
    """Collects the root's lang/dir, every tag, and text nodes with their ancestors' attrs."""

    VOID = {"meta", "link", "input", "img", "br", "hr", "source"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict]] = []
        self.root: dict = {}
        self.tags: list[tuple[str, dict]] = []
        self.texts: list[tuple[str, list[tuple[str, dict]]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        if tag == "html":
            self.root = a
        self.tags.append((tag, a))
        if tag not in self.VOID:
            self.stack.append((tag, a))

    def handle_endtag(self, tag):  # noqa: ANN001
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):  # noqa: ANN001
        if data.strip():
            self.texts.append((data, list(self.stack)))

    def isolated_ltr(self, ancestors: list[tuple[str, dict]]) -> bool:
        return any(a.get("dir") == "ltr" for _, a in ancestors)

    def in_tag(self, ancestors: list[tuple[str, dict]], tag: str) -> bool:
        return any(t == tag for t, _ in ancestors)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = build_world(tmp_path_factory.mktemp("web-pages"), bulk=0)
    yield w
    w.stop()


def page(world: World, path: str, lang: str | None = None) -> tuple[str, Page]:
    headers = {"Accept-Language": lang} if lang else {}
    r = world.get(path, headers)
    assert r.status == 200, (path, r.status)
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    return r.text, Page(r.text)


def item_path(world: World, name: str) -> str:
    return f"/items/{world.items[name]['id']}"


@pytest.mark.parametrize(
    "accept, expected",
    [
        ("ar", "ar"),
        ("ar-SD,ar;q=0.9", "ar"),
        ("en-GB,en;q=0.9", "en"),
        ("fr-FR, ar;q=0.8, en;q=0.5", "ar"),
        ("en;q=0.4, ar;q=0.6", "ar"),
        ("de, ku", "en"),  # neither offered: the default
        (None, "en"),
        ("ar;q=0, en", "en"),  # q=0 means "not acceptable"
    ],
)
def test_language_from_accept_language(world, accept, expected):
    r = world.get("/", {"Accept-Language": accept} if accept else {})
    root = Page(r.text).root
    assert root == {"lang": expected, "dir": "rtl" if expected == "ar" else "ltr"}
    assert r.header("Content-Language") == expected
    assert "Accept-Language" in r.header("Vary")


def test_the_language_switch_is_a_link_that_sticks(world):
    text, p = page(world, "/", "en")
    switch = [a for t, a in p.tags if t == "a" and a.get("hreflang") == "ar"]
    assert switch and switch[0]["href"] == "/?lang=ar" and switch[0]["lang"] == "ar"
    # ?lang= wins over the header, and every internal link carries it on
    text, p = page(world, "/?lang=ar", "en")
    assert p.root == {"lang": "ar", "dir": "rtl"}
    links = [a["href"] for t, a in p.tags if t == "a" and a["href"].startswith("/collections/")]
    assert links and all(href.endswith("?lang=ar") for href in links)
    # the search form keeps it too
    assert ("input", {"type": "hidden", "name": "lang", "value": "ar"}) in p.tags
    # an unknown ?lang= falls back to negotiation
    assert Page(world.get("/?lang=xx", {"Accept-Language": "ar"}).text).root["lang"] == "ar"


@pytest.mark.parametrize("lang", ["ar", "en"])
def test_item_page_isolates_hashes_ids_and_numbers(world, lang):
    text, p = page(world, item_path(world, "video"), lang)
    assert p.root["dir"] == ("rtl" if lang == "ar" else "ltr")
    checked = 0
    for data, ancestors in p.texts:
        for m in LTR_TOKENS.finditer(data):
            assert p.isolated_ltr(ancestors), (m.group(0), ancestors[-3:])
            checked += 1
        if re.fullmatch(r"\s*\d[\d.,]*\s*", data):  # a number on its own
            assert p.isolated_ltr(ancestors), (data, ancestors[-3:])
    assert checked >= 8  # sha256, ids, peer id, key, signature, record hash, URLs
    # user text is in its own direction
    for title in (TITLE_AR, TITLE_EN):
        nodes = [anc for data, anc in p.texts if data == title]
        assert nodes and all(anc[-1][1].get("dir") == "auto" for anc in nodes), title
    tags = [anc for data, anc in p.texts if data in ("شهادات", "Darfur")]
    assert len(tags) == 2 and all(anc[-1][1].get("dir") == "auto" for anc in tags)


def test_item_page_shows_the_proof_and_the_steps_to_verify(world):
    row = world.items["video"]
    text, p = page(world, item_path(world, "video"), "en")
    assert row["sha256"] in text
    assert world.owner_id in text and "أرشيف السودان" in text
    assert "sha256sum &#x27;video.mp4&#x27;" in text
    assert "verify_amanah.py" in text and "nacl.signing" in text
    assert f"/api/v1/items/{row['id']}/record" in text
    assert f"/api/v1/items/{row['id']}/entry" in text
    download = [a for t, a in p.tags if t == "a" and "download" in a]
    assert download and download[0]["href"] == f"/api/v1/items/{row['id']}/content"
    # Arabic page, Arabic steps
    text, _ = page(world, item_path(world, "video"), "ar")
    assert "تحقّق من هذا الملف بنفسك" in text and "sha256sum" in text


def test_previews_for_images_and_video_only(world):
    _, p = page(world, item_path(world, "video"))
    videos = [a for t, a in p.tags if t == "video"]
    assert videos and videos[0]["src"].endswith("/content?inline=1") and "controls" in videos[0]
    _, p = page(world, item_path(world, "photo"))
    imgs = [a for t, a in p.tags if t == "img"]
    assert imgs and imgs[0]["src"].endswith("/content?inline=1") and imgs[0]["alt"]
    _, p = page(world, item_path(world, "report"))
    assert not [t for t, _ in p.tags if t in ("img", "video", "audio")]


def test_no_script_no_external_assets_small_pages(world):
    paths = [
        "/",
        f"/collections/{world.public_col}",
        item_path(world, "video"),
        item_path(world, "report"),
        "/search?q=" + urllib.parse.quote("افادة"),
    ]
    for lang in ("ar", "en"):
        for path in paths:
            r = world.get(path, {"Accept-Language": lang})
            p = Page(r.text)
            assert not [t for t, _ in p.tags if t in ("script", "iframe", "object", "embed")]
            assert "<script" not in r.text and "javascript:" not in r.text
            for tag, a in p.tags:
                for attr in ("src", "srcset", "poster", "action"):
                    assert not a.get(attr, "/").startswith(("http:", "https:", "//")), (tag, a)
                if tag == "link":
                    assert a["href"].startswith("/"), a
                if tag == "a" and a["href"].startswith(("http:", "https:")):
                    # only the item's own recorded source is linked out, without a referrer
                    assert "noreferrer" in a.get("rel", ""), a
            assert not [a for t, a in p.tags if a.get("style")] and "<style" not in r.text
            assert len(r.body) < 24_000, (path, len(r.body))
    css = world.get("/static/style.css")
    assert css.status == 200 and css.header("Content-Type").startswith("text/css")
    assert "url(" not in css.text and "@import" not in css.text and len(css.body) < 4_000
    assert world.get("/static/style.css", {"If-None-Match": css.header("ETag")}).status == 304


def test_collection_page_lists_newest_first_with_a_feed_link(world):
    text, p = page(world, f"/collections/{world.public_col}", "ar")
    links = [a["href"] for t, a in p.tags if t == "a" and a["href"].startswith("/items/")]
    order = ["damage", "photo", "report", "video"]  # newest first
    assert links == [f"/items/{world.items[n]['id']}" for n in order]
    feeds = [a for t, a in p.tags if t == "link" and a.get("type") == "application/atom+xml"]
    assert feeds and feeds[0]["href"] == f"/collections/{world.public_col}/feed.atom"
    assert "أرشيف السودان" in text
    r = world.get(f"/collections/{world.public_col}?page=x", {"Accept-Language": "ar"})
    assert r.status == 400 and Page(r.text).root["dir"] == "rtl"
    assert world.get(f"/collections/{world.public_col}?page=2").status == 404


def test_search_page_finds_arabic_variants_without_javascript(world):
    video = item_path(world, "video")
    for q in ("افادة", "إِفَادَة", "WITNESS"):
        text, p = page(world, "/search?lang=ar&q=" + urllib.parse.quote(q))
        hrefs = [a["href"] for t, a in p.tags if t == "a"]
        assert f"{video}?lang=ar" in hrefs, q
        query = [anc for data, anc in p.texts if data == q]
        assert query and query[0][-1][1].get("dir") == "auto"  # the query shown as user text
    text, p = page(world, "/search?q=nothingmatches")
    assert "Nothing found." in text
    assert ARABIC_NAME not in page(world, "/search?q=")[0]
