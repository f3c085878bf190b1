"""Errors the node reports to its user. Each message is meant to be read by a person.

Hierarchy::

    AmanahError              the root: the CLI prints its message on one line and exits 1
    ├── HomeError            no node here, a node already here, or the home is damaged
    ├── PassphraseError      no passphrase given, or the wrong one
    ├── NotFound             an unknown collection or item
    ├── InvalidInput         a path, metadata or argument the user gave is not acceptable
    ├── StoreFull            the disk or the LMDB map is full; nothing was half-stored
    ├── Unreadable           this node holds the item but not the key to read it
    └── DamagedError         stored data failed verification
"""


class AmanahError(Exception):
    """A failure the user must see."""


class HomeError(AmanahError):
    """The node home is missing, already initialised, or damaged."""


class PassphraseError(AmanahError):
    """The identity could not be unlocked."""


class NotFound(AmanahError):
    """No such collection or item on this node."""


class InvalidInput(AmanahError):
    """Something the user supplied is not acceptable."""


class StoreFull(AmanahError):
    """The store could not take more data; the operation was rolled back."""


class Unreadable(AmanahError):
    """The node holds this data encrypted and has no key for it."""


class DamagedError(AmanahError):
    """Stored data failed verification."""
