"""Every command has --help; a usage error exits 2 (and never touches the home)."""

from __future__ import annotations

import click
import pytest
from amanah.cli.main import main

from tests.conftest import Cli

CONTRACT = [
    [],
    ["init"],
    ["id"],
    ["identity"],
    ["identity", "export"],
    ["collection"],
    ["collection", "create"],
    ["collection", "list"],
    ["collection", "show"],
    ["add"],
    ["ls"],
    ["get"],
    ["verify"],
    ["redact"],
]


def command_paths(group: click.Group, prefix: list[str]) -> list[list[str]]:
    out = [prefix]
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += command_paths(cmd, [*prefix, name])
        else:
            out.append([*prefix, name])
    return out


ALL = command_paths(main, [])


def test_the_contracts_commands_exist():
    assert [c for c in CONTRACT if c not in ALL] == []


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "amanah")
def test_help(cli: Cli, path):
    r = cli(*path, "--help")
    assert r.code == 0, r.err
    assert r.out.startswith(f"Usage: amanah {' '.join(path)}".rstrip())
    assert "--help" in r.out and r.err == ""
    assert not cli.home.exists()  # help needs no node and makes none


def test_short_help_flag(cli: Cli):
    assert cli("add", "-h").out == cli("add", "--help").out


USAGE_ERRORS = {
    "no command": [],
    "unknown command": ["frobnicate"],
    "unknown subcommand": ["collection", "frobnicate"],
    "unknown option": ["ls", "--frobnicate", "x"],
    "add without paths": ["add", "c"],
    "add without anything": ["add"],
    "create without tier": ["collection", "create", "c"],
    "bad tier": ["collection", "create", "c", "--tier", "secret"],
    "get without item": ["get"],
    "redact without reason": ["redact", "itm_x"],
    "verify two targets": ["verify", "a", "b"],
    "option without value": ["add", "c", "f", "--title"],
    "bad role": ["init", "--role", "admin"],
    "export without file": ["identity", "export"],
}


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_error_exits_2(cli: Cli, case):
    r = cli(*USAGE_ERRORS[case], input="")
    assert r.code == 2, (r.code, r.out, r.err)
    text = r.err or r.out
    assert ("Usage: amanah" in text or text.startswith("Error: ")) and "Traceback" not in text
    assert not cli.home.exists()


def test_usage_error_on_an_initialised_node(node_cli: Cli):
    before = sorted(p.name for p in node_cli.home.rglob("*"))
    r = node_cli("collection", "create", "c", "--tier", "secret")
    assert r.code == 2 and "Invalid value for '--tier'" in r.err
    assert node_cli.ok("collection", "list", "--json").json() == []
    assert sorted(p.name for p in node_cli.home.rglob("*")) == before


def test_version(cli: Cli):
    r = cli("--version")
    assert r.code == 0 and "version" in r.out
