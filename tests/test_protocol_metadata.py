"""Item metadata: every field's limits, and what validation refuses."""

from __future__ import annotations

import pytest
from amanah.protocol import cbor
from amanah.protocol import metadata as md
from amanah.protocol.errors import FormatError
from hypothesis import given, settings
from hypothesis import strategies as st

from .strategies import rfc3339, stored_metadata, user_metadata

FIXITY = {
    "filename": "clip.mp4",
    "size": 12,
    "sha256": "ab" * 32,
    "mime": "video/mp4",
    "ingested_at": "2024-05-01T13:45:00Z",
}


def ok(**fields):
    return md.validate_user(fields)


def refused(match: str | None = None, **fields):
    with pytest.raises(FormatError, match=match):
        md.validate_user(fields)


def test_a_full_record_is_accepted_as_given():
    fields = {
        "title_en": "Market shelling",
        "title_ar": "قصف السوق",
        "description_en": "Line one.\nLine two.\r\n\tIndented.",
        "description_ar": "سطر\nسطر",
        "source_url": "https://example.org/a?b=c#d",
        "captured_at": "2024-04-30T08:15:00.250+03:00",
        "location": {"name": "East", "lat": "36.2021", "lon": "-37.1343", "precision": "city"},
        "tags": ["a", "b"],
        "extra": {"collector": "team 3", "notes": "multi\nline"},
    }
    assert md.validate_user(fields) == fields
    assert md.validate({**fields, **FIXITY}) == {**fields, **FIXITY}


def test_empty_metadata_is_fine():
    assert md.validate_user({}) == {}
    assert md.validate(dict(FIXITY)) == FIXITY


@pytest.mark.parametrize("value", [None, [], "title", 1])
def test_metadata_must_be_a_map(value):
    with pytest.raises(FormatError):
        md.validate_user(value)
    with pytest.raises(FormatError):
        md.validate(value)


def test_unknown_fields_are_refused_and_extra_is_suggested():
    refused(match="extra", colour="red")
    refused(title="x")  # the field is title_en
    refused(Title_en="x")
    with pytest.raises(FormatError):
        md.validate({**FIXITY, "colour": "red"})


# --- limits of every text field -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("title_en", md.MAX_TITLE),
        ("title_ar", md.MAX_TITLE),
        ("description_en", md.MAX_DESCRIPTION),
        ("description_ar", md.MAX_DESCRIPTION),
    ],
)
def test_text_field_limits(name, limit):
    ok(**{name: "x" * limit})
    ok(**{name: "ب" * limit})  # characters, not bytes
    refused(match="longer", **{name: "x" * (limit + 1)})
    refused(match="text", **{name: 5})
    refused(**{name: None})
    refused(**{name: b"bytes"})


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"])
@pytest.mark.parametrize("name", ["title_en", "title_ar", "description_en", "description_ar"])
def test_control_characters_are_refused_everywhere(name, char):
    refused(match="control", **{name: f"before{char}after"})


@pytest.mark.parametrize("char", ["\n", "\r"])
def test_line_breaks_only_in_descriptions(char):
    ok(description_en=f"a{char}b", description_ar=f"a{char}b", extra={"k": f"a{char}b"})
    refused(match="control", title_en=f"a{char}b")
    refused(match="control", tags=[f"a{char}b"])
    refused(match="control", location={"name": f"a{char}b"})
    refused(match="control", extra={f"k{char}": "v"})


def test_tab_is_allowed_in_titles():
    ok(title_en="a\tb")


def test_tags():
    ok(tags=[])
    ok(tags=["x" * md.MAX_TAG])
    assert ok(tags=["a", "b", "a", "c", "b"])["tags"] == ["a", "b", "c"]  # duplicates dropped
    ok(tags=[str(i) for i in range(md.MAX_TAGS)])
    refused(tags=[str(i) for i in range(md.MAX_TAGS + 1)])
    refused(tags=["x" * (md.MAX_TAG + 1)])
    refused(match="empty", tags=[""])
    refused(match="empty", tags=["  "])
    refused(tags="a,b")
    refused(tags=[1])
    refused(tags={"a": 1})


def test_extra():
    ok(extra={})
    ok(extra={"k" * md.MAX_EXTRA_KEY: "v" * md.MAX_EXTRA_VALUE})
    ok(extra={f"k{i}": "v" for i in range(md.MAX_EXTRA)})
    refused(extra={f"k{i}": "v" for i in range(md.MAX_EXTRA + 1)})
    refused(extra={"k" * (md.MAX_EXTRA_KEY + 1): "v"})
    refused(extra={"k": "v" * (md.MAX_EXTRA_VALUE + 1)})
    refused(match="empty", extra={"": "v"})
    refused(match="empty", extra={" ": "v"})
    refused(extra={"k": 1})
    refused(extra={"k": ["v"]})
    refused(extra={"k": {"nested": "v"}})
    refused(extra=[["k", "v"]])


# --- dates ----------------------------------------------------------------------------------

