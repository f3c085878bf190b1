"""Item metadata: the fields human-rights archives record, validated before anything is stored.

Users supply the descriptive fields; ingest adds the fixity fields (original file name, size,
SHA-256, media type, ingest time). Text is kept exactly as given (search normalises its own
index). Numbers that are not counts (coordinates) are decimal strings: Amanah CBOR has no floats.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from . import cbor
from .errors import FormatError

MAX_METADATA = 32_768  # encoded bytes
MAX_TITLE = 1_000
MAX_DESCRIPTION = 20_000
MAX_URL = 2_048
MAX_TAGS = 100
MAX_TAG = 200
MAX_EXTRA = 200
MAX_EXTRA_KEY = 100
MAX_EXTRA_VALUE = 10_000
PRECISIONS = ("exact", "approximate", "city", "region", "country")

USER_FIELDS = (
    "title_en",
    "title_ar",
    "description_en",
    "description_ar",
    "source_url",
    "captured_at",
    "location",
    "tags",
    "extra",
    "public_fields",
)
# What a mirror may show of a public item by default. Anything else (precise coordinates, free
# fields that may name staff, sources or contacts) only if the owner lists it in public_fields:
# "location" for the coordinates and precision, "extra.NAME" for a free field.
PUBLISHED_BY_DEFAULT = (
    "title_en",
    "title_ar",
    "description_en",
    "description_ar",
    "source_url",
    "captured_at",
    "tags",
    "filename",
    "size",
    "sha256",
    "mime",
    "ingested_at",
)
FIXITY_FIELDS = ("filename", "size", "sha256", "mime", "ingested_at")

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _text(value: object, name: str, limit: int, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{name} must be text")
    if len(value) > limit:
        raise FormatError(f"{name} is longer than {limit} characters")
    if (_CONTROL_MULTILINE if multiline else _CONTROL).search(value):
        raise FormatError(f"{name} contains control characters")
    return value


def check_rfc3339(value: object, name: str) -> str:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise FormatError(f"{name} must be an RFC 3339 time such as 2024-05-01T13:45:00Z")
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    except ValueError:
        raise FormatError(f"{name} is not a real date and time: {value}") from None
    return value


def _url(value: object) -> str:
    url = _text(value, "source_url", MAX_URL)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise FormatError("source_url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise FormatError("source_url must be an http(s) URL")
    return url


def _coordinate(value: object, name: str, bound: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FormatError(f"location {name} must be a number")
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):  # Decimal() takes " 4_5 ", "1e1"
        raise FormatError(f"location {name} must be a decimal number such as 33.51")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise FormatError(f"location {name} must be a number") from None
    if not number.is_finite() or abs(number) > bound:
        raise FormatError(f"location {name} must be between -{bound} and {bound}")
    return str(value) if isinstance(value, str) else format(number, "f")


def _location(value: object) -> dict:
    if not isinstance(value, dict):
        raise FormatError("location must be an object")
    unknown = set(value) - {"name", "lat", "lon", "precision"}
    if unknown:
        raise FormatError(f"unknown location field(s): {', '.join(sorted(map(str, unknown)))}")
    out: dict[str, Any] = {}
    if "name" in value:
        out["name"] = _text(value["name"], "location name", MAX_TITLE)
    if ("lat" in value) != ("lon" in value):
        raise FormatError("location needs both lat and lon, or neither")
    if "lat" in value:
        out["lat"] = _coordinate(value["lat"], "lat", 90)
        out["lon"] = _coordinate(value["lon"], "lon", 180)
    if "precision" in value:
        if value["precision"] not in PRECISIONS:
            raise FormatError(f"location precision must be one of {', '.join(PRECISIONS)}")
        out["precision"] = value["precision"]
    if not out:
        raise FormatError("location is empty")
    return out


def validate_user(fields: dict) -> dict:
    """Check user-supplied metadata: a clean copy, or FormatError naming the field."""
    if not isinstance(fields, dict):
        raise FormatError("metadata must be an object")
    unknown = [k for k in fields if k not in USER_FIELDS]
    if unknown:
        raise FormatError(
            f"unknown metadata field(s): {', '.join(map(str, unknown))} "
            '(free fields go under "extra")'
        )
    out: dict[str, Any] = {}
    for name in ("title_en", "title_ar"):
        if name in fields:
            out[name] = _text(fields[name], name, MAX_TITLE)
    for name in ("description_en", "description_ar"):
        if name in fields:
            out[name] = _text(fields[name], name, MAX_DESCRIPTION, multiline=True)
    if "source_url" in fields:
        out["source_url"] = _url(fields["source_url"])
    if "captured_at" in fields:
        out["captured_at"] = check_rfc3339(fields["captured_at"], "captured_at")
    if "location" in fields:
        out["location"] = _location(fields["location"])
    if "tags" in fields:
        tags = fields["tags"]
        if not isinstance(tags, list) or len(tags) > MAX_TAGS:
            raise FormatError(f"tags must be a list of at most {MAX_TAGS}")
        clean = [_text(t, "tag", MAX_TAG) for t in tags]
        if any(not t.strip() for t in clean):
            raise FormatError("a tag is empty")
        out["tags"] = list(dict.fromkeys(clean))
    if "extra" in fields:
        extra = fields["extra"]
        if not isinstance(extra, dict) or len(extra) > MAX_EXTRA:
            raise FormatError(f"extra must be an object of at most {MAX_EXTRA} fields")
        clean_extra = {}
        for k, v in extra.items():
            key = _text(k, "extra field name", MAX_EXTRA_KEY)
            if not key.strip():
                raise FormatError("an extra field name is empty")
            clean_extra[key] = _text(v, f"extra field {key!r}", MAX_EXTRA_VALUE, multiline=True)
        out["extra"] = clean_extra
    if "public_fields" in fields:
        names = fields["public_fields"]
        if not isinstance(names, list) or len(names) > MAX_EXTRA + 1:
            raise FormatError("public_fields must be a list of field names")
        clean_names = []
        for name in names:
            if name != "location" and not (isinstance(name, str) and name.startswith("extra.")):
                raise FormatError(
                    f"public_fields may name 'location' or 'extra.NAME', not {name!r}"
                )
            clean_names.append(_text(name, "public field", MAX_EXTRA_KEY + 6))
        out["public_fields"] = sorted(set(clean_names))
    return out


def published(meta: dict) -> dict:
    """The part of a public item's metadata a mirror may show (the allow-list above)."""
    allowed = set(meta.get("public_fields", []))
    out = {k: meta[k] for k in PUBLISHED_BY_DEFAULT if k in meta}
    location = meta.get("location")
    if location:
        shown = dict(location) if "location" in allowed else {}
        if "name" in location:
            shown["name"] = location["name"]
        if shown:
            out["location"] = shown
    extra = {k: v for k, v in meta.get("extra", {}).items() if f"extra.{k}" in allowed}
    if extra:
        out["extra"] = extra
    return out


