"""Deterministic CBOR: one byte form per value, and everything else refused."""

from __future__ import annotations

import cbor2
import pytest
from amanah.protocol import cbor
from amanah.protocol.errors import FormatError
from hypothesis import given
from hypothesis import strategies as st

from .strategies import canonical_encoding, cbor_values, loose_encodings, same

BIG = 1 << 20

# RFC 8949 appendix A, restricted to the types Amanah allows (hex copied from the RFC).
RFC_EXAMPLES = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({c: c.upper() for c in "abcde"}, "a56161614161626142616361436164614461656145"),
]


@pytest.mark.parametrize(("value", "hex_"), RFC_EXAMPLES)
def test_rfc_8949_examples(value, hex_):
    assert cbor.encode(value).hex() == hex_
    assert same(cbor.decode(bytes.fromhex(hex_), BIG), value)


def test_map_keys_sort_by_encoded_bytes_shorter_first():
    value = {"b": 1, "aa": 2, "a": 3, "B": 4}
    # "B" (0x42) < "a" < "b", then the two-character key
    assert cbor.encode(value).hex() == "a4614204616103616201626161" + "02"
    assert list(cbor.decode(cbor.encode(value), BIG)) == ["B", "a", "b", "aa"]


def test_map_key_order_counts_utf8_bytes_not_characters():
    # SPEC 1.2 rule 3: "zz" (2 bytes) < "é" (c3 a9) < "ا" (d8 a7) < "aaa" (3 bytes)
    keys = ["zz", "é", "ا", "aaa"]
    data = cbor.encode({k: 0 for k in reversed(keys)})
    assert list(cbor.decode(data, BIG)) == keys
    # the same map with its two-byte keys in character order ("é" is one character) is refused
    swapped = cbor2.dumps({"é": 0, "zz": 0, "ا": 0, "aaa": 0})
    with pytest.raises(FormatError, match="canonical"):
        cbor.decode(swapped, BIG)


def test_bool_stays_bool_and_int_stays_int():
    assert cbor.decode(b"\xf5", BIG) is True
    assert type(cbor.decode(b"\x01", BIG)) is int
    assert cbor.encode(True) != cbor.encode(1)


REFUSED = {
    # not canonical
    "unsorted map keys": "a2616201616102",
    "longer key before shorter": "a2626161016162 02".replace(" ", ""),
    "duplicate map key": "a2616101616102",
    "duplicate key, same value": "a2616101616101",
    "0 in a one-byte head": "1800",
    "23 in a one-byte head": "1817",
    "24 in a two-byte head": "190018",
    "255 in a four-byte head": "1a000000ff",
    "65535 in an eight-byte head": "1b000000000000ffff",
    "-1 in a one-byte head": "3800",
    "-25 in a two-byte head": "390018",
    "byte string length in a wide head": "580101",
    "text length in a wide head": "78016161",
    "array length in a wide head": "980101",
    "map length in a wide head": "b8016161 01".replace(" ", ""),
    "indefinite array": "9f0102ff",
    "indefinite empty array": "9fff",
    "indefinite map": "bf616101ff",
    "indefinite byte string": "5f42010241 03ff".replace(" ", ""),
    "indefinite text string": "7f616161 62ff".replace(" ", ""),
    "trailing byte": "0100",
    "two values": "f6f6",
    # types outside Amanah CBOR
    "half float": "f93c00",
    "half float zero": "f90000",
    "single float": "fa47c35000",
    "double float": "fb3ff199999999999a",
    "float NaN": "f97e00",
    "tag 0 date string": "c074323031332d30332d32315432303a30343a30305a",
    "tag 1 epoch": "c11a514b67b0",
    "tag 2 bignum small": "c24101",
    "tag 2 bignum 2**64": "c249010000000000000000",
    "tag 3 negative bignum": "c349010000000000000000",
    "tag 24 embedded cbor": "d81842 0100".replace(" ", ""),
    "tag 32 uri": "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
    "tag 258 set": "d9010280",
    "tag 55799 self-describe": "d9d9f700",
    "tag 28 shareable": "d81c80",
    "undefined": "f7",
    "simple 16": "f0",
    "simple 255": "f8ff",
    # map keys that are not text
    "integer key": "a10102",
    "byte string key": "a1410102",
    "array key": "a18001",
    "null key": "a1f601",
    # malformed
    "empty": "",
    "truncated integer": "19 01".replace(" ", ""),
    "truncated byte string": "4401 02".replace(" ", ""),
    "truncated array": "8301 02".replace(" ", ""),
    "lone break": "ff",
    "reserved additional info 28": "1c",
    "invalid utf-8": "62c328",
    "utf-16 surrogate in utf-8": "63eda080",
    "declared length far beyond input": "5bffffffffffffffff",
    "declared array length far beyond input": "9bffffffffffffffff00",
}


