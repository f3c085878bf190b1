#!/usr/bin/env python3
"""Network throughput: stock libp2p code paths beside ours, in the same run.

Two processes on 127.0.0.1 (a sender and a receiver) move --mb MB (default 200) over ONE stream
in --frame-sized frames (default 1 MiB) with `FramedStream`; the receiver hashes everything with
SHA-256 and sends the digest back, the sender checks it. The time is from the first frame sent
to the digest received. Modes, run alternately so all see the same machine noise, each --runs
times (median printed):

    stock   Network(fast_io=False), PY_YAMUX_RELEASE_ON_READ=1: the library's own code paths
    ours    Network(fast_io=True): read-ahead TCP, batching Noise session, batched yamux
            window updates (node/net/fastio.py)
    mixed   a stock sender to an `ours` receiver (wire compatibility; where the gain is)
    tcp     the same framing over a bare trio TCP socket: no libp2p, no encryption (a ceiling)

"CPU busy" is process CPU time over wall time during the transfer: well under 100% on an idle
machine means waiting (flow control, latency); on a loaded one, other processes.

    python bench/net_throughput.py [--mb 200] [--frame 1048576] [--runs 3] [--modes stock,ours]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

PROTO = "/amanah/bench/1"
MiB = 1 << 20
MODES = {"stock": ("stock", "stock"), "ours": ("ours", "ours"), "mixed": ("stock", "ours")}
MODES["tcp"] = ("tcp", "tcp")


def peer_id(seed: bytes) -> str:
    from amanah.node.net import Network

    return Network(seed, ["/ip4/127.0.0.1/tcp/0"], lambda p: False, fast_io=False).peer_id


def env_for(kind: str) -> dict:
    env = dict(os.environ)
    # Stock: yamux's default (a window update per read). Ours: unset, so Network sets 0.
    if kind == "ours":
        env.pop("PY_YAMUX_RELEASE_ON_READ", None)
    else:
        env["PY_YAMUX_RELEASE_ON_READ"] = "1"
    return env


# -- the two ends of the stream ----------------------------------------------------------------


async def sink(stream, frame_size: int) -> None:
    """Receive until the end, hash, reply with the digest and what this process spent."""
    h = hashlib.sha256()
    n = 0
    cpu = wall = 0.0
    while frame := await stream.recv(frame_size):
        if not n:
            cpu, wall = time.process_time(), time.perf_counter()
        h.update(frame)
        n += len(frame)
    busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    reply = {"bytes": n, "sha256": h.hexdigest(), "rss": rss, "busy": busy}
    await stream.send(json.dumps(reply).encode())


async def source(stream, total: int, frame_size: int) -> dict:
    rng = random.Random(1)
    blocks = [rng.randbytes(frame_size) for _ in range(8)]
    want = hashlib.sha256()
    start, cpu = time.perf_counter(), time.process_time()
    sent = i = 0
    while sent < total:
        frame = blocks[i % len(blocks)][: total - sent]
        await stream.send(frame)
        want.update(frame)
        sent += len(frame)
        i += 1
    await stream.close_write()
    reply = json.loads(await stream.recv(4096))
    elapsed = time.perf_counter() - start
    busy = (time.process_time() - cpu) / elapsed
    ok = reply["bytes"] == total and reply["sha256"] == want.hexdigest()
    return {"ok": ok, "seconds": elapsed, "rss": reply["rss"], "cpu": [busy, reply["busy"]]}


# -- each role in its own process --------------------------------------------------------------


def network(args):
    from amanah.node.net import Network

    return Network(
        bytes.fromhex(args.seed), ["/ip4/127.0.0.1/tcp/0"], {args.peer}.__contains__,
        fast_io=args.kind == "ours", max_frame=args.frame,
    )  # fmt: skip


async def receive(args) -> None:
    import trio
    from amanah.node.net import FramedStream, TrioByteStream

    done = trio.Event()

    async def handler(stream) -> None:
        await sink(stream, args.frame)
        done.set()

    async with trio.open_nursery() as nursery:
        if args.kind == "tcp":

            async def accept(sock: trio.SocketStream) -> None:
                await handler(FramedStream(TrioByteStream(sock), "tcp", max_frame=args.frame))

            serve = functools.partial(trio.serve_tcp, accept, 0, host="127.0.0.1")
            [listener] = await nursery.start(serve)
            addrs = [str(listener.socket.getsockname()[1])]
        else:
            net = network(args)
            net.handle(PROTO, handler)
            addrs = await nursery.start(net.serve)
        print(json.dumps(addrs), flush=True)
        await done.wait()
        await trio.sleep(0.2)  # let the reply leave before the host closes
        nursery.cancel_scope.cancel()


async def send(args) -> None:
    import trio
    from amanah.node.net import FramedStream, TrioByteStream

    total = args.mb * 1_000_000
    addrs = json.loads(args.addrs)
    if args.kind == "tcp":
        sock = await trio.open_tcp_stream("127.0.0.1", int(addrs[0]))
        stream = FramedStream(TrioByteStream(sock), "tcp", max_frame=args.frame)
        result = await source(stream, total, args.frame)
        await stream.close()
    else:
        net = network(args)
        async with trio.open_nursery() as nursery:
            await nursery.start(net.serve)
            stream = await net.open(args.peer, addrs, PROTO)
            result = await source(stream, total, args.frame)
            await stream.close()
            nursery.cancel_scope.cancel()
    print(json.dumps(result), flush=True)


# -- orchestration -----------------------------------------------------------------------------


def run_once(mode: str, args) -> dict:
    send_kind, recv_kind = MODES[mode]
    s_seed, r_seed = os.urandom(32), os.urandom(32)
    common = [sys.executable, __file__, "--mb", str(args.mb), "--frame", str(args.frame)]
    receiver = subprocess.Popen(
        [*common, "--role", "recv", "--kind", recv_kind, "--seed", r_seed.hex(),
         "--peer", peer_id(s_seed)],
        stdout=subprocess.PIPE, text=True, env=env_for(recv_kind),
    )  # fmt: skip
    try:
        addrs = receiver.stdout.readline().strip()
        out = subprocess.run(
            [*common, "--role", "send", "--kind", send_kind, "--seed", s_seed.hex(),
             "--peer", peer_id(r_seed), "--addrs", addrs],
            stdout=subprocess.PIPE, text=True, env=env_for(send_kind), check=True, timeout=600,
        )  # fmt: skip
        result = json.loads(out.stdout.strip().splitlines()[-1])
        receiver.wait(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    if not result["ok"]:
        raise SystemExit(f"{mode}: the receiver's digest did not match what was sent")
    result["mbps"] = args.mb / result["seconds"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mb", type=int, default=200, help="megabytes (10^6) to send per run")
    p.add_argument("--frame", type=int, default=MiB, help="frame size in bytes")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--modes", default="stock,ours", help=f"comma list of {', '.join(MODES)}")
    p.add_argument("--role", choices=("send", "recv"), help=argparse.SUPPRESS)
    p.add_argument("--kind", choices=("stock", "ours", "tcp"), help=argparse.SUPPRESS)
    p.add_argument("--seed", help=argparse.SUPPRESS)
    p.add_argument("--peer", help=argparse.SUPPRESS)
    p.add_argument("--addrs", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.role:
        import trio

        trio.run(receive if args.role == "recv" else send, args)
        return

    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        p.error(f"unknown modes: {', '.join(sorted(unknown))}")
    print(f"{args.mb} MB over one stream, {args.frame} B frames, two processes on 127.0.0.1")
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for run in range(args.runs):
        for mode in modes:
            r = run_once(mode, args)
            results[mode].append(r)
            print(
                f"  run {run + 1} {mode:5}  {r['mbps']:7.1f} MB/s   CPU busy: sender "
                f"{r['cpu'][0]:4.0%}, receiver {r['cpu'][1]:4.0%}   receiver RSS {r['rss']} MiB",
                flush=True,
            )
    print(f"\n{'mode':6} {'median MB/s':>12} {'min':>7} {'max':>7}")
    for mode in modes:
        speeds = [r["mbps"] for r in results[mode]]
        print(f"{mode:6} {statistics.median(speeds):12.1f} {min(speeds):7.1f} {max(speeds):7.1f}")
    if "stock" in results and "ours" in results:
        gain = statistics.median(r["mbps"] for r in results["ours"]) / statistics.median(
            r["mbps"] for r in results["stock"]
        )
        print(f"\nours / stock: {gain:.2f}x")


if __name__ == "__main__":
    main()
