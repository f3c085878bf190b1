"""The mirror as a person sees it: a real Chromium (Debian's, headless, driven by Playwright).

An owner and a mirror run as real daemons on 127.0.0.1; a public collection with an item titled
in Arabic (with harakat) under an Arabic file name is published and synced. Then, in Chromium:
the Arabic home page renders right-to-left with ids isolated left-to-right, the language link
switches to English (with JavaScript off too), the search form finds the item when the Arabic is
spelled with another hamza, with harakat or with tatweel, and the original downloaded through
the item page's link has the SHA-256 of the original and of the page.

Needs /usr/bin/chromium (scripts/install-browser.sh) and the `playwright` package (the `test`
extra); skipped, saying which is missing, without them, or failed if AMANAH_REQUIRE_BROWSER=1.
Playwright never downloads a browser here: it starts /usr/bin/chromium, with a new empty profile
that it deletes on close. Full-page screenshots go to test-artifacts/ (ignored by git).
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from pathlib import Path

import pytest

from .test_e2e_replication import Daemon
from .webutil import World, make_nodes

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = pytest.mark.timeout(240)

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# The flags this machine needs (python.md, "Known to work"): without the background-networking
# ones Chromium keeps trying hosts that the closed network refuses. Playwright adds --headless
# itself (headless=True) and a fresh --user-data-dir of its own, removed when the browser closes.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000

COLLECTION = "شهادات السوق"
TITLE_AR = "إفادةُ الشّاهد عن قصفِ السوق"  # damma, shadda and kasra on three of its words
TITLE_EN = "Witness statement on the shelling of the market"
FILE_NAME = "إفادة الشاهد ٢٠٢٤.txt"
OTHER_TITLE_AR = "تقرير ميداني عن السوق"
# The title's "إفادة" (alef with hamza below) as a person might type it instead.
QUERIES = ["افادة", "أفادة الشاهد", "إِفَادَة", "افـــادة"]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (run scripts/install-browser.sh)"
    if sync_playwright is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = _missing()
    if missing:
        if os.environ.get("AMANAH_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    downloads = tmp_path_factory.mktemp("downloads")
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            downloads_path=str(downloads),
            timeout=60_000,
        )
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory, browser):  # the browser first: no daemons start if it is missing
    owner, mirror, oid, mid, _, mirror_port = make_nodes(tmp_path_factory.mktemp("web-browser"))
    owner.ok("collection", "create", COLLECTION, "--tier", "public")
    work = owner.cwd
    original = work / FILE_NAME
    # More than one 1 MiB block, so the download streams several verified blocks.
    original.write_bytes("نص الإفادة\n".encode() * 1000 + os.urandom(2 * (1 << 20) + 777))
    daemon = Daemon(mirror, mirror_port)
    w = World(owner, mirror, daemon, oid, mid)
    try:
        w.add(
            COLLECTION,
            "statement",
            original,
            "--title-ar",
            TITLE_AR,
            "--title",
            TITLE_EN,
            "--tag",
            "شهادات",
        )
        other = work / "report.txt"
        other.write_text("تقرير\n", encoding="utf-8")
        w.add(COLLECTION, "other", other, "--title-ar", OTHER_TITLE_AR)
        owner.ok("publish", COLLECTION, mid)
        w.sync(expect_items=2)
        yield w
    finally:
        w.stop()


def new_page(browser, lang: str = "ar", javascript: bool = True):
    context = browser.new_context(
        locale=lang,
        extra_http_headers={"Accept-Language": lang},
        java_script_enabled=javascript,
        accept_downloads=True,
        viewport={"width": 1000, "height": 800},
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context, context.new_page()


def url(world: World, path: str) -> str:
    return f"http://{world.http}{path}"


def root(page) -> tuple[str | None, str | None]:
    html = page.locator("html")
    return html.get_attribute("lang"), html.get_attribute("dir")


def searched_for(query: str):
    """A wait_for_url predicate: the search page for exactly `query` (not the one before it)."""

    def match(address: str) -> bool:
        parts = urllib.parse.urlsplit(address)
        return parts.path == "/search" and urllib.parse.parse_qs(parts.query).get("q") == [query]

    return match


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path


# How an element is laid out: its computed direction, whether it sits inside an element that
# isolates it left-to-right, and the x of its first and last character as drawn.
LAYOUT_JS = """el => {
  const text = el.firstChild;
  const box = (i) => {
    const r = document.createRange();
    r.setStart(text, i);
    r.setEnd(text, i + 1);
    return r.getBoundingClientRect();
  };
  const n = text.length;
  return {
    direction: getComputedStyle(el).direction,
    isolated: !!el.closest('bdi, [dir="ltr"]'),
    first: box(0).left,
    last: box(n - 1).left,
    right: el.getBoundingClientRect().right,
    text: text.data,
  };
}"""


def test_arabic_home_page_renders_right_to_left(browser, world):
    context, page = new_page(browser, "ar")
    try:
        page.goto(url(world, "/"))
        assert page.evaluate("[document.documentElement.dir, document.documentElement.lang]") == [
            "rtl",
            "ar",
        ]
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
        page.get_by_role("link", name=COLLECTION).wait_for()
        # The layout is mirrored: the site's name is at the right, the language switch at the left.
        width = page.viewport_size["width"]
        site = page.locator("a.site").bounding_box()
        switch = page.locator("nav.lang a").bounding_box()
        assert site["x"] > width / 2 > switch["x"] + switch["width"], (site, switch)
        # The owner's peer id, inside Arabic text, is isolated and drawn left-to-right.
        peer = page.locator("code", has_text=world.owner_id)
        layout = peer.evaluate(LAYOUT_JS)
        assert layout["text"] == world.owner_id
        assert layout["isolated"] and layout["direction"] == "ltr", layout
        assert layout["first"] < layout["last"], layout  # "1" of 12D3KooW… drawn leftmost
        assert page.get_by_text("أرشيف السودان").is_visible()
        screenshot(page, "browser-home-ar.png")

        # The language link (a plain link) switches the page to English.
        page.locator('nav.lang a[hreflang="en"]').click()
        page.wait_for_url(re.compile(r"[?&]lang=en\b"))
        assert root(page) == ("en", "ltr")
        assert page.evaluate("getComputedStyle(document.body).direction") == "ltr"
        assert page.locator("h1").inner_text() == "Collections"
    finally:
        context.close()


def test_language_switch_and_search_work_without_javascript(browser, world):
    context, page = new_page(browser, "ar", javascript=False)
    try:
        page.goto(url(world, "/"))
        assert root(page) == ("ar", "rtl")
        page.locator('nav.lang a[hreflang="en"]').click()
        page.wait_for_url(re.compile(r"[?&]lang=en\b"))
        assert root(page) == ("en", "ltr")
        page.locator('nav.lang a[hreflang="ar"]').click()
        page.wait_for_url(re.compile(r"[?&]lang=ar\b"))
        assert root(page) == ("ar", "rtl")
        # The form is a plain GET: Enter submits it with no script, and the language holds.
        page.locator("#q").fill(QUERIES[0])
        page.locator("#q").press("Enter")
        page.wait_for_url(searched_for(QUERIES[0]))
        assert root(page) == ("ar", "rtl")
        item_id = world.items["statement"]["id"]
        assert page.locator(f'a[href^="/items/{item_id}"]').count() == 1
    finally:
        context.close()


def test_search_finds_arabic_spelled_differently(browser, world):
    statement = world.items["statement"]["id"]
    other = world.items["other"]["id"]
    context, page = new_page(browser, "ar")
    try:
        page.goto(url(world, "/"))
        for i, query in enumerate(QUERIES):
            box = page.locator("#q")
            box.fill("")
            box.press_sequentially(query)  # typed key by key, as a person would
            if i % 2:
                box.press("Enter")
            else:
                page.locator('form[role="search"] button[type="submit"]').click()
            page.wait_for_url(searched_for(query))
            assert root(page) == ("ar", "rtl")
            # The query is shown back as typed, and only the statement is found.
            assert page.locator("h1 q").inner_text() == query
            found = page.locator(f'ol.items a[href^="/items/{statement}"]')
            assert found.count() == 1, query
            assert found.inner_text() == TITLE_AR
            assert page.locator(f'a[href^="/items/{other}"]').count() == 0, query
        # A word both titles share finds both.
        page.locator("#q").fill("السوق")
        page.locator("#q").press("Enter")
        page.wait_for_url(searched_for("السوق"))
        assert page.locator("ol.items li").count() == 2
    finally:
        context.close()


def test_download_through_the_item_page_has_the_original_sha256(browser, world, tmp_path):
    row = world.items["statement"]
    original = world.files["statement"].read_bytes()
    want = hashlib.sha256(original).hexdigest()
    assert row["sha256"] == want
    context, page = new_page(browser, "ar")
    try:
        # Found by search, opened from the results, as a person would.
        page.goto(url(world, "/search?q=" + urllib.parse.quote(QUERIES[0])))
        page.locator(f'ol.items a[href^="/items/{row["id"]}"]').click()
        page.wait_for_url(re.compile(r"/items/itm_"))
        assert root(page) == ("ar", "rtl")
        assert page.locator("h1").inner_text() == TITLE_AR
        assert page.get_by_text(TITLE_EN, exact=True).is_visible()
        # The SHA-256 shown on the page, isolated and drawn left-to-right inside Arabic text.
        shown = page.locator('dt:has-text("SHA-256 للملف الأصلي") + dd code')
        layout = shown.evaluate(LAYOUT_JS)
        assert layout["text"] == want
        assert layout["isolated"] and layout["direction"] == "ltr", layout
        assert layout["first"] < layout["last"], layout
        assert page.get_by_text(FILE_NAME, exact=True).is_visible()
        screenshot(page, "browser-item-ar.png")

        link = page.locator("a.download")
        assert link.inner_text() == "تنزيل الملف الأصلي"
        with page.expect_download() as info:
            link.click()
        download = info.value
        assert download.failure() is None
        assert download.suggested_filename == FILE_NAME  # the exact Arabic name (filename*)
        saved = tmp_path / "downloaded"
        download.save_as(saved)
        got = hashlib.sha256(saved.read_bytes()).hexdigest()
        assert saved.stat().st_size == len(original)
        assert got == want == layout["text"]
    finally:
        context.close()