GOOD_DATES = [
    "2024-05-01T13:45:00Z",
    "2024-05-01t13:45:00z",
    "2024-05-01 13:45:00Z",
    "2024-05-01T13:45:00.5Z",
    "2024-05-01T13:45:00.123456789+00:00",
    "2024-05-01T13:45:00-05:30",
    "2024-05-01T23:59:59+23:59",
    "2024-02-29T00:00:00Z",  # leap year
    "2000-02-29T00:00:00Z",  # divisible by 400
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
]
BAD_DATES = [
    "2024-02-30T10:00:00Z",  # no 30 February
    "2023-02-29T10:00:00Z",  # not a leap year
    "1900-02-29T10:00:00Z",  # divisible by 100, not 400
    "2024-04-31T10:00:00Z",
    "2024-13-01T10:00:00Z",
    "2024-00-10T10:00:00Z",
    "2024-05-00T10:00:00Z",
    "2024-05-01T24:00:00Z",
    "2024-05-01T23:60:00Z",
    "2024-05-01T23:59:60Z",  # leap seconds: not representable here
    "2024-05-01T13:45:00+24:00",
    "2024-05-01T13:45:00+05:60",  # offset minutes 00-59 (RFC 3339 time-minute)
    "2024-05-01T13:45:00+25:00",
    "2024-05-01T13:45:00",  # no offset
    "2024-05-01",
    "13:45:00Z",
    "2024-5-1T13:45:00Z",
    "24-05-01T13:45:00Z",
    "2024-05-01T13:45Z",
    "2024-05-01T13:45:00.Z",
    "2024-05-01T13:45:00.1234567890Z",  # more than nanoseconds
    "2024-05-01T13:45:00+0530",
    "2024-05-01T13:45:00 Z",
    "2024-05-01_13:45:00Z",
    " 2024-05-01T13:45:00Z",
    "2024-05-01T13:45:00Z\n",
    "2024-05-01T13:45:00Z ",
    "٢٠٢٤-05-01T13:45:00Z",  # Arabic-Indic digits match \\d in Python
    "",
]


@pytest.mark.parametrize("value", GOOD_DATES)
def test_good_dates(value):
    assert ok(captured_at=value)["captured_at"] == value
    md.validate({**FIXITY, "ingested_at": value})


@pytest.mark.parametrize("value", BAD_DATES)
def test_bad_dates(value):
    refused(match="captured_at", captured_at=value)
    with pytest.raises(FormatError, match="ingested_at"):
        md.validate({**FIXITY, "ingested_at": value})


@pytest.mark.parametrize("value", [None, 1714571100, b"2024-05-01T13:45:00Z"])
def test_dates_must_be_text(value):
    refused(captured_at=value)


# --- urls -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org",
        "https://example.org/path?q=1#frag",
        "https://user@example.org:8443/",
        "https://[2001:db8::1]/x",
        "https://مثال.إختبار/مسار",
        "HTTPS://example.org/",  # schemes are case-insensitive
        "https://example.org/" + "a" * (md.MAX_URL - len("https://example.org/")),
    ],
)
def test_good_urls(url):
    assert ok(source_url=url)["source_url"] == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "example.org/x",
        "//example.org/x",
        "http://",
        "https:///path",
        "https:/example.org",
        "https://example.org/a b",
        "https://example.org/\ta",
        "https://example.org/\x00",
        "https://example.org/\n",
        " https://example.org/",
        "https://example.org/\u00a0",  # no-break space
        "https://example.org/" + "a" * md.MAX_URL,
        "",
    ],
)
def test_bad_urls(url):
    refused(source_url=url)


@pytest.mark.parametrize("value", [None, 1, ["https://example.org"]])
def test_url_must_be_text(value):
    refused(source_url=value)


# --- location -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon"),
    [("0", "0"), ("90", "180"), ("-90", "-180"), ("36.2021", "37.1343"), ("-0.000001", "179.9")],
)
def test_good_coordinates(lat, lon):
    assert ok(location={"lat": lat, "lon": lon})["location"] == {"lat": lat, "lon": lon}


@pytest.mark.parametrize(
    ("lat", "lon", "why"),
    [
        ("90.0000001", "0", "latitude just over"),
        ("-90.5", "0", "latitude under"),
        ("0", "180.0001", "longitude over"),
        ("0", "-181", "longitude under"),
        ("1000", "0", "far out"),
        ("NaN", "0", "not a number"),
        ("0", "Infinity", "infinite"),
        ("-inf", "0", "infinite"),
        ("abc", "0", "text"),
        ("", "0", "empty"),
        (" 45", "0", "leading space"),
        ("45\n", "0", "trailing newline"),
        ("4_5", "0", "digit separator"),
        ("1e1", "0", "exponent"),
        ("+45", "0", "plus sign"),
        ("45.", "0", "trailing point"),
        (".5", "0", "leading point"),
        ("٤٥", "0", "Arabic-Indic digits"),
        ("0x10", "0", "hex"),
        (True, "0", "boolean"),
        (None, "0", "null"),
        ([45], "0", "list"),
        ("0", {"deg": 1}, "map"),
    ],
)
def test_bad_coordinates(lat, lon, why):
    refused(location={"lat": lat, "lon": lon})


