"""`amanah run`: the node daemon.

Two threads, bridged explicitly (shared/notes/libp2p-0.8.1.md):
- a trio thread runs libp2p (node/net) and replication: a pull loop per trusted peer, woken by the
  peer's head notices and every PERIODIC seconds; a watcher that notices what the CLI (another
  process) adds to the store and sends head notices, so a new item reaches connected peers in
  well under a second; an allow-list refreshed from the store every second;
- the main thread runs asyncio: the HTTP API on 127.0.0.1 (bearer token in HOME/http.token) and
  the signal handlers. SIGINT/SIGTERM cancel the trio side and stop the HTTP server.

The core (store, crypto, records) is synchronous; no LMDB transaction is held across an await.
HOME/run/daemon.json tells other processes (the CLI) where the running daemon listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from amanah.protocol import ids
from amanah.protocol import sync as msg
from amanah.protocol.errors import FormatError

from . import peers as peers_mod
from . import replicate, sync_server
from .errors import DamagedError, StoreFull
from .home import Node
from .net.slots import PeerSlots
from .tuning import tune_process

log = logging.getLogger("amanah.daemon")

PERIODIC = 30.0  # seconds between routine syncs with each peer
WATCH_INTERVAL = 0.05  # seconds between looks at the store for local changes
PEER_REFRESH = 1.0
# Sync sessions one peer may hold open with us at once. A puller needs one (two while a
# one-shot `amanah sync` runs beside its daemon); yamux sets no bound on inbound streams, and
# each session holds a worker thread's turn, LMDB read slots (512 in all) and a block-list cache.
MAX_SESSIONS_PER_PEER = 4
RETRY_MIN, RETRY_MAX = 1.0, 60.0


def token_path(home: Path) -> Path:
    return home / "http.token"


def load_or_create_token(home: Path) -> str:
    path = token_path(home)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def running_info(home: Path) -> dict | None:
    """What HOME/run/daemon.json says, if a daemon with that pid is alive."""
    try:
        info = json.loads((home / "run" / "daemon.json").read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (OSError, ValueError, KeyError, TypeError):
        return None


class P2P:
    """The trio side: the libp2p host and replication."""

    def __init__(self, node: Node, listen: list[str]) -> None:
        self.node = node
        self.listen = listen
        self.trusted: dict[str, peers_mod.Peer] = {}
        self.discovered: dict[str, list[str]] = {}  # LAN addresses of trusted peers (mDNS)
        self._load_peers()
        self.wake: dict[str, trio.Event] = {}
        self.loops: dict[str, trio.CancelScope] = {}
        self.last_result: dict[str, dict] = {}
        self.ready = threading.Event()
        self.addrs: list[str] = []
        self.trio_token: trio.lowlevel.TrioToken | None = None
        self.cancel_scope: trio.CancelScope | None = None
        self.failure: BaseException | None = None
        self.sessions = PeerSlots(MAX_SESSIONS_PER_PEER)  # open sync sessions per peer id

    def _load_peers(self) -> None:
        trusted = {p.peer_id: p for p in peers_mod.all_peers(self.node)}
        for peer_id, addrs in list(self.discovered.items()):
            if peer_id in trusted:
                peer = trusted[peer_id]
                peer.addrs = list(dict.fromkeys(peer.addrs + addrs))
        self.trusted = trusted

    def discovered_addr(self, peer_id: str, addr: str) -> None:
        """An address seen on the LAN for a peer; used only if the peer is already trusted."""
        known = self.discovered.setdefault(peer_id, [])
        if addr not in known:
            known.append(addr)
            if peer_id in self.trusted and addr not in self.trusted[peer_id].addrs:
                self.trusted[peer_id].addrs.append(addr)

    def is_trusted(self, peer_id: str) -> bool:
        return peer_id in self.trusted

    # --- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        """Thread body."""
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the main thread
            self.failure = exc
            log.exception("the network side stopped")
        finally:
            self.ready.set()

    def stop(self) -> None:
        if self.trio_token is not None and self.cancel_scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self.trio_token.run_sync_soon(self.cancel_scope.cancel)

    async def _main(self, work: Callable[[], Awaitable[object]] | None = None) -> object:
        """Serve until cancelled; or, given `work`, serve while it runs and return its result
        (the one-shot `amanah sync` without a daemon)."""
        from .net import Network

        self.trio_token = trio.lowlevel.current_trio_token()
        self.net = Network(self.node.identity.seed, self.listen, self.is_trusted)
        self.net.handle(msg.SYNC_PROTOCOL, self._serve_sync)
        self.net.handle(msg.NOTIFY_PROTOCOL, self._serve_notify)
        result = None
        with trio.CancelScope() as scope:
            self.cancel_scope = scope
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self.addrs = await nursery.start(self.net.serve)
                self.ready.set()
                if work is not None:
                    result = await work()
                    scope.cancel()
                    return result
                nursery.start_soon(self._refresh_peers)
                nursery.start_soon(self._watch_local)
        return result

    # --- serving --------------------------------------------------------------------------------

    async def _serve_sync(self, stream: object) -> None:
        peer_id: str = stream.peer_id  # type: ignore[attr-defined]
        if not self.sessions.take(peer_id):
            log.warning(
                "peer %s already has %d sync sessions open: refusing another",
                peer_id,
                self.sessions[peer_id],
            )
            await stream.send(msg.encode("error", msg="too many sessions at once"))  # type: ignore[attr-defined]
            return
        try:
            await sync_server.serve(self.node, stream, ids.public_key_from_peer_id(peer_id))  # type: ignore[arg-type]
        except FormatError as exc:
            log.warning("peer %s: sync request refused: %s", peer_id, exc)
        finally:
            self.sessions.release(peer_id)

    async def _serve_notify(self, stream: object) -> None:
        frame = b""
        with trio.move_on_after(10):  # a notice is one small frame; a silent peer is dropped
            frame = await stream.recv(msg.MAX_REQUEST)  # type: ignore[attr-defined]
        if not frame:
            return
        try:
            notice = msg.decode(frame, msg.MAX_REQUEST, ("head",))
        except FormatError as exc:
            log.warning("peer %s sent a bad notice: %s", stream.peer_id, exc)  # type: ignore[attr-defined]
            return
        with self.node.store.read() as txn:
            state = self.node.archive.state(txn, notice["col"])
        if state is None or state.length < notice["length"] or state.head != notice["head"]:
            self.poke(stream.peer_id)  # type: ignore[attr-defined]

    # --- pulling --------------------------------------------------------------------------------

    def poke(self, peer_id: str) -> None:
        """Wake the pull loop of a peer (starting one if it has none)."""
        if peer_id not in self.trusted:
            return
        if peer_id not in self.loops:
            self.nursery.start_soon(self._peer_loop, peer_id)
        event = self.wake.get(peer_id)
        if event is not None:
            event.set()

    async def _peer_loop(self, peer_id: str) -> None:
        with trio.CancelScope() as scope:
            self.loops[peer_id] = scope
            self.wake[peer_id] = trio.Event()
            backoff = RETRY_MIN
            try:
                while True:
                    ok = await self.sync_once(peer_id)
                    wait = PERIODIC if ok else backoff
                    backoff = RETRY_MIN if ok else min(backoff * 2, RETRY_MAX)
                    with trio.move_on_after(wait):
                        await self.wake[peer_id].wait()
                    self.wake[peer_id] = trio.Event()
            finally:
                self.loops.pop(peer_id, None)
                self.wake.pop(peer_id, None)

    async def sync_once(self, peer_id: str) -> bool:
        from .net import NetError

        peer = self.trusted.get(peer_id)
        if peer is None:
            return False
        started = time.monotonic()
        try:
            stream = await self.net.open(peer_id, peer.addrs, msg.SYNC_PROTOCOL)
            try:
                result = await replicate.Puller(self.node, stream).run()
            finally:
                await stream.close()
        except replicate.ForkDetected as exc:
            # The owner's key signed two histories: an alarm, but not this peer's fault.
            log.error("ALARM: %s (from peer %s); the rest was synced", exc, peer_id)
            self.last_result[peer_id] = {"ok": False, "fork": str(exc), "at": time.time()}
            return True
        except replicate.PeerViolation as exc:
            log.error("peer %s violated the protocol: %s; disconnecting", peer_id, exc)
            self.last_result[peer_id] = {"ok": False, "error": str(exc), "at": time.time()}
            await self.net.disconnect(peer_id)
            return False
        except (NetError, FormatError, OSError) as exc:
            log.info("sync with %s failed: %s", peer_id, exc)
            self.last_result[peer_id] = {"ok": False, "error": str(exc), "at": time.time()}
            return False
        except (StoreFull, DamagedError) as exc:
            # Our own store refused (a full disk, damage): what was stored stays, serving
            # the other peers goes on, and the pull is retried with back-off.
            log.error("sync with %s stopped: %s", peer_id, exc)
            self.last_result[peer_id] = {"ok": False, "error": str(exc), "at": time.time()}
            return False
        except Exception as exc:
            # A bug must not take the node off the network: every other peer is still served
            # and pulled from. Loud, with the traceback, for a report.
            log.exception("sync with %s failed on an unexpected error", peer_id)
            error = f"unexpected error: {type(exc).__name__}: {exc}"
            self.last_result[peer_id] = {"ok": False, "error": error, "at": time.time()}
            return False
        took = time.monotonic() - started
        if result.entries or result.blocks:
            log.info(
                "pulled from %s: %d entries, %d records, %d blocks (%d bytes) in %.2f s",
                peer_id,
                result.entries,
                result.records,
                result.blocks,
                result.bytes,
                took,
            )
        self.last_result[peer_id] = {
            "ok": True,
            "at": time.time(),
            "forks": result.forks,
            "invalid_items": result.invalid,
        }
        return True

    # --- keeping up with the allow-list and local changes ----------------------------------------

    async def _refresh_peers(self) -> None:
        while True:
            self._load_peers()
            for peer_id in list(self.loops):
                if peer_id not in self.trusted:
                    self.loops[peer_id].cancel()
            await self.net.drop_untrusted()
            for peer_id, peer in self.trusted.items():
                if peer_id not in self.loops and peer.addrs:
                    self.nursery.start_soon(self._peer_loop, peer_id)
            await trio.sleep(PEER_REFRESH)

    async def _watch_local(self) -> None:
        """Send head notices when the store's collections change (the CLI writes directly)."""
        seen: dict[bytes, bytes] = {}
        first = True
        rounds = 0
        while True:
            rounds += 1
            if rounds % 20 == 0:  # about every second: keep the store's mapped pages out of RSS
                self.node.store.trim_map()
            with self.node.store.read() as txn:
                states = self.node.archive.states(txn)
            for state in states:
                if seen.get(state.id) == state.head:
                    continue
                seen[state.id] = state.head
                if not first:
                    self.nursery.start_soon(self._notify_all, state)
            first = False
            await trio.sleep(WATCH_INTERVAL)

    async def _notify_all(self, state: object) -> None:
        from .net import NetError

        notice = msg.encode("head", col=state.id, length=state.length, head=state.head)  # type: ignore[attr-defined]
        for peer_id, peer in list(self.trusted.items()):
            if not sync_server.may_serve(self.node, state, peer.public_key, peer.role):  # type: ignore[arg-type]
                continue
            try:
                with trio.fail_after(10):
                    stream = await self.net.open(peer_id, peer.addrs, msg.NOTIFY_PROTOCOL)
                    await stream.send(notice)
                    await stream.close()
            except (NetError, trio.TooSlowError, OSError) as exc:
                log.debug("notice to %s not sent: %s", peer_id, exc)


