"""Nothing of a closed or trusted item is in the clear anywhere in the node's home.

Every file under the home (LMDB data and lock files, config, identity, run/) is read as bytes and
searched for the content, the titles, descriptions, tags, file names, the original's SHA-256 (hex
and raw) and the collection names. A public collection filled the same way is the control: its
plaintext must be found, which shows the search would see a leak.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import Cli


def home_bytes(home: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()
    }


def found(files: dict[str, bytes], needle: bytes) -> list[str]:
    return [name for name, data in files.items() if needle in data]


def fill(cli: Cli, tier: str, tag: str) -> dict[str, bytes]:
    """A collection of `tier` with three items, distinctive throughout; returns what must (not)
    be findable, by label."""
    mark = os.urandom(4).hex()
    word = {"closed": "مغلقة", "trusted": "موثوقة", "public": "عامة"}[tier]  # Arabic, per tier
    name = f"{tier} col {mark} {tag} مجموعة {tag}"
    cli.ok("collection", "create", name, "--tier", tier)
    secrets: dict[str, bytes] = {"collection name": name.encode()}
    files = []
    for n, size in enumerate((64 * 1024, 1_120_000)):  # one block, and the streamed path
        marker = os.urandom(16)
        content = (marker * (size // 16 + 1))[:size]
        fname = f"witness-{tag}-{n}-{mark}-شاهد.mp4"
        (cli.cwd / fname).write_bytes(content)
        files.append(fname)
        digest = hashlib.sha256(content).digest()
        secrets |= {
            f"content {n}": marker,
            f"file name {n}": fname.encode(),
            f"sha256 hex {n}": digest.hex().encode(),
            f"SHA256 HEX {n}": digest.hex().upper().encode(),
            f"sha256 raw {n}": digest,
        }
    texts = {
        "title_en": f"Detention testimony {tag} {mark}",
        "title_ar": f"شهادة معتقل سابق {word} {tag}",
        "description_en": f"Names the officers of branch {mark} {tag}",
        "description_ar": f"يذكر أسماء الضباط في الفرع {tag}",
        "source_url": f"https://example.org/{tag}/{mark}",
        "location": {"name": f"سجن {tag} {mark}", "lat": "33.5", "lon": "36.3"},
        "tags": [f"torture-{tag}-{mark}", f"تعذيب-{tag}"],
        "extra": {"informant": f"pseudonym {tag} {mark}"},
    }
    meta_file = cli.cwd / f"{tag}.json"
    meta_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    cli.ok("add", name, *files, "--meta-file", str(meta_file))
    for key in ("title_en", "title_ar", "description_en", "description_ar", "source_url"):
        secrets[key] = texts[key].encode()
    secrets["title_ar words"] = f"شهادة معتقل سابق {word}".encode()  # the Arabic alone
    secrets["location"] = texts["location"]["name"].encode()
    secrets["tag en"], secrets["tag ar"] = (t.encode() for t in texts["tags"])
    secrets["extra"] = texts["extra"]["informant"].encode()
    # a redacted item's reason is part of the log: for these tiers, encrypted there
    (cli.cwd / f"gone-{tag}.txt").write_bytes(b"x")
    [gone] = cli.ok("add", name, f"gone-{tag}.txt", "--json").json()
    reason = f"Witness {tag} {mark} asked to be removed"
    cli.ok("redact", gone["id"], "--reason", reason)
    secrets["redaction reason"] = reason.encode()
    # use the node as an operator would before looking: list, read back, verify
    rows = cli.ok("ls", name, "--json").json()
    assert [r["metadata"]["title_ar"] for r in rows] == [texts["title_ar"]] * 2
    cli.ok("get", rows[1]["id"], "-o", str(cli.cwd / f"back-{tag}"))
    for f in files:
        (cli.cwd / f).unlink()  # the originals live outside the home anyway
    return secrets


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, dict[str, bytes]]:
    base = tmp_path_factory.mktemp("confidential")
    cli = Cli(base / "home", base / "work")
    cli.cwd.mkdir()
    cli.ok("init")
    closed = fill(cli, "closed", "CLOSEDTAG")
    trusted = fill(cli, "trusted", "TRUSTEDTAG")
    public = fill(cli, "public", "PUBLICTAG")
    cli.ok("verify")
    cli.ok("collection", "list")
    return closed, trusted, public, home_bytes(cli.home)


@pytest.mark.parametrize("tier", ["closed", "trusted"])
def test_nothing_in_the_clear(home, tier):
    closed, trusted, _, files = home
    secrets = closed if tier == "closed" else trusted
    leaks = {label: found(files, needle) for label, needle in secrets.items()}
    assert {label: where for label, where in leaks.items() if where} == {}


def test_the_search_sees_public_plaintext(home):
    """The control: a public collection's data is stored in the clear, and the search finds it."""
    *_, public, files = home
    expected_clear = [
        "collection name",
        "content 0",
        "content 1",
        "file name 0",
        "sha256 hex 1",
        "sha256 raw 0",  # a one-block public item's block id is the SHA-256 of the file
        "title_en",
        "title_ar",
        "description_ar",
        "location",
        "tag ar",
        "redaction reason",
    ]
    missing = [label for label in expected_clear if not found(files, public[label])]
    assert missing == []
    assert any(name.startswith("store/") for name in found(files, public["content 1"]))
