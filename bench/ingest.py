#!/usr/bin/env python3
"""Ingest benchmark: `amanah add` beside `sha256sum` on the same files, in the same run.

Data (made by ../shared/bench/peers/gen_data.py, or here with the same generator if absent):
20 x 50 MiB random files ("media") and 10,000 x 4 KiB files ("docs"); and one 2 GiB file for
peak memory. Each figure is the median of --runs runs, each into a fresh node home, timing the
whole CLI process (start-up and passphrase unlock included), so it is what a user waits for.

    python bench/ingest.py [--data DIR] [--runs 3] [--tier closed] [--skip-2g]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GEN = HERE.parent.parent / "shared" / "bench" / "peers" / "gen_data.py"


def amanah() -> list[str]:
    exe = shutil.which("amanah", path=str(Path(sys.executable).parent)) or shutil.which("amanah")
    return [exe] if exe else [sys.executable, "-m", "amanah.cli.main"]


def ensure_data(data: Path) -> None:
    if (data / "manifest-media.sha256").exists() and (data / "manifest-docs.sha256").exists():
        return
    if GEN.exists():
        subprocess.run([sys.executable, str(GEN), str(data)], check=True)
        return
    # Same construction as the shared generator, for a checkout without ../shared.
    import random

    for i in range(20):
        p = data / "media" / f"media_{i:02d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(random.Random(f"peerbench-v1:media_{i:02d}.bin").randbytes(50 << 20))
    for i in range(10_000):
        rel = f"d{i // 100:03d}/f{i:05d}.bin"
        p = data / "docs" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(random.Random(f"peerbench-v1:{rel}").randbytes(4096))


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    elapsed = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, peak if peak > before else -1


def rss_of(cmd: list[str], env: dict) -> int:
    """Peak RSS (KiB) of a command, measured alone with /usr/bin/time semantics via wait4."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{cmd} failed")
    return usage.ru_maxrss


def warm(paths: list[Path]) -> None:
    subprocess.run(["cat", *map(str, paths)], stdout=subprocess.DEVNULL, check=True)


def node_env(home: Path) -> dict:
    env = dict(os.environ, AMANAH_HOME=str(home), AMANAH_PASSPHRASE="bench-passphrase")
    return env


def fresh_node(root: Path, tier: str, name: str) -> dict:
    home = Path(tempfile.mkdtemp(dir=root, prefix="node-"))
    shutil.rmtree(home)
    env = node_env(home)
    subprocess.run(
        [*amanah(), "init", "--name", "bench"], env=env, check=True, stdout=subprocess.DEVNULL
    )
    subprocess.run(
        [*amanah(), "collection", "create", name, "--tier", tier],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "amanah-bench-data")
    ap.add_argument("--scratch", type=Path, default=None, help="where node homes go (same disk)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tier", default="closed", choices=["public", "trusted", "closed"])
    ap.add_argument("--skip-2g", action="store_true", help="skip the 2 GiB peak-memory run")
    args = ap.parse_args()

    ensure_data(args.data)
    media = sorted((args.data / "media").glob("*.bin"))
    docs = args.data / "docs"
    scratch = Path(tempfile.mkdtemp(prefix="amanah-bench-", dir=args.scratch))
    results: dict = {"tier": args.tier, "runs": args.runs}
    try:
        mb = sum(p.stat().st_size for p in media) / 1e6
        warm(media)
        sha, ours = [], []
        for _ in range(args.runs):
            sha.append(timed(["sha256sum", *map(str, media)])[0])
            env = fresh_node(scratch, args.tier, "media")
            ours.append(timed([*amanah(), "add", "media", *map(str, media)], env)[0])
            shutil.rmtree(env["AMANAH_HOME"])
        s, o = statistics.median(sha), statistics.median(ours)
        results["media"] = {
            "MB": round(mb, 1),
            "sha256sum_MBps": round(mb / s, 1),
            "amanah_MBps": round(mb / o, 1),
            "ratio": round(s / o, 2),
        }
        print(
            f"media 20x50MiB  sha256sum {mb / s:7.1f} MB/s   "
            f"amanah add ({args.tier}) {mb / o:7.1f} MB/s   ratio {s / o:.2f}"
        )

        n_docs = sum(1 for _ in docs.rglob("*.bin"))
        times = []
        for _ in range(args.runs):
            env = fresh_node(scratch, args.tier, "docs")
            times.append(timed([*amanah(), "add", "docs", str(docs)], env)[0])
            shutil.rmtree(env["AMANAH_HOME"])
        sha_docs = statistics.median(
            timed(["sh", "-c", f"find {docs} -type f -print0 | xargs -0 sha256sum"])[0]
            for _ in range(args.runs)
        )
        t = statistics.median(times)
        results["docs"] = {
            "files": n_docs,
            "seconds": round(t, 2),
            "items_per_s": round(n_docs / t),
            "sha256sum_files_per_s": round(n_docs / sha_docs),
        }
        print(
            f"docs {n_docs}x4KiB   amanah add {n_docs / t:7.0f} items/s ({t:.2f} s)   "
            f"sha256sum {n_docs / sha_docs:7.0f} files/s"
        )

        if not args.skip_2g:
            big = scratch / "big-2GiB.bin"
            with open(big, "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(2048):
                    f.write(block)
            env = fresh_node(scratch, args.tier, "big")
            t = time.perf_counter()
            peak_kib = rss_of([*amanah(), "add", "big", str(big)], env)
            elapsed = time.perf_counter() - t
            results["big"] = {
                "GiB": 2,
                "peak_rss_MB": round(peak_kib / 1024, 1),
                "seconds": round(elapsed, 2),
            }
            print(
                f"one 2 GiB file   peak RSS {peak_kib / 1024:.1f} MiB   "
                f"({2048 / elapsed:.0f} MiB/s)"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