class Daemon:
    def __init__(self, node: Node, listen: list[str], http: str, mdns: bool) -> None:
        self.node = node
        self.p2p = P2P(node, listen)
        self.http = http
        self.mdns = mdns
        self.token = load_or_create_token(node.home)
        self.info_path = node.home / "run" / "daemon.json"

    def run(self) -> None:
        """Run until SIGINT or SIGTERM."""
        self.node.identity  # noqa: B018 - unlock before starting threads (may prompt)
        tune_process()
        thread = threading.Thread(target=self.p2p.run, name="amanah-p2p", daemon=True)
        thread.start()
        self.p2p.ready.wait()
        if self.p2p.failure is not None:
            raise self.p2p.failure
        try:
            asyncio.run(self._http_main())
        finally:
            self.p2p.stop()
            thread.join(timeout=10)
            self.info_path.unlink(missing_ok=True)

    async def _http_main(self) -> None:
        from . import api

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner, bound = await api.start(self, self.http)
        mdns = None
        if self.mdns:
            from . import discovery

            # zeroconf's blocking API must not run on this event loop (it hung here): a thread.
            mdns = await loop.run_in_executor(None, discovery.start, self.node, self.p2p)
        info = {
            "pid": os.getpid(),
            "peer_id": self.node.peer_id,
            "addrs": self.p2p.addrs,
            "http": bound,
        }
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.info_path)
        log.info(
            "node %s running; p2p %s; http %s", self.node.peer_id, " ".join(self.p2p.addrs), bound
        )
        print(json.dumps({"ready": True, **info}), flush=True)
        try:
            while not stop.is_set() and self.p2p.failure is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.5)
        finally:
            if mdns is not None:
                await loop.run_in_executor(None, mdns.close)
            await runner.cleanup()