@pytest.mark.parametrize("hex_", REFUSED.values(), ids=REFUSED.keys())
def test_refused(hex_):
    with pytest.raises(FormatError):
        cbor.decode(bytes.fromhex(hex_), BIG)


def test_refused_examples_are_not_mislabelled():
    # The non-canonical cases above all decode with a lenient decoder: so what refuses them
    # is the canonical check, not a malformed sample.
    for name in ("unsorted map keys", "23 in a one-byte head", "indefinite map", "trailing byte"):
        cbor2.loads(bytes.fromhex(REFUSED[name]))


def test_64_bit_integer_limits():
    assert cbor.decode(bytes.fromhex("1bffffffffffffffff"), BIG) == 2**64 - 1
    assert cbor.decode(bytes.fromhex("3bffffffffffffffff"), BIG) == -(2**64)
    # one beyond each end is only expressible as a bignum (tag 2 / 3)
    with pytest.raises(FormatError):
        cbor.decode(cbor2.dumps(2**64, canonical=True), BIG)
    with pytest.raises(FormatError):
        cbor.decode(cbor2.dumps(-(2**64) - 1, canonical=True), BIG)


def test_size_limit_is_checked_before_decoding():
    data = cbor.encode(b"x" * 100)
    assert cbor.decode(data, len(data)) == b"x" * 100
    with pytest.raises(FormatError, match="exceeds"):
        cbor.decode(data, len(data) - 1)
    # garbage over the limit is refused for its size, not its content
    with pytest.raises(FormatError, match="exceeds"):
        cbor.decode(b"\xff" * 1000, 999)


def nest(value, levels, kind="list"):
    for _ in range(levels):
        value = [value] if kind == "list" else {"k": value}
    return value


@pytest.mark.parametrize("kind", ["list", "map"])
def test_nesting_up_to_the_limit(kind):
    value = nest(0, cbor.MAX_DEPTH, kind)
    assert cbor.decode(cbor.encode(value), BIG) == value
    with pytest.raises(FormatError, match="deep"):
        cbor.decode(cbor.encode(nest(0, cbor.MAX_DEPTH + 1, kind)), BIG)
    # an empty container at the limit counts as a level too
    empty = [] if kind == "list" else {}
    with pytest.raises(FormatError, match="deep"):
        cbor.decode(cbor.encode(nest(empty, cbor.MAX_DEPTH, kind)), BIG)


def test_mixed_nesting_beyond_the_limit():
    value = 0
    for i in range(cbor.MAX_DEPTH + 1):
        value = [value] if i % 2 else {"a": value}
    with pytest.raises(FormatError):
        cbor.decode(cbor.encode(value), BIG)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_very_deep_nesting_is_refused_without_crashing(depth):
    with pytest.raises(FormatError):
        cbor.decode(b"\x81" * depth + b"\x00", 1 << 20)
    with pytest.raises(FormatError):
        cbor.decode(b"\x9f" * depth, 1 << 20)


# --- properties -------------------------------------------------------------------------------


@given(cbor_values())
def test_round_trip(value):
    data = cbor.encode(value)
    assert same(cbor.decode(data, BIG), value)


@given(cbor_values())
def test_encoding_agrees_with_an_independent_canonical_encoder(value):
    assert cbor.encode(value) == canonical_encoding(value)


@given(loose_encodings())
def test_only_the_canonical_encoding_is_accepted(case):
    value, data, canonical = case
    if canonical:
        assert same(cbor.decode(data, BIG), value)
    else:
        assert data != cbor.encode(value)
        with pytest.raises(FormatError):
            cbor.decode(data, BIG)


@given(cbor_values(), st.data())
def test_every_proper_prefix_is_refused(value, data):
    encoded = cbor.encode(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(FormatError):
        cbor.decode(encoded[:cut], BIG)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_format_error_only(data):
    try:
        value = cbor.decode(data, BIG)
    except FormatError:
        return
    assert cbor.encode(value) == data


@given(cbor_values(), st.floats(allow_nan=False) | st.sampled_from([float("nan")]))
def test_a_float_anywhere_is_refused(value, number):
    with pytest.raises(FormatError):
        cbor.decode(cbor2.dumps([value, {"f": number}], canonical=True), BIG)
