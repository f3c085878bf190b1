"""The `block` and `blocks` answers' own encoders and decoders agree byte for byte with the
generic ones."""

from __future__ import annotations

import os

import pytest
from amanah.protocol import ids
from amanah.protocol import sync as msg
from amanah.protocol.errors import FormatError
from hypothesis import given, settings
from hypothesis import strategies as st

SIZES = [0, 1, 23, 24, 255, 256, 65_535, 65_536, 1 << 20, (1 << 20) + 16]


def generic(frame: bytes) -> dict:
    """What `decode` answers without its fast path."""
    return msg._decode_generic(frame, msg.MAX_BLOCK_RESPONSE, ("block",))


@pytest.mark.parametrize("size", [*SIZES, None])
def test_block_answers_encode_and_decode_as_the_generic_cbor(size):
    block_id = ids.sha256_id(os.urandom(8))
    data = None if size is None else os.urandom(size)
    frame = msg.encode_block(block_id, data)
    assert frame == msg.encode("block", id=block_id, data=data)
    fast = msg._decode_block(frame)
    assert fast is not None and fast == generic(frame)
    assert msg.decode(frame, msg.MAX_BLOCK_RESPONSE, ("block",)) == fast
    assert type(fast["id"]) is bytes and (data is None or type(fast["data"]) is bytes)


def test_a_block_answer_over_the_size_limit_is_refused_on_the_fast_path_too():
    frame = msg.encode_block(ids.sha256_id(b"x"), os.urandom((1 << 20) + 17))
    with pytest.raises(FormatError):
        msg.decode(frame, len(frame), ("block",))
    with pytest.raises(FormatError):  # and the frame cap is checked first
        msg.decode(frame, len(frame) - 1, ("block",))


@pytest.mark.parametrize("n", [5, 30, 300])
def test_non_canonical_lengths_take_the_generic_path_and_are_refused(n):
    block_id = ids.sha256_id(b"y")
    good = msg.encode_block(block_id, b"z" * n)
    head = msg._bstr_head(n)
    longer = (b"\x59" + n.to_bytes(2, "big")) if n < 256 else (b"\x5a" + n.to_bytes(4, "big"))
    bad = good.replace(head + b"z" * n, longer + b"z" * n)
    assert bad != good and msg._decode_block(bad) is None
    with pytest.raises(FormatError):
        msg.decode(bad, msg.MAX_BLOCK_RESPONSE, ("block",))


@given(
    data=st.one_of(st.none(), st.binary(max_size=600)),
    cut=st.integers(min_value=0, max_value=700),
    flip=st.integers(min_value=0, max_value=700),
    extra=st.binary(max_size=3),
)
@settings(max_examples=400, deadline=None)
def test_whatever_the_fast_decoder_accepts_the_generic_one_accepts_the_same(data, cut, flip, extra):
    frame = msg.encode_block(ids.sha256_id(b"w"), data)
    assert_fast_path_changes_nothing(
        "block", damaged(frame, cut, flip, extra), msg.MAX_BLOCK_RESPONSE
    )


def damaged(frame: bytes, cut: int, flip: int, extra: bytes) -> bytes:
    """`frame` with one bit flipped at `flip`, cut at `cut` and `extra` appended (each when in
    range): mostly malformed frames, some still well-formed."""
    data = bytearray(frame)
    if flip < len(data):
        data[flip] ^= 0x01
    return bytes(data[: max(1, cut)] if cut < len(data) else data) + extra


def assert_fast_path_changes_nothing(t: str, frame: bytes, cap: int) -> None:
    """Whatever the fast decoder of `t` accepts, the generic one accepts with the same result,
    and `decode` answers as the generic decoder does, accepted or refused."""
    fast = msg._FAST[t](frame)
    if fast is not None:
        try:
            msg._CHECKS[t](fast)  # the field checks decode applies to what the fast path reads
        except FormatError:
            fast = None
    try:
        full = msg._decode_generic(frame, cap, (t,))
    except FormatError:
        full = None
    if fast is not None:
        assert full == fast
    try:
        got = msg.decode(frame, cap, (t,))
    except FormatError:
        got = None
    assert got == full