def test_numeric_coordinates_from_users_are_stored_as_decimal_strings():
    loc = ok(location={"lat": 36.5, "lon": -37})["location"]
    assert loc == {"lat": "36.5", "lon": "-37"}
    assert ok(location={"lat": 1e-7, "lon": 0})["location"]["lat"] == "0.0000001"
    refused(location={"lat": 90.1, "lon": 0})
    refused(location={"lat": float("nan"), "lon": 0})
    refused(location={"lat": float("inf"), "lon": 0})


def test_location_shape():
    ok(location={"name": "Aleppo"})
    ok(location={"precision": "country"})
    for precision in md.PRECISIONS:
        ok(location={"name": "x", "precision": precision})
    refused(match="both", location={"lat": "1"})
    refused(match="both", location={"lon": "1"})
    refused(match="unknown", location={"name": "x", "alt": "3"})
    refused(match="precision", location={"name": "x", "precision": "street"})
    refused(match="precision", location={"name": "x", "precision": "City"})
    refused(match="empty", location={})
    refused(location="Aleppo")
    refused(location=["36", "37"])
    refused(location={"name": "x" * (md.MAX_TITLE + 1)})


# --- stored metadata (user fields plus fixity) --------------------------------------------------


@pytest.mark.parametrize("name", md.FIXITY_FIELDS)
def test_each_fixity_field_is_required(name):
    with pytest.raises(FormatError, match=name):
        md.validate({k: v for k, v in FIXITY.items() if k != name})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("size", -1),
        ("size", True),
        ("size", "12"),
        ("size", None),
        ("sha256", "AB" * 32),
        ("sha256", "ab" * 31),
        ("sha256", "ab" * 33),
        ("sha256", "zz" * 32),
        ("sha256", "ab" * 32 + "\n"),
        ("sha256", bytes(32)),
        ("filename", "x" * 1001),
        ("filename", "a\nb"),
        ("filename", 5),
        ("mime", "x" * 256),
        ("mime", "text/plain\x00"),
        ("mime", None),
        ("ingested_at", "yesterday"),
        ("ingested_at", 1714571100),
    ],
)
def test_bad_fixity_fields(name, value):
    with pytest.raises(FormatError):
        md.validate({**FIXITY, name: value})


def test_fixity_limits_themselves_are_accepted():
    md.validate({**FIXITY, "filename": "x" * 1000, "mime": "x" * 255, "size": 0})
    md.validate({**FIXITY, "size": 2**64 - 1})


def test_stored_metadata_must_be_in_normal_form():
    # what validate_user would have rewritten never reaches a record: refuse it from outside
    with pytest.raises(FormatError, match="normal form"):
        md.validate({**FIXITY, "location": {"lat": 36, "lon": 37}})
    with pytest.raises(FormatError, match="normal form"):
        md.validate({**FIXITY, "tags": ["a", "a"]})
    md.validate({**FIXITY, "location": {"lat": "36", "lon": "37"}, "tags": ["a"]})


def test_metadata_size_cap():
    big = {**FIXITY, "extra": {f"k{i}": "v" * 9_000 for i in range(3)}}
    assert len(cbor.encode(big)) < md.MAX_METADATA
    md.validate(big)
    bigger = {**FIXITY, "extra": {f"k{i}": "v" * 9_000 for i in range(4)}}
    assert len(cbor.encode(bigger)) > md.MAX_METADATA
    md.validate_user({"extra": bigger["extra"]})  # each field is within its own limit...
    with pytest.raises(FormatError, match="larger"):
        md.validate(bigger)  # ...but the whole is not
    # the cap counts encoded bytes: Arabic letters take two each
    arabic = {**FIXITY, "extra": {f"k{i}": "ب" * 5_000 for i in range(4)}}
    with pytest.raises(FormatError, match="larger"):
        md.validate(arabic)


# --- properties -------------------------------------------------------------------------------


@settings(deadline=None)
@given(user_metadata)
def test_generated_user_metadata_is_already_in_normal_form(fields):
    assert md.validate_user(fields) == fields


@settings(deadline=None)
@given(stored_metadata)
def test_stored_metadata_round_trips_through_cbor(meta):
    assert md.validate(meta) is meta
    assert md.validate(cbor.decode(cbor.encode(meta), md.MAX_METADATA)) == meta


@given(rfc3339())
def test_generated_dates_are_accepted(value):
    assert md.check_rfc3339(value, "t") == value


@given(
    st.text(max_size=20),
    st.sampled_from([chr(c) for c in range(0x20) if c != 9] + ["\x7f"]),
    st.text(max_size=20),
)
def test_any_control_character_in_a_title_is_refused(before, control, after):
    with pytest.raises(FormatError):
        md.validate_user({"title_en": before + control + after})


@given(st.decimals(allow_nan=True, allow_infinity=True, places=4))
def test_latitude_bounds(number):
    text = format(number, "f") if number.is_finite() else str(number)
    inside = number.is_finite() and abs(number) <= 90
    try:
        md.validate_user({"location": {"lat": text, "lon": "0"}})
    except FormatError:
        assert not inside
    else:
        assert inside
