#!/usr/bin/env python3
"""Replication benchmark: node A -> node B on 127.0.0.1, beside rsync over ssh in the same run.

Data (made by ../shared/bench/peers/gen_data.py if --data lacks it): "media" = 20 x 50 MiB random
files, "docs" = 10,000 x 4 KiB files (--quick: 4 media files, 2,000 docs, a 10,000-item resync).
Every node is a real `amanah run` daemon (closed collections, passphrase-protected identities);
rsync runs over a private sshd on 127.0.0.1 with throwaway keys (never /etc/ssh or ~/.ssh).

Figures (targets of the issue in brackets):

1. media: MB/s (10^6 B/s of original bytes) of A -> B replication of a closed collection: both
   daemons running and connected, `amanah share COL B` on A; the clock starts when A's store
   holds the grant (A's LMDB polled read-only from this process, so the CLI's own start-up and
   exit are not counted; its wall time is reported apart), B is poked (POST /api/v1/sync; A's
   daemon also sends B a head notice) and the clock stops when B's store marks the collection
   complete at A's log length (B's LMDB polled every 2 ms). Beside it, `rsync -a` over ssh of
   the same files into an empty folder [>= 0.8x rsync-ssh]. Each timed receiver starts just
   after ~1 GB of page cache was freed, because this VM charges ~0.9 s/GB for writing into
   memory freed longer ago (`settle`). Also reported: A's `amanah add`
   (ingest, not in the figure), CPU seconds of both daemons and of both rsync ends, B's progress
   (when its log, records and first/last blocks were stored), the time `amanah sync --wait` on A
   then takes to see B complete, and `amanah verify` on B.
2. docs: seconds for the same with the 10,000 small files [no more than rsync-ssh].
3. resync, nothing changed, on a 100,000-item collection (tiny files of 24-88 B, one `amanah add`
   of a folder, timed): in process, a `replicate.Puller` over a real `Network` pair (TCP + Noise
   + yamux on 127.0.0.1), as the daemon's `P2P.sync_once` does it: open a stream on the live
   connection, `Puller.run`, close. Wall time of that, and bytes on the wire two ways: the
   frames (payload + 4-byte header) through the puller's stream, and the TCP payload bytes of
   the connection from the kernel's TCP_INFO (bytes_acked + bytes_received, so Noise and yamux
   framing, stream open/close and window updates are included) [< 50 ms and < 4 KB].
4. latency: with both daemons running and connected, `amanah add` of a new 10 KB file on A;
   time from `add` returning until B's store holds the item's record and marks the collection
   complete at A's new length [< 300 ms]. Measured on the media collection (20 items) and on
   the docs collection (10,000 items): per-item costs that grow with the collection show here.

    python bench/replicate.py [--data DIR] [--quick] [--runs 1] [--only media,docs,resync,latency]
                              [--resync-items N] [--py-spy DIR] [--timeout 600]

The last line printed is `RESULT {json}` with every figure, the ratios and the machine load.
Every daemon and temporary folder started here is removed at the end (also on Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
GEN = HERE.parent.parent / "shared" / "bench" / "peers" / "gen_data.py"
PASSPHRASE = "bench-passphrase"
TIMEOUT = 600.0  # seconds per step (--timeout)
POLL = 0.002  # seconds between looks at B's store

TARGETS = {
    "media_vs_rsync_ssh": ">= 0.8x",
    "docs_vs_rsync_ssh": "<= 1.0x time",
    "resync_wall_ms": "< 50",
    "resync_wire_bytes": "< 4000",
    "latency_ms": "< 300",
}


def log(*a: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system, all threads) of a live process; with children=True those
    of the children it has reaped instead."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    i = 13 if children else 11  # utime, stime = fields 14, 15; cutime, cstime = 16, 17
    return (int(fields[i]) + int(fields[i + 1])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    t = os.times()
    return t.children_user + t.children_system


def amanah_exe() -> str:
    exe = shutil.which("amanah", path=str(Path(sys.executable).parent)) or shutil.which("amanah")
    if not exe:
        raise SystemExit("the amanah console script is not installed (./run.sh setup)")
    return exe


# -- processes: every one in its own process group, killed as a group ------------------------


class Procs:
    """Every long-running process started here, stopped (by process group) at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def add(self, p: subprocess.Popen) -> None:
        self.procs.append(p)

    def stop(self, p: subprocess.Popen, grace: float = 15) -> int | None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        else:  # the leader is gone; take any stragglers of its group with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def stop_all(self) -> None:
        for p in list(reversed(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(p)


PROCS = Procs()


def run(
    cmd: list[str],
    timeout: float | None = None,
    env: dict | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> tuple[float, subprocess.CompletedProcess]:
    """Run a command to completion in its own process group, killing the group at the timeout.
    Returns (seconds, completed process with text stdout/stderr)."""
    timeout = timeout or TIMEOUT
    t = time.perf_counter()
    p = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise SystemExit(f"timed out after {timeout:g} s: {' '.join(cmd)}") from None
    elapsed = time.perf_counter() - t
    done = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check and p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    return elapsed, done


def wait_for(pred: Callable[[], object], timeout: float, what: str, interval: float = POLL):
    deadline = time.perf_counter() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- data ------------------------------------------------------------------------------------


def ensure_data(data: Path) -> None:
    if (data / "manifest-media.sha256").exists() and (data / "manifest-docs.sha256").exists():
        return
    if not GEN.exists():
        raise SystemExit(f"no data in {data} and no generator at {GEN}")
    log(f"generating the data set in {data} ...")
    run([sys.executable, str(GEN), str(data)], timeout=TIMEOUT)


def manifest(data: Path, name: str) -> list[str]:
    with open(data / f"manifest-{name}.sha256") as f:
        return [line.rstrip("\n").split("  ", 1)[1] for line in f if line.strip()]


def subset(data: Path, name: str, count: int | None, scratch: Path) -> tuple[Path, int, int]:
    """The folder holding the first `count` files of a data set (hard links into scratch when a
    subset is asked for; symbolic links would not be followed by `amanah add`).
    Returns (folder, files, bytes)."""
    src = data / name
    rels = manifest(data, name)
    if count is None or count >= len(rels):
        return src, len(rels), sum((src / r).stat().st_size for r in rels)
    dst = scratch / "data" / name
    rels = rels[:count]
    for r in rels:
        (dst / r).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / r, dst / r)
        except OSError:
            shutil.copy2(src / r, dst / r)
    return dst, len(rels), sum((dst / r).stat().st_size for r in rels)


def tiny_files(root: Path, n: int) -> int:
    """n small distinct files (24..88 random bytes) in folders of 1,000. Returns total bytes."""
    rng = random.Random(f"amanah-resync:{n}")
    total = 0
    for i in range(n):
        d = root / f"t{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        data = i.to_bytes(8, "big") + rng.randbytes(16 + rng.randrange(64))
        (d / f"n{i:06d}.bin").write_bytes(data)
        total += len(data)
    return total


# -- a node: its home, its CLI, its daemon, a read-only view of its store ---------------------


class NodeHome:
    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.home = root / f"home-{name}"
        self.cwd = root / f"work-{name}"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.exe = amanah_exe()
        self.port = free_port()
        self.daemon: subprocess.Popen | None = None
        self.info: dict = {}
        self.view: StoreView | None = None
        run(self.cmd("init", "--name", f"bench {name}"), env=self.env())
        self.peer_id = self.json("id", "--json")["peer_id"]

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMANAH_")}
        env.update(AMANAH_HOME=str(self.home), AMANAH_PASSPHRASE=PASSPHRASE)
        return env

    def cmd(self, *args: str) -> list[str]:
        return [self.exe, *map(str, args)]

    def cli(self, *args: str, timeout: float | None = None) -> tuple[float, str]:
        dt, p = run(self.cmd(*args), timeout=timeout, env=self.env(), cwd=self.cwd)
        return dt, p.stdout

    def popen(self, *args: str) -> subprocess.Popen:
        """Start a CLI command without waiting (see finish)."""
        p = subprocess.Popen(
            self.cmd(*args),
            env=self.env(),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        PROCS.add(p)
        return p

    def finish(self, p: subprocess.Popen, timeout: float = 120) -> float:
        """Wait for a command from popen (its output is small); the time it ended."""
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            PROCS.stop(p)
            raise SystemExit(f"timed out after {timeout:g} s: {' '.join(p.args)}") from None
        end = time.perf_counter()
        PROCS.stop(p)
        if p.returncode != 0:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(p.args)}\n{err[-2000:]}")
        p.stdout_text = out  # type: ignore[attr-defined]
        return end

    def json(self, *args: str, timeout: float | None = None) -> object:
        return json.loads(self.cli(*args, timeout=timeout)[1])

    def addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"

    def trust(self, other: NodeHome) -> None:
        self.cli("peer", "add", other.peer_id, "--addr", other.addr(), "--name", other.name)

    def start(self, timeout: float = 60) -> None:
        logf = open(self.home.parent / f"daemon-{self.name}.log", "ab")  # noqa: SIM115
        self.daemon = subprocess.Popen(
            self.cmd("run", "--listen", self.addr(), "--http", "127.0.0.1:0", "--no-mdns"),
            env=self.env(),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=logf,
            text=True,
            start_new_session=True,
        )
        logf.close()
        PROCS.add(self.daemon)
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.daemon.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        line = self.daemon.stdout.readline() if ready else ""
        if not line:
            PROCS.stop(self.daemon)
            tail = (self.home.parent / f"daemon-{self.name}.log").read_text()[-2000:]
            raise SystemExit(f"daemon {self.name} did not start within {timeout:g} s:\n{tail}")
        self.info = json.loads(line)
        assert self.info["ready"], line
        self.token = (self.home / "http.token").read_text().strip()

    def stop(self) -> None:
        if self.daemon is not None:
            rc = PROCS.stop(self.daemon)
            if rc not in (0, None):
                log(f"daemon {self.name} exited with {rc}")
            self.daemon = None

    def api(self, method: str, path: str) -> dict:
        req = urllib.request.Request(f"http://{self.info['http']}/api/v1{path}", method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def store(self) -> StoreView:
        if self.view is None:
            self.view = StoreView(self.home)
        return self.view

    def close(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None


class StoreView:
    """A home's LMDB opened read-only in this process (another process writes it)."""

    def __init__(self, home: Path) -> None:
        import lmdb
        from amanah.node import config as config_mod
        from amanah.node.store import DATABASES

        self.env = lmdb.open(
            str(home / "store"),
            map_size=config_mod.load(home / "config.toml").map_size,
            max_dbs=len(DATABASES) + 4,
            max_readers=512,
            readonly=True,
            create=False,
            readahead=False,
        )
        self.db = {n.decode(): self.env.open_db(n, create=False) for n in DATABASES}

    def close(self) -> None:
        self.env.close()

    def length(self, col: bytes) -> int:
        from amanah.protocol.log import CollectionState

        with self.env.begin() as txn:
            raw = txn.get(col, db=self.db["cols"])
            return CollectionState.from_cbor(raw).length if raw is not None else 0

    def complete_at(self, col: bytes) -> int:
        with self.env.begin() as txn:
            raw = txn.get(col, db=self.db["complete"])
            return int.from_bytes(raw, "big") if raw is not None else 0

    def counts(self) -> dict[str, int]:
        with self.env.begin() as txn:
            return {k: txn.stat(self.db[k])["entries"] for k in ("records", "blocks")}

    def has_record(self, item: bytes) -> bool:
        with self.env.begin() as txn:
            return txn.get(item, db=self.db["records"]) is not None


def raw_id(text: str) -> bytes:
    from amanah.protocol import ids

    return ids.from_text(text, text[:3])


def id_text(kind: str, raw: bytes) -> str:
    from amanah.protocol import ids

    return ids.to_text(kind, raw)


# -- py-spy (optional) -----------------------------------------------------------------------


class Spy:
    """`py-spy record` on the daemons during a measured phase, if --py-spy DIR was given."""

    def __init__(self, outdir: Path | None) -> None:
        self.outdir = outdir
        self.exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        self.running: list[subprocess.Popen] = []
        if outdir and not self.exe:
            log("--py-spy given but py-spy is not installed (pip install py-spy): not profiling")

    def start(self, label: str, nodes: list[NodeHome]) -> None:
        if not (self.outdir and self.exe):
            return
        self.outdir.mkdir(parents=True, exist_ok=True)
        for n in nodes:
            out = self.outdir / f"{label}-{n.name}.txt"
            p = subprocess.Popen(
                [
                    self.exe,
                    "record",
                    "--pid",
                    str(n.daemon.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--threads",
                    *(["--native"] if os.environ.get("PYSPY_NATIVE") else ["--nonblocking"]),
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            PROCS.add(p)
            self.running.append(p)
        time.sleep(0.5)  # let py-spy attach before the clock starts

    def stop(self) -> None:
        for p in self.running:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            PROCS.stop(p)
        self.running = []


# -- rsync over ssh --------------------------------------------------------------------------


class Sshd:
    """A private sshd on 127.0.0.1 with throwaway host/client keys (as shared/bench/peers/
    sshd_helper.py does); never touches /etc/ssh or ~/.ssh."""

    def __init__(self, d: Path) -> None:
        for tool in ("sshd", "ssh", "ssh-keygen", "rsync"):
            if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin"):
                raise SystemExit(
                    f"{tool} is missing: apt-get update && apt-get install -y openssh-server rsync"
                )
        self.dir = d
        d.mkdir(parents=True)
        os.makedirs("/run/sshd", exist_ok=True)  # privilege-separation dir sshd insists on
        self.port = free_port()
        self.user = getpass.getuser()
        for k in ("host_key", "client_key"):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / k)], timeout=30)
        (d / "client_key.pub").rename(d / "authorized_keys")
        (d / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {d}/host_key\n"
            f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n"
            "X11Forwarding no\nAllowTcpForwarding no\nPrintMotd no\n"
        )
        sshd = shutil.which("sshd", path="/usr/sbin:/usr/bin") or "/usr/sbin/sshd"
        logf = open(d / "sshd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(d / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            start_new_session=True,
        )
        logf.close()
        PROCS.add(self.proc)
        wait_for(
            lambda: (
                run(
                    [*self.rsh().split(), f"{self.user}@127.0.0.1", "true"], timeout=10, check=False
                )[1].returncode
                == 0
            ),
            20,
            "sshd",
            interval=0.2,
        )

    def rsh(self) -> str:
        return (
            f"ssh -p {self.port} -i {self.dir}/client_key -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
        )

    def rsync(self, src: Path, dst: Path) -> tuple[float, float, float]:
        """`rsync -a --delete` of src/ into dst/ over ssh: (seconds, CPU seconds of the client
        side (rsync + ssh), CPU seconds of the server side (sshd session + rsync))."""
        client, server = children_cpu_s(), cpu_s(self.proc.pid, children=True)
        dt, _ = run(
            [
                "rsync",
                "-a",
                "--delete",
                "-e",
                self.rsh(),
                f"{src}/",
                f"{self.user}@127.0.0.1:{dst}/",
            ],
        )
        time.sleep(0.3)  # let sshd reap its session (its CPU then counts in sshd's cutime)
        return (
            dt,
            children_cpu_s() - client,
            cpu_s(self.proc.pid, children=True) - server,
        )

    def stop(self) -> None:
        PROCS.stop(self.proc)


def settle() -> None:
    """Write back every dirty page before a timed step, so neither side pays for the previous
    step's writes (A's ingest of 1 GB, rsync's copy): here the disk takes ~350-450 MB/s once
    the kernel throttles writers, and a step started with a backlog was measured 30% slower.

    Fresh memory is the other shared condition. This machine is a VM whose balloon device
    reports free memory to its host (virtio-balloon free page reporting): memory freed more
    than ~2 s ago goes back to the host, and writing into it again costs a host fault per page,
    ~0.9 s of kernel time per GB written into the page cache (a 1 GB file written just after
    another was deleted: ~0.3 s of system time; 10 s after: ~1.1 s). So both timed receivers
    start just after ~1 GB of page cache is freed: rsync after the previous run's folders are
    deleted, B after rsync's copy is. (When rsync's copy was deleted before A's ingest, the
    ingest took that memory, B wrote into returned memory at ~0.6-0.9 core-s/GB more than
    rsync's receiver, and the media ratio read 0.71-0.85 where it now reads 0.84-1.18.)

    A third condition is not levelled: ext4 skips inodes freed in the last few seconds (minutes,
    while their inode table is dirty) when it creates files, so rsync's copy of the 10,000 docs
    takes 2-4 s after many deletions and 1.0-1.2 s without (its CPU shows which). Our receiver
    writes one LMDB file and does not pay it; read the docs ratio against both of rsync's modes."""
    os.sync()
    time.sleep(0.5)


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


# -- figures 1, 2 and 4 ----------------------------------------------------------------------


def replicate_pair(
    root: Path,
    label: str,
    src: Path,
    nbytes: int,
    nfiles: int,
    spy: Spy,
    latency_n: int,
    rsync_copy: Path,
) -> dict:
    """A fresh A (ingest of src, timed) and B, both daemons; A shares the collection with B;
    time until B holds it all. Then the latency of a new item, both daemons still running.

    `rsync_copy` (rsync's copy of the same run) is deleted just before the clock starts, as the
    previous run's folders were just before rsync's clock: see `settle`."""
    a, b = NodeHome(root, f"{label}-a"), NodeHome(root, f"{label}-b")
    out: dict = {"files": nfiles, "bytes": nbytes}
    try:
        col_text = a.json("collection", "create", label, "--tier", "closed", "--json")["id"]
        col = raw_id(col_text)
        dt, _ = a.cli("add", label, str(src))
        out["ingest_s"] = round(dt, 3)
        out["ingest_mb_s"] = round(nbytes / 1e6 / dt, 1)
        log(f"{label}: A ingested {nfiles} files ({nbytes / 1e6:.1f} MB) in {dt:.2f} s")
        a.trust(b)
        b.trust(a)
        a.start()
        b.start()
        # Let B's pull loop for A run its first (empty) round, so the clock measures transfer.
        wait_for(lambda: a.peer_id in b.api("GET", "/status")["peers"], 30, "B's first round")
        shutil.rmtree(rsync_copy, ignore_errors=True)
        settle()
        spy.start(label, [a, b])
        aview, bview = a.store(), b.store()
        before = aview.length(col)
        t_share = time.perf_counter()
        share = a.popen("share", label, b.name)
        # The clock starts when A's store holds the grant (polled), not when the CLI has exited.
        t0 = wait_for(lambda: aview.length(col) > before and time.perf_counter(), 60, "the grant")
        cpu_a0, cpu_b0 = cpu_s(a.daemon.pid), cpu_s(b.daemon.pid)
        b.api("POST", "/sync")  # poke B (A's daemon also sends B a head notice on its own)
        target = aview.length(col)
        share_end: list[float] = []
        # B's progress, seen in its store: log stored, records stored, blocks (fragments).
        marks: dict[str, float] = {}
        last_blocks = [0, t0]

        def b_holds_all() -> bool:
            now = time.perf_counter()
            if not share_end and share.poll() is not None:
                share_end.append(now)
            if "log" not in marks and bview.length(col) >= target:
                marks["log"] = now
            if "log" in marks:
                counts = bview.counts()
                if "records" not in marks and counts["records"] >= nfiles:
                    marks["records"] = now
                if counts["blocks"] != last_blocks[0]:
                    if not last_blocks[0]:
                        marks["first_block"] = now
                    last_blocks[:] = [counts["blocks"], now]
            return bview.complete_at(col) >= target

        wait_for(b_holds_all, TIMEOUT, f"B to hold {label}")
        t1 = time.perf_counter()
        cpu_a, cpu_b = cpu_s(a.daemon.pid) - cpu_a0, cpu_s(b.daemon.pid) - cpu_b0
        marks["last_block"] = last_blocks[1]
        out["phases_s"] = {  # seconds from A's commit of the grant
            k: round(v - t0, 3) for k, v in sorted(marks.items(), key=lambda kv: kv[1])
        }
        out["cpu_a_s"], out["cpu_b_s"] = round(cpu_a, 2), round(cpu_b, 2)
        end = a.finish(share)
        share_s = (share_end[0] if share_end else end) - t_share
        spy.stop()
        secs = t1 - t0
        out.update(
            seconds=round(secs, 3),
            mb_s=round(nbytes / 1e6 / secs, 1),
            share_cli_s=round(share_s, 3),
            seconds_from_share_start=round(t1 - t_share, 3),
            load1=load(),
        )
        log(
            f"{label}: B holds all {secs:.3f} s after A stored the grant "
            f"({nbytes / 1e6 / secs:.1f} MB/s); `share` CLI took {share_s:.2f} s"
        )
        # A learns B's state from B's "have": `amanah sync --wait` on A then returns.
        dt, _ = a.cli("sync", "--peer", b.name, "--wait", "--timeout", str(int(TIMEOUT)))
        out["a_sync_wait_after_s"] = round(dt, 3)
        st = b.api("GET", "/status")
        mine = [c for c in st["collections"] if c["id"] == col_text]
        out["b_status_complete"] = bool(mine and mine[0]["complete"])
        if latency_n:
            spy.start(f"latency-{label}", [a, b])
            out["latency"] = latency(a, b, col, latency_n)
            spy.stop()
        # B holds ciphertext only: it verifies every block, signature and the chain.
        dt, p = run(b.cmd("verify", "--json"), env=b.env(), check=False)
        rep = json.loads(p.stdout or "{}")
        out["b_verify_ok"] = p.returncode == 0
        out["b_verify_s"] = round(dt, 2)
        out["b_verify_checked"] = rep.get("checked")
        if p.returncode != 0:
            log(f"{label}: verify on B FAILED: {p.stdout[-1000:]} {p.stderr[-1000:]}")
    finally:
        spy.stop()
        for n in (a, b):
            n.close()
            n.stop()
    return out


def latency(a: NodeHome, b: NodeHome, col: bytes, n: int) -> dict:
    """`amanah add` of a new 10 KB file on A, n times, both daemons running: when A's store
    holds the new entry, when `add` returns, when B's store marks the collection complete at
    the new length (then B must hold the item's record)."""
    bview, aview = b.store(), a.store()
    after_return, after_commit, add_s = [], [], []
    for i in range(n):
        f = a.cwd / f"new-{i}.bin"
        f.write_bytes(os.urandom(10_000))
        before = aview.length(col)
        t = time.perf_counter()
        p = a.popen("add", id_text("col", col), str(f), "--json")
        t_commit = t_ret = t_done = None
        deadline = t + 60
        while t_ret is None or t_done is None:
            now = time.perf_counter()
            if t_commit is None and aview.length(col) > before:
                t_commit = now
            if t_done is None and bview.complete_at(col) > before:
                t_done = now
            if t_ret is None and p.poll() is not None:
                t_ret = now
            if now > deadline:
                raise SystemExit("timed out after 60 s waiting for a new item to reach B")
            time.sleep(POLL)
        a.finish(p)
        item = raw_id(json.loads(p.stdout_text)[0]["id"])
        if not bview.has_record(item):
            raise SystemExit("B marked the collection complete without the new item's record")
        add_s.append(t_ret - t)
        after_return.append(t_done - t_ret)
        after_commit.append(t_done - (t_commit or t_done))
        time.sleep(0.3)
    ms = [round(x * 1000, 1) for x in after_return]
    return {
        "ms_after_add_returns": ms,
        "median_ms": round(statistics.median(ms), 1),
        "ms_after_a_commit": [round(x * 1000, 1) for x in after_commit],
        "median_ms_after_a_commit": round(statistics.median(after_commit) * 1000, 1),
        "add_cli_median_s": round(statistics.median(add_s), 3),
    }


# -- figure 3: a resync with nothing new, in process ------------------------------------------


def tcp_counters(port: int) -> tuple[int, int, int, int]:
    """(bytes_acked, bytes_received, segs_out, segs_in) of this process's established TCP
    connection(s) to 127.0.0.1:port, from TCP_INFO."""
    import psutil

    tot = [0, 0, 0, 0]
    for c in psutil.Process().net_connections(kind="tcp"):
        if c.fd < 0 or not c.raddr or c.raddr.port != port or c.status != "ESTABLISHED":
            continue
        with socket.fromfd(c.fd, socket.AF_INET, socket.SOCK_STREAM) as s:
            info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        for i, v in enumerate(struct.unpack_from("<QQII", info, 120)):
            tot[i] += v
    return tot[0], tot[1], tot[2], tot[3]


class Counted:
    """The puller's stream, counting frames (payload + 4-byte header) each way."""

    def __init__(self, stream: object) -> None:
        self.stream = stream
        self.peer_id = stream.peer_id  # type: ignore[attr-defined]
        self.sent = self.received = self.frames_out = self.frames_in = 0

    async def send(self, payload: bytes) -> None:
        self.sent += len(payload) + 4
        self.frames_out += 1
        await self.stream.send(payload)  # type: ignore[attr-defined]

    async def recv(self, max_size: int) -> bytes:
        frame = await self.stream.recv(max_size)  # type: ignore[attr-defined]
        if frame:
            self.received += len(frame) + 4
            self.frames_in += 1
        return frame


def resync(root: Path, n_items: int, rounds: int) -> dict:
    a, b = NodeHome(root, "resync-a"), NodeHome(root, "resync-b")
    out: dict = {"items": n_items}
    folder = root / "tiny" / "tiny"
    t = time.perf_counter()
    nbytes = tiny_files(folder, n_items)
    log(f"resync: wrote {n_items} tiny files ({nbytes} B) in {time.perf_counter() - t:.1f} s")
    a.cli("collection", "create", "tiny", "--tier", "closed")
    dt, _ = a.cli("add", "tiny", str(folder))
    out["add_s"] = round(dt, 2)
    out["add_items_per_s"] = round(n_items / dt)
    log(f"resync: one `amanah add` of {n_items} files took {dt:.1f} s ({n_items / dt:.0f}/s)")
    shutil.rmtree(root / "tiny")
    a.trust(b)
    b.trust(a)
    a.cli("share", "tiny", b.name)
    import trio

    try:
        out.update(trio.run(_resync_inprocess, a.home, b.home, rounds))
    finally:
        a.close()
        b.close()
    return out


async def _resync_inprocess(home_a: Path, home_b: Path, rounds: int) -> dict:
    import trio
    from amanah.node import replicate, sync_server
    from amanah.node.home import Node
    from amanah.node.net import Network
    from amanah.protocol import ids
    from amanah.protocol import sync as msg

    out: dict = {}
    with Node(home_a, lambda: PASSPHRASE) as na, Node(home_b, lambda: PASSPHRASE) as nb:
        net_a = Network(na.identity.seed, ["/ip4/127.0.0.1/tcp/0"], {nb.peer_id}.__contains__)
        net_b = Network(nb.identity.seed, ["/ip4/127.0.0.1/tcp/0"], {na.peer_id}.__contains__)

        async def serve(stream: object) -> None:
            key = ids.public_key_from_peer_id(stream.peer_id)  # type: ignore[attr-defined]
            await sync_server.serve(na, stream, key)  # type: ignore[arg-type]

        net_a.handle(msg.SYNC_PROTOCOL, serve)
        async with trio.open_nursery() as nursery:
            addrs_a = await nursery.start(net_a.serve)
            await nursery.start(net_b.serve)
            port_a = int(addrs_a[0].split("/tcp/")[1].split("/")[0])

            async def one_round() -> tuple[float, float, Counted, replicate.PullResult]:
                t = time.perf_counter()
                stream = await net_b.open(na.peer_id, addrs_a, msg.SYNC_PROTOCOL)
                t_open = time.perf_counter()
                counted = Counted(stream)
                try:
                    with trio.fail_after(TIMEOUT):
                        result = await replicate.Puller(nb, counted).run()
                finally:
                    await stream.close()
                return t_open - t, time.perf_counter() - t, counted, result

            t = time.perf_counter()
            _, _, c, r = await one_round()
            out["initial_s"] = round(time.perf_counter() - t, 2)
            out["initial_entries"] = r.entries
            out["initial_records"] = r.records
            out["initial_blocks"] = r.blocks
            out["initial_frame_bytes"] = c.sent + c.received
            log(
                f"resync: initial replication in process: {out['initial_s']} s "
                f"({r.entries} entries, {r.records} records, {r.blocks} blocks)"
            )
            await trio.sleep(0.2)
            rows = []
            for _ in range(rounds):
                before = tcp_counters(port_a)
                t_open, wall, c, r = await one_round()
                await trio.sleep(0.1)  # let the close and its acks cross before counting
                after = tcp_counters(port_a)
                if r.entries or r.records or r.blocks:
                    raise SystemExit(f"a resync with nothing new pulled something: {r}")
                d = [x - y for x, y in zip(after, before, strict=True)]
                rows.append(
                    {
                        "wall_ms": round(wall * 1000, 2),
                        "open_ms": round(t_open * 1000, 2),
                        "frame_bytes": c.sent + c.received,
                        "frames": c.frames_out + c.frames_in,
                        "tcp_payload_bytes": d[0] + d[1],
                        "tcp_segments": d[2] + d[3],
                    }
                )
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    out["rounds"] = rows
    for k in ("wall_ms", "open_ms", "frame_bytes", "tcp_payload_bytes", "tcp_segments"):
        out[f"median_{k}"] = statistics.median(r[k] for r in rows)
    out["first_wall_ms"] = rows[0]["wall_ms"]
    return out


# -- orchestration ---------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def main() -> None:
    global TIMEOUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/bdata"), help="data set folder")
    ap.add_argument("--quick", action="store_true", help="4 media, 2,000 docs, 10,000-item resync")
    ap.add_argument("--runs", type=int, default=1, help="runs of figures 1-2 (median printed)")
    ap.add_argument("--only", default="media,docs,resync,latency", help="comma list of figures")
    ap.add_argument("--resync-items", type=int, help="items in the resync collection")
    ap.add_argument("--resync-rounds", type=int, default=7)
    ap.add_argument("--latency-n", type=int, default=5, help="new items timed per collection")
    ap.add_argument("--py-spy", type=Path, help="record py-spy raw profiles of A and B here")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per step")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    TIMEOUT = args.timeout
    only = set(args.only.split(","))
    n_media, n_docs = (4, 2000) if args.quick else (None, None)
    n_resync = args.resync_items or (10_000 if args.quick else 100_000)
    latency_n = args.latency_n if "latency" in only else 0

    def on_signal(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    root = Path(tempfile.mkdtemp(prefix="amanah-replicate-", dir=args.scratch))
    spy = Spy(args.py_spy)
    sshd = None
    git = ["git", "-C", str(HERE.parent)]
    rev = run([*git, "rev-parse", "--short", "HEAD"], check=False)[1].stdout.strip()
    dirty = run([*git, "status", "--porcelain", "--", "node", "protocol", "cli"], check=False)[1]
    res: dict = {
        "commit": rev + ("+dirty" if dirty.stdout.strip() else ""),
        "quick": args.quick,
        "load1_start": load(),
        "cpus": os.cpu_count(),
        "targets": TARGETS,
    }
    try:
        ensure_data(args.data)
        if only & {"media", "docs"}:
            sshd = Sshd(root / "sshd")
            res["rsync_version"] = run(["rsync", "--version"])[1].stdout.splitlines()[0]
        for label, count in (("media", n_media), ("docs", n_docs)):
            if label not in only:
                continue
            src, nfiles, nbytes = subset(args.data, label, count, root)
            rs, rs_cpu, ours = [], [], []
            for r in range(args.runs):
                dst = root / f"rsync-{label}"
                shutil.rmtree(dst, ignore_errors=True)
                settle()
                dt, cpu_c, cpu_s_ = sshd.rsync(src, dst)  # type: ignore[union-attr]
                rs_cpu.append(cpu_c + cpu_s_)
                if count_files(dst) != nfiles:
                    raise SystemExit(f"rsync copied {count_files(dst)} of {nfiles} files")
                rs.append(dt)
                log(f"{label} run {r + 1}: rsync-ssh {dt:.3f} s ({nbytes / 1e6 / dt:.1f} MB/s)")
                if label == "docs" and r == 0:
                    again = sshd.rsync(src, dst)[0]  # type: ignore[union-attr]
                    res["docs_rsync_ssh_resync_nochange_s"] = round(again, 3)
                pair_root = root / f"{label}-{r}"
                ours.append(
                    replicate_pair(
                        pair_root,
                        label,
                        src,
                        nbytes,
                        nfiles,
                        spy,
                        latency_n if r == 0 else 0,
                        rsync_copy=dst,
                    )
                )
                shutil.rmtree(pair_root, ignore_errors=True)
            o_s, r_s = med([o["seconds"] for o in ours]), med(rs)
            res[label] = {
                "files": nfiles,
                "bytes": nbytes,
                "ours_s": o_s,
                "rsync_ssh_s": r_s,
                "ours_mb_s": round(nbytes / 1e6 / o_s, 1),
                "rsync_ssh_mb_s": round(nbytes / 1e6 / r_s, 1),
                "ratio_speed_ours_over_rsync": round(r_s / o_s, 3),
                "runs": ours,
                "rsync_runs_s": [round(x, 3) for x in rs],
                "rsync_cpu_s": [round(x, 2) for x in rs_cpu],
                "ours_cpu_s": [o["cpu_a_s"] + o["cpu_b_s"] for o in ours],
            }
            log(f"{label}: ours {o_s:.3f} s vs rsync-ssh {r_s:.3f} s")
        if sshd is not None:
            sshd.stop()
            sshd = None
        if "resync" in only:
            res["resync"] = resync(root / "resync", n_resync, args.resync_rounds)
        res["load1_end"] = load()
    finally:
        spy.stop()
        if sshd is not None:
            sshd.stop()
        PROCS.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    report(res)


def report(res: dict) -> None:
    print()
    print(
        f"Replication A -> B on 127.0.0.1, {res['commit']} ({res['cpus']} cores, "
        f"load1 {res['load1_start']} at start, {res.get('load1_end')} at end)"
        + (" [--quick]" if res["quick"] else "")
    )
    summary: dict = {}
    for label in ("media", "docs"):
        d = res.get(label)
        if not d:
            continue
        print(f"\n{label}: {d['files']} files, {d['bytes'] / 1e6:.1f} MB")
        print(f"  amanah (closed, B holds all) {d['ours_s']:9.3f} s {d['ours_mb_s']:8.1f} MB/s")
        print(
            f"  rsync -a over ssh            {d['rsync_ssh_s']:9.3f} s "
            f"{d['rsync_ssh_mb_s']:8.1f} MB/s"
        )
        ratio = d["ratio_speed_ours_over_rsync"]
        print(
            f"  ours/rsync-ssh speed: {ratio:.2f}x (time {1 / ratio:.2f}x)   "
            f"target {TARGETS['media_vs_rsync_ssh' if label == 'media' else 'docs_vs_rsync_ssh']}"
        )
        run0 = d["runs"][0]
        print(
            f"  (A's ingest {run0['ingest_s']} s = {run0['ingest_mb_s']} MB/s, not included; "
            f"clock from A's commit of the grant; `share` CLI {run0['share_cli_s']} s; "
            f"B verify ok={run0['b_verify_ok']})"
        )
        cpu_o, cpu_r = statistics.median(d["ours_cpu_s"]), statistics.median(d["rsync_cpu_s"])
        print(
            f"  CPU: ours {cpu_o:.1f} core-s (A {run0['cpu_a_s']} + B {run0['cpu_b_s']} in run 1),"
            f" rsync-ssh {cpu_r:.1f} core-s (both ends); per GB: "
            f"{cpu_o / d['bytes'] * 1e9:.1f} vs {cpu_r / d['bytes'] * 1e9:.1f}"
        )
        print(f"  B's progress in run 1 (s after the grant): {run0['phases_s']}")
        summary[f"{label}_ratio"] = ratio
        summary[f"{label}_pass"] = ratio >= (0.8 if label == "media" else 1.0)
        lat = run0.get("latency")
        if lat:
            print(
                f"  latency of a new item on this {d['files']}-item collection: "
                f"{lat['median_ms']} ms after `add` returns   target < 300 ms"
            )
            print(
                f"    runs {lat['ms_after_add_returns']} ms (negative: before `add` exited); "
                f"{lat['median_ms_after_a_commit']} ms after A's commit; `add` CLI "
                f"{lat['add_cli_median_s']} s"
            )
            summary[f"latency_{label}_ms"] = lat["median_ms"]
            summary[f"latency_{label}_pass"] = lat["median_ms"] < 300
    r = res.get("resync")
    if r:
        print(f"\nresync, nothing changed, {r['items']} items (in process, Network pair):")
        print(
            f"  wall {r['median_wall_ms']} ms median (first {r['first_wall_ms']} ms; stream "
            f"open {r['median_open_ms']} ms)   target < 50 ms"
        )
        print(
            f"  wire: {r['median_frame_bytes']} B in frames, {r['median_tcp_payload_bytes']} B "
            f"TCP payload in {r['median_tcp_segments']} segments   target < 4 KB"
        )
        print(
            f"  (building it: one `amanah add` of {r['items']} files {r['add_s']} s = "
            f"{r['add_items_per_s']}/s; first replication in process {r['initial_s']} s)"
        )
        if "docs_rsync_ssh_resync_nochange_s" in res:
            print(
                "  (for scale: rsync over ssh with nothing changed on the docs: "
                f"{res['docs_rsync_ssh_resync_nochange_s']} s)"
            )
        summary["resync_wall_ms"] = r["median_wall_ms"]
        summary["resync_tcp_bytes"] = r["median_tcp_payload_bytes"]
        summary["resync_pass"] = r["median_wall_ms"] < 50 and r["median_tcp_payload_bytes"] < 4000
    res["summary"] = summary
    print()
    print("RESULT " + json.dumps(res, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
