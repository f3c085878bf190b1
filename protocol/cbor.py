"""Deterministic CBOR (RFC 8949 section 4.2) restricted to the types SPEC.md allows.

Decoding is strict: the input must be exactly the canonical encoding of what it decodes to, so a
value has one and only one byte form and hashes and signatures over it are stable. Only these
types occur: unsigned and negative integers within 64 bits, byte strings, text strings, arrays,
maps with text keys, booleans and null. No floats, no tags, no indefinite lengths.
"""

from __future__ import annotations

from typing import Any

import cbor2

from .errors import FormatError

MAX_DEPTH = 16
_INT_LIMIT = 2**64


def encode(value: Any) -> bytes:
    """Encode `value` canonically. The caller builds `value` from checked parts; `decode` is
    where types are enforced, on everything that comes from outside."""
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes, max_size: int) -> Any:
    """Decode `data`, refusing anything over `max_size` bytes or not in canonical form."""
    if len(data) > max_size:
        raise FormatError(f"CBOR value of {len(data)} bytes exceeds the {max_size}-byte limit")
    try:
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise FormatError(f"malformed CBOR: {exc}") from None
    _check(value, 0)
    # _check refused map keys out of canonical order, so the plain encoder (which keeps the
    # order decoded) gives the canonical bytes, at a quarter of the cost of canonical=True,
    # which sorts every map again: ~1 us instead of ~4.5 us for a log entry.
    if cbor2.dumps(value) != data:
        raise FormatError("CBOR is not in canonical form")
    return value


def _check(value: Any, depth: int) -> None:
    # Dispatch on the exact type: subclasses (bool is an int) and anything else are refused
    # unless listed. This runs on every value decoded from outside, so it is kept cheap.
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return
    if t is int:
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise FormatError("integer out of 64-bit range")
        return
    if depth >= MAX_DEPTH:
        raise FormatError("CBOR nesting too deep")
    if t is list:
        for v in value:
            tv = type(v)
            if tv is int:  # inline: a call per integer showed in profiles of a pull
                if not -_INT_LIMIT <= v < _INT_LIMIT:
                    raise FormatError("integer out of 64-bit range")
            elif tv not in _LEAF:
                _check(v, depth + 1)
        return
    if t is dict:
        # Canonical order (SPEC 2): keys sorted by their encoded bytes, so the shorter first,
        # then bytewise; each strictly after the one before (a repeated key is refused too).
        before = None
        for k, v in value.items():
            if type(k) is not str:
                raise FormatError("map keys must be text")
            key = k.encode()
            if before is not None and (
                len(key) < len(before) or (len(key) == len(before) and key <= before)
            ):
                raise FormatError("map keys are not in canonical order")
            before = key
            tv = type(v)
            if tv is int:
                if not -_INT_LIMIT <= v < _INT_LIMIT:
                    raise FormatError("integer out of 64-bit range")
            elif tv not in _LEAF:
                _check(v, depth + 1)
        return
    raise FormatError(f"type {t.__name__} is not allowed in Amanah CBOR")


_LEAF = frozenset((str, bytes, bool, type(None)))
