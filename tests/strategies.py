"""Hypothesis strategies shared by the protocol tests."""

from __future__ import annotations

import string
import struct
from datetime import datetime

import nacl.signing
from amanah.protocol import crypto, ids, metadata
from hypothesis import strategies as st

# --- CBOR values ------------------------------------------------------------------------------

cbor_ints = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.sampled_from([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, -24, -25, -(2**64)]),
)
cbor_leaves = st.one_of(
    cbor_ints, st.binary(max_size=40), st.text(max_size=20), st.booleans(), st.none()
)


def cbor_values(depth: int = 4) -> st.SearchStrategy:
    """Values Amanah CBOR allows, nested at most `depth` containers deep."""
    if depth == 0:
        return cbor_leaves
    inner = cbor_values(depth - 1)
    return st.one_of(
        cbor_leaves,
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=6), inner, max_size=5),
    )


def same(a: object, b: object) -> bool:
    """Equality that also compares types (True == 1 and 1 == 1.0 in Python, not in CBOR)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# A small independent CBOR encoder. With every choice canonical it must agree with
# amanah.protocol.cbor.encode byte for byte; with any other choice, cbor.decode must refuse.

_WIDTHS = {1: 24, 2: 25, 4: 26, 8: 27}
_PACK = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}


def _head(major: int, n: int, width: int | None) -> bytes:
    if width is None:  # shortest
        if n < 24:
            return bytes([major << 5 | n])
        width = next(w for w in (1, 2, 4, 8) if n < 1 << (8 * w))
    return bytes([major << 5 | _WIDTHS[width]]) + struct.pack(_PACK[width], n)


def _shortest_width(n: int) -> int:
    return 0 if n < 24 else next(w for w in (1, 2, 4, 8) if n < 1 << (8 * w))


class LooseEncoder:
    """Encodes a value, asking `choose(options)` at each node how to encode it."""

    def __init__(self, choose) -> None:  # noqa: ANN001
        self.choose = choose
        self.canonical = True

    def _n(self, major: int, n: int) -> bytes:
        wider = [w for w in (1, 2, 4, 8) if w > _shortest_width(n)]
        width = self.choose([None, *wider])
        if width is not None:
            self.canonical = False
        return _head(major, n, width)

    def encode(self, v: object) -> bytes:
        if v is False:
            return b"\xf4"
        if v is True:
            return b"\xf5"
        if v is None:
            return b"\xf6"
        if isinstance(v, int):
            return self._n(0, v) if v >= 0 else self._n(1, -1 - v)
        if isinstance(v, (bytes, str)):
            major = 2 if isinstance(v, bytes) else 3
            data = v if isinstance(v, bytes) else v.encode("utf-8")
            if self.choose(["definite", "indefinite"]) == "indefinite":
                self.canonical = False
                return bytes([major << 5 | 31]) + self._n(major, len(data)) + data + b"\xff"
            return self._n(major, len(data)) + data
        if isinstance(v, list):
            body = b"".join(self.encode(x) for x in v)
            if self.choose(["definite", "indefinite"]) == "indefinite":
                self.canonical = False
                return b"\x9f" + body + b"\xff"
            return self._n(4, len(v)) + body
        if isinstance(v, dict):
            pairs = sorted((self.encode(k), self.encode(x)) for k, x in v.items())
            if len(pairs) > 1 and self.choose(["sorted", "swapped"]) == "swapped":
                self.canonical = False
                pairs[0], pairs[1] = pairs[1], pairs[0]
            body = b"".join(k + x for k, x in pairs)
            if self.choose(["definite", "indefinite"]) == "indefinite":
                self.canonical = False
                return b"\xbf" + body + b"\xff"
            return self._n(5, len(v)) + body
        raise TypeError(type(v))


def canonical_encoding(value: object) -> bytes:
    return LooseEncoder(lambda options: options[0]).encode(value)


@st.composite
def loose_encodings(draw, depth: int = 3) -> tuple[object, bytes, bool]:  # noqa: ANN001
    """(value, some encoding of it, whether that encoding is the canonical one)."""
    value = draw(cbor_values(depth))
    # mostly canonical choices, so that one deviation is often the only one
    enc = LooseEncoder(
        lambda options: options[0] if draw(st.integers(0, 5)) else draw(st.sampled_from(options))
    )
    return value, enc.encode(value), enc.canonical


# --- ids and keys -----------------------------------------------------------------------------

digests = st.binary(min_size=32, max_size=32)
raw_ids = digests.map(ids.multihash)
kinds = st.sampled_from(sorted(ids.KINDS))
seeds = st.binary(min_size=32, max_size=32)
signing_keys = seeds.map(nacl.signing.SigningKey)
keys = st.binary(min_size=crypto.KEY_LEN, max_size=crypto.KEY_LEN)
salts = st.binary(min_size=crypto.SALT_LEN, max_size=crypto.SALT_LEN)
block_indexes = st.integers(min_value=0, max_value=2**64 - 1)


# --- metadata ---------------------------------------------------------------------------------

_CONTROLS = "".join(chr(c) for c in range(0x20)) + "\x7f"


def clean_text(max_size: int = 40, multiline: bool = False, min_size: int = 0) -> st.SearchStrategy:
    """Text without the control characters metadata refuses (tab allowed; CR/LF if multiline)."""
    allowed = "\t\n\r" if multiline else "\t"
    return st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs",),
            blacklist_characters="".join(c for c in _CONTROLS if c not in allowed),
        ),
        min_size=min_size,
        max_size=max_size,
    )


non_blank = clean_text(30, min_size=1).filter(lambda s: s.strip())


@st.composite
def rfc3339(draw) -> str:  # noqa: ANN001
    """A real RFC 3339 date-time, in any of the spellings metadata accepts."""
    moment = draw(
        st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31))
    ).replace(microsecond=0)
    text = moment.strftime("%Y-%m-%d") + draw(st.sampled_from("Tt ")) + moment.strftime("%H:%M:%S")
    if draw(st.booleans()):
        text += "." + draw(st.text(string.digits, min_size=1, max_size=9))
    minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    if minutes == 0 and draw(st.booleans()):
        return text + draw(st.sampled_from("Zz"))
    sign = "-" if minutes < 0 else "+"
    return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _decimal(bound: int) -> st.SearchStrategy:
    return st.decimals(min_value=-bound, max_value=bound, places=6, allow_nan=False).map(
        lambda d: format(d, "f")
    )


locations = (
    st.fixed_dictionaries(
        {},
        optional={"name": clean_text(30), "precision": st.sampled_from(metadata.PRECISIONS)},
    )
    .flatmap(
        lambda loc: st.one_of(
            st.just(loc),
            st.tuples(_decimal(90), _decimal(180)).map(
                lambda ll: {**loc, "lat": ll[0], "lon": ll[1]}
            ),
        )
    )
    .filter(bool)
)

urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}\.(org|com|net)", fullmatch=True),
    st.text(string.ascii_letters + string.digits + "-._~/?=&%", max_size=30),
)

user_metadata = st.fixed_dictionaries(
    {},
    optional={
        "title_en": clean_text(40),
        "title_ar": clean_text(40),
        "description_en": clean_text(80, multiline=True),
        "description_ar": clean_text(80, multiline=True),
        "source_url": urls,
        "captured_at": rfc3339(),
        "location": locations,
        "tags": st.lists(non_blank, max_size=5, unique=True),
        "extra": st.dictionaries(non_blank, clean_text(40, multiline=True), max_size=4),
    },
)

fixity = st.fixed_dictionaries(
    {
        "filename": clean_text(40),
        "size": st.integers(0, 2**44),
        "sha256": digests.map(bytes.hex),
        "mime": clean_text(30),
        "ingested_at": rfc3339(),
    }
)

stored_metadata = st.tuples(user_metadata, fixity).map(lambda uf: {**uf[0], **uf[1]})