def test_an_error_answer_is_checked_then_raised_with_its_text():
    frame = msg.encode("error", msg="no such thing")
    with pytest.raises(msg.RemoteError, match="no such thing"):
        msg.decode(frame, msg.MAX_RESPONSE, ("entries", "error"))
    with pytest.raises(FormatError, match="unexpected message 'error'"):  # not asked for
        msg.decode(frame, msg.MAX_REQUEST, msg.REQUESTS)


@pytest.mark.parametrize(
    "fields",
    [{"msg": 7}, {"msg": "x" * 1001}, {"msg": "x", "peer": "y"}, {}],
    ids=["not-text", "too-long", "extra-field", "no-msg"],
)
def test_a_malformed_error_answer_is_malformed_not_remote(fields):
    frame = msg.encode("error", **fields)
    with pytest.raises(FormatError) as caught:
        msg.decode(frame, msg.MAX_RESPONSE, ("entries", "error"))
    assert not isinstance(caught.value, msg.RemoteError)


# --- the `blocks` answer's own encoder and decoder ---------------------------------------------

BLOCKS_CAP = msg.MAX_BLOCKS_RESPONSE + 1024


def generic_blocks(frame: bytes, cap: int = BLOCKS_CAP) -> dict:
    return msg._decode_generic(frame, cap, ("blocks",))


@pytest.mark.parametrize("count", [0, 1, 23, 24, 255, 256])
def test_blocks_answers_encode_and_decode_as_the_generic_cbor(count):
    sizes = [None, 0, 1, 23, 24, 255, 256, 4112, 65_536, (1 << 20) + 16]
    blocks = [None if sizes[i % 10] is None else os.urandom(sizes[i % 10]) for i in range(count)]
    frame = msg.encode_blocks(blocks)
    assert frame == msg.encode("blocks", blocks=blocks)
    fast = msg._decode_blocks(frame)
    assert fast is not None and fast == generic_blocks(frame, len(frame))
    assert msg.decode(frame, len(frame), ("blocks",)) == fast
    assert all(b is None or type(b) is bytes for b in fast["blocks"])


@pytest.mark.parametrize("n", [5, 30, 300])
def test_a_block_with_a_non_canonical_length_takes_the_generic_path_and_is_refused(n):
    good = msg.encode_blocks([b"a", b"z" * n])
    head = msg._bstr_head(n)
    longer = (b"\x59" + n.to_bytes(2, "big")) if n < 256 else (b"\x5a" + n.to_bytes(4, "big"))
    bad = good.replace(head + b"z" * n, longer + b"z" * n)
    assert bad != good and msg._decode_blocks(bad) is None
    with pytest.raises(FormatError):
        msg.decode(bad, BLOCKS_CAP, ("blocks",))


def test_a_non_canonical_count_an_indefinite_list_or_trailing_bytes_are_refused():
    good = msg.encode_blocks([b"x", None])
    for bad in (
        good.replace(b"\x82\x41x", b"\x98\x02\x41x"),  # the count in a wider head
        good.replace(b"\x82\x41x\xf6", b"\x9f\x41x\xf6\xff"),  # indefinite length
        good + b"\x00",
    ):
        assert bad != good and msg._decode_blocks(bad) is None
        with pytest.raises(FormatError):
            msg.decode(bad, BLOCKS_CAP, ("blocks",))


@given(
    blocks=st.lists(st.one_of(st.none(), st.binary(max_size=300)), max_size=30),
    cut=st.integers(min_value=0, max_value=9000),
    flip=st.integers(min_value=0, max_value=9000),
    extra=st.binary(max_size=3),
)
@settings(max_examples=400, deadline=None)
def test_whatever_the_blocks_fast_decoder_accepts_the_generic_one_accepts_the_same(
    blocks, cut, flip, extra
):
    frame = damaged(msg.encode_blocks(blocks), cut, flip, extra)
    assert_fast_path_changes_nothing("blocks", frame, BLOCKS_CAP)
