"""Shared fixtures: real node homes, a real `amanah` process for CLI tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSPHRASE = "correct horse battery staple"
AMANAH = shutil.which("amanah", path=str(Path(sys.executable).parent)) or shutil.which("amanah")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):  # noqa: ANN201
        return json.loads(self.out)


class Cli:
    """Runs the installed `amanah` console script as a real process against one home."""

    def __init__(self, home: Path, cwd: Path, passphrase: str | None = PASSPHRASE) -> None:
        self.home = home
        self.cwd = cwd
        self.passphrase = passphrase

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMANAH_")}
        env["AMANAH_HOME"] = str(self.home)
        if self.passphrase is not None:
            env["AMANAH_PASSPHRASE"] = self.passphrase
        env.update(extra)
        return env

    def __call__(
        self, *args: str, input: str | None = None, env: dict | None = None, timeout: float = 120
    ) -> Result:
        assert AMANAH, "the amanah console script is not installed (pip install -e .)"
        proc = subprocess.run(
            [AMANAH, *map(str, args)],
            cwd=self.cwd,
            env=env or self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kw) -> Result:  # noqa: ANN003
        r = self(*args, **kw)
        assert r.code == 0, f"amanah {' '.join(map(str, args))} failed ({r.code}): {r.err}"
        return r


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI bound to a new, not yet initialised home."""
    work = tmp_path / "work"
    work.mkdir()
    return Cli(tmp_path / "home", work)


@pytest.fixture
def node_cli(cli: Cli) -> Cli:
    """A CLI bound to an initialised home (passphrase-protected)."""
    cli.ok("init", "--name", "Test node")
    return cli


@pytest.fixture
def node(tmp_path: Path):  # noqa: ANN201
    """An initialised node opened in-process (for fast core tests)."""
    from amanah.node.home import Node, init_home

    home = tmp_path / "node"
    init_home(home, "core test", PASSPHRASE)
    n = Node(home, lambda: PASSPHRASE)
    yield n
    n.close()