MAX_FILENAME = 1_000


def check_filename(name: str) -> str:
    """A recorded original file name: at most 1,000 characters, no control characters."""
    return _text(name, "filename", MAX_FILENAME)


def validate(meta: object) -> dict:
    """Check a complete metadata map as stored in an item (user fields plus fixity fields)."""
    if not isinstance(meta, dict):
        raise FormatError("metadata must be a map")
    user = {k: v for k, v in meta.items() if k not in FIXITY_FIELDS}
    if validate_user(user) != user:  # stored as ingest stores it: no int coordinates, no dup tags
        raise FormatError("metadata is not in normal form")
    for name in FIXITY_FIELDS:
        if name not in meta:
            raise FormatError(f"metadata lacks {name}")
    check_filename(meta["filename"])
    if not isinstance(meta["size"], int) or isinstance(meta["size"], bool) or meta["size"] < 0:
        raise FormatError("size must be a non-negative integer")
    if not isinstance(meta["sha256"], str) or not _SHA256_HEX.fullmatch(meta["sha256"]):
        raise FormatError("sha256 must be 64 lower-case hex digits")
    _text(meta["mime"], "mime", 255)
    check_rfc3339(meta["ingested_at"], "ingested_at")
    if len(cbor.encode(meta)) > MAX_METADATA:
        raise FormatError(f"metadata is larger than {MAX_METADATA} bytes")
    return meta
