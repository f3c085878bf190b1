"""A large download from a mirror keeps the daemon's memory flat and every byte right.

The mirror's daemon is restarted after the sync so the baseline is its own steady state, then a
256 MiB original is downloaded (whole, then a range near its end) while the daemon's memory is
sampled (anonymous memory and the store's mapped pages): it must not grow with the file (blocks
are streamed one at a time, verified, and the store's mapped pages are released as it goes).
"""

from __future__ import annotations

import hashlib
import http.client
import re
import threading
import time

import pytest

from .nodeutil import distinct_chunks
from .test_e2e_replication import Daemon
from .webutil import MiB, World, make_nodes

pytestmark = pytest.mark.timeout(300)

SIZE_MIB = 256
# Measured: +30-40 MiB at the peak, whatever the size (256 MiB or 400 MB): a few blocks in
# flight, and the store pages mapped between two Store.release_map calls (on this kernel a
# read maps whole page-cache folios, far more than the bytes read).
MAX_GROWTH = 64 * MiB


def memory(pid: int) -> int:
    """What a download can make grow: the daemon's anonymous memory and its resident pages of
    the store's map. (Library code pages are left out: the daemon's network side faults some
    in on its own schedule, whatever the web does.)"""
    with open(f"/proc/{pid}/status") as f:
        anon = int(re.search(r"RssAnon:\s+(\d+)", f.read()).group(1))
    mapped = 0
    in_store = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                in_store = line.rstrip().endswith("/store/data.mdb")
            elif in_store and line.startswith("Rss:"):
                mapped += int(line.split()[1])
    return (anon + mapped) * 1024


def test_large_download_streams_in_constant_memory(tmp_path):
    owner, mirror, oid, mid, _, mirror_port = make_nodes(tmp_path)
    owner.ok("collection", "create", "Large", "--tier", "public")
    big = owner.cwd / "large.bin"
    digest = distinct_chunks(big, SIZE_MIB, extra=12_345)
    item = owner.ok("add", "Large", str(big), "--json").json()[0]["id"]
    owner.ok("publish", "Large", mid)
    daemon = Daemon(mirror, mirror_port)
    world = World(owner, mirror, daemon, oid, mid)
    try:
        world.sync(expect_items=1, timeout=120)
    finally:
        daemon.stop()
    daemon = Daemon(mirror, mirror_port)  # a fresh process: the baseline is its steady state
    world.daemon = daemon
    try:
        world.wait_for(lambda: world.served_items() == 1)
        pid = daemon.proc.pid
        world.get(f"/api/v1/items/{item}")  # warm the item's details
        baseline = memory(pid)
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, memory(pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            host, port = world.http.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("GET", f"/api/v1/items/{item}/content")
            r = conn.getresponse()
            assert r.status == 200
            h = hashlib.sha256()
            n = 0
            while chunk := r.read(4 * MiB):
                h.update(chunk)
                n += len(chunk)
                time.sleep(0.001)  # a client a little slower than the server
            conn.close()
        finally:
            done.set()
            sampler.join()
        assert n == SIZE_MIB * MiB + 12_345 and h.hexdigest() == digest
        print(f"memory: baseline {baseline >> 20} MiB, peak {peak >> 20} MiB")
        assert peak - baseline < MAX_GROWTH, (baseline >> 20, peak >> 20)
        tail = world.get(f"/api/v1/items/{item}/content", {"Range": "bytes=-1000"})
        assert tail.status == 206 and tail.body == big.read_bytes()[-1000:]
    finally:
        daemon.stop()
