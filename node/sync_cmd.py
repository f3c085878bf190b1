"""`amanah sync`: sync now, through the running daemon or, if none runs, on a host of its own.

With --wait it returns once, for every collection shared with the peers asked about, this node
and each granted peer hold the same complete log (as reported by the peers themselves during
sync), or fails at the timeout naming what is still behind.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import trio

from . import peers as peers_mod
from . import status as status_mod
from .daemon import P2P, running_info, token_path
from .errors import AmanahError, InvalidInput
from .home import Node

POLL = 0.2


def behind(collections: list[dict], peer_ids: set[str]) -> list[str]:
    """What keeps these collection statuses from being in sync with `peer_ids`."""
    out = []
    for c in collections:
        if not c["complete"]:
            out.append(f"{c['id']}: this node still lacks some blocks")
        for p in c["peers"]:
            if p["peer_id"] not in peer_ids:
                continue
            if not (p["complete"] and p["length"] == c["log_length"]):
                where = f"at {p['length']}" if p["length"] is not None else "not heard from"
                out.append(f"{c['id']}: {p['peer_id']} {where} of {c['log_length']}")
    return out


def _local_status(node: Node) -> list[dict]:
    with node.store.read() as txn:
        states = node.archive.states(txn)
    return [status_mod.collection_status(node, s) for s in states]


def sync(node: Node, peer_ref: str | None, wait: bool, timeout: float) -> dict:
    targets = [peers_mod.get(node, peer_ref)] if peer_ref else peers_mod.all_peers(node)
    if not targets:
        raise InvalidInput("this node has no peers (amanah peer add)")
    peer_ids = {p.peer_id for p in targets}
    info = running_info(node.home)
    if info is not None:
        return _through_daemon(node, info, peer_ref and targets[0].peer_id, peer_ids, wait, timeout)
    return _one_shot(node, targets, peer_ids, wait, timeout)


def _through_daemon(
    node: Node, info: dict, peer_id: str | None, peer_ids: set[str], wait: bool, timeout: float
) -> dict:
    base = f"http://{info['http']}/api/v1"
    token = token_path(node.home).read_text().strip()

    def call(method: str, path: str) -> dict:
        req = urllib.request.Request(base + path, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise AmanahError(f"the running daemon did not answer ({base}): {exc}") from None

    call("POST", "/sync" + (f"?peer={peer_id}" if peer_id else ""))
    deadline = time.monotonic() + timeout
    lines = [f"asked the running daemon (pid {info['pid']}) to sync"]
    while True:
        doc = call("GET", "/status")
        left = behind(doc["collections"], peer_ids)
        if not wait or not left:
            break
        if time.monotonic() > deadline:
            return {"ok": False, "lines": lines + [f"not in sync after {timeout:g} s:"] + left}
        time.sleep(POLL)
    lines.append("in sync" if not left else f"{len(left)} collection(s) still syncing")
    return {"ok": True, "lines": lines, "behind": left}


def _one_shot(
    node: Node, targets: list[peers_mod.Peer], peer_ids: set[str], wait: bool, timeout: float
) -> dict:
    # Listen on a free port: peers reach us over the connection we open to them.
    p2p = P2P(node, ["/ip4/127.0.0.1/tcp/0"])
    lines: list[str] = []

    async def work() -> dict:
        deadline = trio.current_time() + timeout
        while True:
            for peer in targets:
                ok = await p2p.sync_once(peer.peer_id)
                r = p2p.last_result.get(peer.peer_id, {})
                if not ok:
                    lines.append(f"{peer.peer_id}: {r.get('error', 'failed')}")
            with node.store.read() as txn:
                states = node.archive.states(txn)
            for state in states:  # let the peers pull what we have and they lack
                await p2p._notify_all(state)
            left = behind(_local_status(node), peer_ids)
            if not wait or not left:
                return {"ok": wait is False or not left, "left": left}
            if trio.current_time() > deadline:
                return {"ok": False, "left": left}
            await trio.sleep(POLL * 5)

    result = trio.run(p2p._main, work)
    left = result["left"]
    if result["ok"]:
        lines.append("in sync" if not left else f"synced once; {len(left)} still behind")
    else:
        lines.append(f"not in sync after {timeout:g} s:")
        lines.extend(left)
    return {"ok": result["ok"], "lines": lines, "behind": left}
