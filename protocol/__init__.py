"""Amanah wire and record formats: pure data, no I/O, no event loop, no libp2p.

Everything here is specified byte for byte in SPEC.md; the code is the reference implementation.
"""
