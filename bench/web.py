#!/usr/bin/env python3
"""Mirror web benchmark: item JSON under wrk, and a download beside nginx serving the same file.

Sets up an owner and a mirror in a temporary folder (real `amanah` processes), publishes one
collection with a small item and a --size-mib original, starts the mirror's daemon and syncs.
Then, in the same run:

- item JSON: `wrk -t2 -c64 --latency` on /api/v1/items/ID (targets: >= 3,000 req/s, p99 < 50 ms);
- download: `wrk -t1` with 1, 4 and 64 connections on /api/v1/items/ID/content, and the same
  on nginx (sendfile on) serving the same bytes from a plain file (target: >= 0.5x nginx).

Needs wrk and nginx on PATH (apt-get install wrk nginx-light); what is missing is skipped.
The machine should be otherwise idle: both sides compete with wrk for the same cores.

    python bench/web.py [--size-mib 50] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PASSPHRASE = "bench passphrase"
# Connections of the download figure: one client, a few, and the 64 of the JSON figure.
DOWNLOAD_CONNS = (1, 4, 64)


def amanah() -> list[str]:
    exe = shutil.which("amanah", path=str(Path(sys.executable).parent)) or shutil.which("amanah")
    return [exe] if exe else [sys.executable, "-m", "amanah.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(home: Path, *args: str) -> str:
    env = {**os.environ, "AMANAH_HOME": str(home), "AMANAH_PASSPHRASE": PASSPHRASE}
    return subprocess.run(
        amanah() + list(args), env=env, check=True, capture_output=True, text=True
    ).stdout


def wrk(url: str, threads: int, conns: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[transfer.group(2)]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(p99.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    return {"rps": rps, "mb_s": float(transfer.group(1)) * scale / 1e6, "p99_ms": p99_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=50)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="amanah-web-bench-"))
    os.chmod(root, 0o755)  # nginx workers run as another user
    owner, mirror = root / "owner", root / "mirror"
    daemon = nginx = None
    results: dict = {}
    try:
        run(owner, "init", "--name", "Owner")
        run(mirror, "init", "--name", "Mirror", "--role", "mirror")
        oid = json.loads(run(owner, "id", "--json"))["peer_id"]
        mid = json.loads(run(mirror, "id", "--json"))["peer_id"]
        p2p = free_port()
        run(owner, "peer", "add", mid, "--addr", f"/ip4/127.0.0.1/tcp/{p2p}", "--role", "mirror")
        run(mirror, "peer", "add", oid, "--addr", f"/ip4/127.0.0.1/tcp/{free_port()}")
        run(owner, "collection", "create", "Bench", "--tier", "public")
        www = root / "www"
        www.mkdir(mode=0o755)
        big = www / "big.bin"
        big.write_bytes(os.urandom(args.size_mib << 20))
        big.chmod(0o644)
        small = root / "note.txt"
        small.write_text("a small item\n")
        meta = ["--title", "Bench item", "--title-ar", "مادة للقياس", "--tag", "bench", "--json"]
        item = json.loads(run(owner, "add", "Bench", str(small), *meta))[0]["id"]
        large = json.loads(run(owner, "add", "Bench", str(big), "--json"))[0]["id"]
        run(owner, "publish", "Bench", mid)
        env = {**os.environ, "AMANAH_HOME": str(mirror), "AMANAH_PASSPHRASE": PASSPHRASE}
        daemon = subprocess.Popen(
            amanah()
            + ["run", "--listen", f"/ip4/127.0.0.1/tcp/{p2p}", "--http", "127.0.0.1:0"]
            + ["--no-mdns"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        http = json.loads(daemon.stdout.readline())["http"]
        run(owner, "sync", "--wait", "--timeout", "300")
        base = f"http://{http}"
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(base + "/api/v1/collections") as r:
                if sum(c["items"] for c in json.load(r)["collections"]) == 2:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the mirror did not show the items")
            time.sleep(0.2)
        if not shutil.which("wrk"):
            raise SystemExit("wrk is not installed (apt-get install wrk)")
        results["item_json"] = wrk(f"{base}/api/v1/items/{item}", 2, 64, args.duration)
        content = f"{base}/api/v1/items/{large}/content"
        for conns in DOWNLOAD_CONNS:
            results[f"download_c{conns}"] = wrk(content, 1, conns, args.duration)
        if shutil.which("nginx"):
            port = free_port()
            conf = root / "nginx.conf"
            conf.write_text(
                "worker_processes 1; daemon off; pid nginx.pid; error_log stderr;\n"
                "events { worker_connections 1024; }\n"
                "http { access_log off; sendfile on;\n"
                f"  server {{ listen 127.0.0.1:{port}; root {www}; }} }}\n"
            )
            nginx = subprocess.Popen(
                ["nginx", "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL
            )
            time.sleep(0.5)
            for conns in DOWNLOAD_CONNS:
                ref = wrk(f"http://127.0.0.1:{port}/big.bin", 1, conns, args.duration)
                results[f"nginx_c{conns}"] = ref
                results[f"ratio_c{conns}"] = results[f"download_c{conns}"]["mb_s"] / ref["mb_s"]
    finally:
        for proc in (daemon, nginx):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM if proc is daemon else signal.SIGQUIT)
                proc.wait(timeout=15)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    j = results["item_json"]
    print(f"item JSON (wrk -t2 -c64): {j['rps']:,.0f} req/s, p99 {j['p99_ms']:.1f} ms")
    for conns in DOWNLOAD_CONNS:
        ours = results[f"download_c{conns}"]["mb_s"]
        line = f"download {args.size_mib} MiB, {conns} connection(s): amanah {ours:,.0f} MB/s"
        if f"nginx_c{conns}" in results:
            ref = results[f"nginx_c{conns}"]["mb_s"]
            line += f", nginx {ref:,.0f} MB/s, ratio {results[f'ratio_c{conns}']:.2f}"
        print(line)


if __name__ == "__main__":
    main()
