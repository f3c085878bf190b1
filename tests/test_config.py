"""The config file: the annotated example loads, and unknown or mistyped keys are refused."""

from pathlib import Path

import pytest
from amanah.node import config
from amanah.node.errors import HomeError

EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "node.example.toml"


def test_example_config_loads_with_documented_values():
    cfg = config.load(EXAMPLE)
    assert cfg.name == "Example Archive"
    assert cfg.role == "partner"
    assert cfg.map_size == 1024 << 30
    assert cfg.listen == ["/ip4/0.0.0.0/tcp/4710"]
    assert cfg.http == "127.0.0.1:8470"
    assert cfg.fold_teh_marbuta is False
    assert config.parse("[web]\nfold_teh_marbuta = true\n").fold_teh_marbuta is True
    assert config.parse(config.render("x")).fold_teh_marbuta is False  # what init writes


def test_rendered_config_round_trips_awkward_names():
    name = 'Women\'s "Archive" أرشيف \\ end'
    assert config.parse(config.render(name)).name == name


@pytest.mark.parametrize(
    "text, message",
    [
        ("[node]\nnmae = 'x'\n", "unknown key node.nmae"),
        ("[nodes]\nname = 'x'\n", "unknown section [nodes]"),
        ("[store]\nmap_size_gib = 'big'\n", "must be of type int"),
        ("[store]\nmap_size_gib = true\n", "must be of type int"),
        ("[store]\nmap_size_gib = 0\n", "between 1 and 65536"),
        ("[store]\nbackend = 'ftp'\n", "store.backend"),
        ("[node]\nrole = 'king'\n", "node.role"),
        ("[http]\nlisten = 'localhost'\n", "HOST:PORT"),
        ("[network]\nlisten = ['0.0.0.0:1']\n", "multiaddrs"),
        ("version = 2\n", "unsupported config version"),
        ("[node\n", "not valid TOML"),
        ("[web]\nfold_teh_marbuta = 'yes'\n", "must be of type bool"),
    ],
)
def test_bad_config_is_refused_with_the_key_named(text, message):
    with pytest.raises(HomeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.parse(text)
