"""The public web's pure parts, in process: normalisation, the index, Range, names, languages."""

from __future__ import annotations

import unicodedata
import urllib.parse

import pytest
from amanah.node.web.content import (
    Unsatisfiable,
    content_disposition,
    content_type,
    etag_matches,
    parse_range,
    previewable,
)
from amanah.node.web.i18n import from_accept_language
from amanah.node.web.search import SearchIndex, normalise, words
from hypothesis import given
from hypothesis import strategies as st


def test_normalise_follows_the_arabic_rules_in_order():
    assert normalise("أإآ") == "ااا"
    assert normalise("مستشفى") == "مستشفي"  # alef maksura -> yeh
    assert normalise("إِفَادَةٌ") == "افادة"  # harakat U+064B-U+0652 stripped
    assert normalise("افـــادة") == "افادة"  # tatweel stripped
    assert normalise("افادة") != normalise("افاده")  # teh marbuta kept by default
    assert normalise("افادة", fold_teh_marbuta=True) == normalise("افاده")
    decomposed = unicodedata.normalize("NFD", "أ")
    assert decomposed != "أ" and normalise(decomposed) == "ا"  # NFC before the alef rule
    assert normalise("WITNESS Straße") == "witness strasse"  # case-folding
    assert words("الشّاهِد، witness-statement") == ["الشاهد", "witness", "statement"]


@given(st.text(max_size=50))
def test_normalise_is_idempotent(text):
    once = normalise(text)
    assert normalise(once) == once


def test_index_add_remove_and_prefix_queries():
    index = SearchIndex()
    index.add("a", ["إفادة الشاهد", "Witness statement"])
    index.add("b", ["شهادة الطبيب", "Doctor's witness"])
    assert index.query("افادة") == {"a"}
    assert index.query("شاهد") == {"a"}  # the article is optional
    assert index.query("wit") == {"a", "b"}
    assert index.query("witness doctor") == {"b"}
    assert index.query("w") == set()  # one letter matches only a whole one-letter word
    assert index.query("   ") == set()
    index.remove("a")
    assert index.query("wit") == {"b"} and index.query("افادة") == set()
    index.add("a", ["new title"])  # re-adding replaces
    assert index.query("new") == {"a"} and index.query("statement") == set()
    folded = SearchIndex(fold_teh_marbuta=True)
    folded.add("x", ["إفادة"])
    assert folded.query("افاده") == {"x"}


SIZE = 1000


@pytest.mark.parametrize(
    "header, expected",
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=10-", (10, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=990-5000", (990, 999)),
        ("Bytes = 1 - 2", (1, 2)),
        ("bytes=0-1,3-4", None),  # several: ignored
        ("items=0-1", None),  # other unit: ignored
        ("nonsense", None),  # no unit at all: not a bytes range
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=1000-",
        "bytes=5000-6000",
        "bytes=-0",
        "bytes=5-4",
        "bytes=a-b",
        "bytes=-",
        "bytes=",
        "bytes=1-2-3",
        "bytes=0-1,x",
        "bytes=" + "9" * 21 + "-",
    ],
)
def test_parse_range_refuses(header):
    with pytest.raises(Unsatisfiable):
        parse_range(header, SIZE)


def test_an_empty_file_ignores_range():
    assert parse_range("bytes=0-", 0) is None and parse_range("bytes=-5", 0) is None


def test_content_disposition_for_any_name():
    for name in ("تقرير الشاهد ٢٠٢٤.txt", 'a"b\\c%d.pdf', "../../etc/passwd", "ملف", "x\ty.bin"):
        value = content_disposition(name, inline=False)
        assert value.isascii() and "\n" not in value and "\t" not in value
        kind, fallback, extended = value.split("; ")
        assert kind == "attachment"
        inner = fallback[len('filename="') : -1]
        assert '"' not in inner and "\\" not in inner and "/" not in inner
        decoded = urllib.parse.unquote(extended.removeprefix("filename*=UTF-8''"))
        assert "/" not in decoded and decoded == decoded.strip()
    assert content_disposition("تقرير.pdf", True).startswith('inline; filename="download.pdf"')


def test_types_and_previews():
    assert content_type("video/MP4") == "video/mp4"
    assert content_type("text/html; charset=x") == "application/octet-stream"
    assert content_type("nonsense") == "application/octet-stream"
    assert previewable("image/png") and previewable("video/webm") and previewable("audio/mpeg")
    assert not previewable("image/svg+xml") and not previewable("text/html")


def test_etag_matching():
    assert etag_matches('"a"', '"a"') and etag_matches('W/"a"', '"a"')
    assert etag_matches('"b", "a"', '"a"') and etag_matches("*", '"a"')
    assert not etag_matches('"b"', '"a"') and not etag_matches("", '"a"')


@pytest.mark.parametrize(
    "header, expected",
    [
        ("ar", "ar"),
        ("en-US,en;q=0.9,ar;q=0.8", "en"),
        ("ar-SY;q=0.9, en;q=0.9", "ar"),  # a tie: the first listed
        ("fr;q=1, ar;q=0.1", "ar"),
        ("ar;q=0", None),
        ("ar;q=abc, en;q=0.2", "en"),
        ("", None),
        ("*", None),
    ],
)
def test_accept_language(header, expected):
    assert from_accept_language(header) == expected


@pytest.mark.parametrize("fold", [False, True])
def test_the_mirror_search_follows_the_config_fold(tmp_path, fold):
    from amanah.node.home import Node, init_home
    from amanah.node.web.site import Site

    init_home(tmp_path / "m", "mirror", "pw", "mirror")
    cfg = tmp_path / "m" / "config.toml"
    setting = f"fold_teh_marbuta = {str(fold).lower()}"
    cfg.write_text(cfg.read_text().replace("fold_teh_marbuta = false", setting))
    node = Node(tmp_path / "m", lambda: "pw")
    try:
        index = Site(node).catalog.index
        assert index.fold_teh_marbuta is fold
        index.add("itm_x", ["مدرسة البنات"])
        assert (index.query("مدرسه") == {"itm_x"}) is fold
        assert index.query("مدرسة") == {"itm_x"}
    finally:
        node.close()
