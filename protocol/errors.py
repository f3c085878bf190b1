"""Errors raised when bytes from outside do not follow SPEC.md.

Hierarchy::

    FormatError            the bytes are malformed (bad CBOR, wrong field, over a size cap)
    ├── SignatureError     a signature does not verify
    ├── ChainError         a log entry does not follow its predecessor
    └── IntegrityError     content does not hash or decrypt to what was recorded
"""


class FormatError(ValueError):
    """Data does not follow the Amanah format."""


class SignatureError(FormatError):
    """A signature does not verify against the key it claims."""


class ChainError(FormatError):
    """A log entry does not follow its predecessor (position, previous hash or collection)."""


class IntegrityError(FormatError):
    """Content does not match its hash, or does not authenticate under its key."""
