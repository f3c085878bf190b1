"""A node's home directory, and the open node that the CLI (and later the daemon) works with.

Layout (all private to the operator: directories 0700, files 0600)::

    HOME/config.toml     settings (configs/node.example.toml documents them)
    HOME/identity        the Ed25519 seed, sealed under the passphrase
    HOME/store/          the LMDB environment (data.mdb, lock.mdb)
    HOME/run/            lock files of ingests in progress
    HOME/uploads/        HTTP uploads in progress, encrypted (node/partner_api.py)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import config as config_mod
from . import identity as identity_mod
from .archive import Archive
from .blobstore import LmdbBlobStore
from .errors import HomeError
from .identity import Backup, Identity
from .store import Store

PassphraseSource = Callable[[], "str | None"]


def default_home() -> Path:
    env = os.environ.get("AMANAH_HOME")
    return Path(env) if env else Path.home() / ".amanah"


class Node:
    """An initialised home, opened: config, store, and the identity (unlocked on first use)."""

    def __init__(self, home: Path, passphrase: PassphraseSource) -> None:
        self.home = home
        if not (home / "identity").exists():
            if not home.exists():
                raise HomeError(f"no Amanah node at {home} (run: amanah init)")
            raise HomeError(f"{home} is not an initialised Amanah node (run: amanah init)")
        self.config = config_mod.load(home / "config.toml")
        self.public_key = identity_mod.read_public_key(home / "identity")
        self._passphrase = passphrase
        self._identity: Identity | None = None
        self.store = Store(home / "store", self.config.map_size)
        self.blobs = LmdbBlobStore(self.store)
        self.archive = Archive(self.store)
        (home / "run").mkdir(mode=0o700, exist_ok=True)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def peer_id(self) -> str:
        from amanah.protocol import ids

        return ids.peer_id_from_public_key(self.public_key)

    @property
    def identity(self) -> Identity:
        """The unlocked identity; asks for the passphrase the first time it is needed."""
        if self._identity is None:
            path = self.home / "identity"
            passphrase = self._passphrase() if identity_mod.is_encrypted(path) else None
            self._identity = identity_mod.load_identity(path, passphrase)
        return self._identity

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def init_home(
    home: Path,
    name: str,
    passphrase: str | None,
    role: str = "partner",
    backup: Backup | None = None,
) -> Identity:
    """Create a new node home. Never touches an existing identity."""
    if (home / "identity").exists():
        raise HomeError(f"{home} already holds an Amanah node; refusing to overwrite its identity")
    if home.exists() and any(home.iterdir()):
        raise HomeError(f"{home} is not empty; choose an empty or new directory for the node")
    if role not in config_mod.ROLES:
        raise HomeError(f"role must be one of {', '.join(config_mod.ROLES)}")
    identity = backup.identity if backup else Identity.generate()
    if backup and not name:
        name = backup.name
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        cfg_text = config_mod.render(name, role)
        cfg = config_mod.parse(cfg_text)
        Store(home / "store", cfg.map_size, create=True).close()
        (home / "run").mkdir(mode=0o700, exist_ok=True)
        fd = os.open(home / "config.toml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(cfg_text)
        # The identity is written last: its presence is what marks a home as initialised.
        identity_mod.write_identity(home / "identity", identity, passphrase)
    except OSError as exc:
        raise HomeError(f"cannot create the node home at {home}: {exc.strerror}") from None
    return identity
