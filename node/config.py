"""The node's configuration file (config.toml in the home), versioned and strictly checked.

Unknown keys are errors: a misspelt option silently ignored is a security hole waiting (say, a
listen address thought to be local). configs/node.example.toml documents every key.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HomeError

CONFIG_VERSION = 1
DEFAULT_MAP_SIZE_GIB = 1024
DEFAULT_HTTP = "127.0.0.1:8470"
DEFAULT_LISTEN = ["/ip4/0.0.0.0/tcp/4710"]

# section -> key -> (type, default)
_SCHEMA: dict[str, dict[str, tuple[type, Any]]] = {
    "node": {"name": (str, ""), "role": (str, "partner")},
    "store": {"map_size_gib": (int, DEFAULT_MAP_SIZE_GIB), "backend": (str, "lmdb")},
    "network": {"listen": (list, DEFAULT_LISTEN), "mdns": (bool, True)},
    "http": {"listen": (str, DEFAULT_HTTP)},
    "web": {"fold_teh_marbuta": (bool, False)},
}
ROLES = ("partner", "mirror")
BACKENDS = ("lmdb",)


@dataclass
class Config:
    name: str = ""
    role: str = "partner"
    map_size_gib: int = DEFAULT_MAP_SIZE_GIB
    backend: str = "lmdb"
    listen: list[str] = field(default_factory=lambda: list(DEFAULT_LISTEN))
    mdns: bool = True
    http: str = DEFAULT_HTTP
    fold_teh_marbuta: bool = False  # public web search: ة matches ه (node/web/search.py)

    @property
    def map_size(self) -> int:
        return self.map_size_gib << 30


def parse(text: str, source: str = "config") -> Config:
    """Parse and check a config; raises HomeError naming the offending key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HomeError(f"{source}: not valid TOML: {exc}") from None
    version = data.pop("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise HomeError(f"{source}: unsupported config version {version!r}")
    values: dict[str, Any] = {}
    for section, table in data.items():
        if section not in _SCHEMA:
            raise HomeError(f"{source}: unknown section [{section}]")
        if not isinstance(table, dict):
            raise HomeError(f"{source}: [{section}] must be a table")
        for key, value in table.items():
            if key not in _SCHEMA[section]:
                raise HomeError(f"{source}: unknown key {section}.{key}")
            kind, _ = _SCHEMA[section][key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise HomeError(f"{source}: {section}.{key} must be of type {kind.__name__}")
            values[f"{section}.{key}"] = value
    cfg = Config(
        name=values.get("node.name", ""),
        role=values.get("node.role", "partner"),
        map_size_gib=values.get("store.map_size_gib", DEFAULT_MAP_SIZE_GIB),
        backend=values.get("store.backend", "lmdb"),
        listen=values.get("network.listen", list(DEFAULT_LISTEN)),
        mdns=values.get("network.mdns", True),
        http=values.get("http.listen", DEFAULT_HTTP),
        fold_teh_marbuta=values.get("web.fold_teh_marbuta", False),
    )
    if cfg.role not in ROLES:
        raise HomeError(f"{source}: node.role must be one of {', '.join(ROLES)}")
    if cfg.backend not in BACKENDS:
        raise HomeError(f"{source}: store.backend must be one of {', '.join(BACKENDS)}")
    if not 1 <= cfg.map_size_gib <= 1 << 16:
        raise HomeError(f"{source}: store.map_size_gib must be between 1 and 65536")
    if not all(isinstance(a, str) and a.startswith("/") for a in cfg.listen):
        raise HomeError(f"{source}: network.listen must be a list of multiaddrs")
    host, _, port = cfg.http.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HomeError(f"{source}: http.listen must be HOST:PORT")
    return cfg


def load(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HomeError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HomeError(f"cannot read {path}: {exc}") from None
    return parse(text, str(path))


def render(name: str, role: str = "partner") -> str:
    """The config written by `amanah init`: the example's defaults, with this node's name."""
    # JSON strings are valid TOML basic strings (same escapes), so json.dumps quotes safely.
    return f"""# Amanah node configuration. Every key is documented in configs/node.example.toml.
version = {CONFIG_VERSION}

[node]
name = {json.dumps(name, ensure_ascii=False)}
role = "{role}"

[store]
backend = "lmdb"
map_size_gib = {DEFAULT_MAP_SIZE_GIB}

[network]
listen = {json.dumps(DEFAULT_LISTEN)}
mdns = true

[http]
listen = "{DEFAULT_HTTP}"

[web]
fold_teh_marbuta = false
"""
