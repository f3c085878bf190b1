"""The node's HTTP server (aiohttp): the local API, and on a mirror the public web.

On a partner node every path requires `Authorization: Bearer <HOME/http.token>` and the server
listens on 127.0.0.1 by default. On a mirror (config node.role = "mirror") the public web and
its JSON API (node/web/) answer without a token; the admin endpoints below still require it.

Admin endpoints:
- GET  /api/v1/health  -> {"status": "ok", "peer_id", "addrs"}
- GET  /api/v1/status  -> {"peer_id", "connected", "peers": {...last sync...}, "collections": [...]}
- POST /api/v1/sync    -> start a sync round with every peer (or ?peer=PEER_ID); {"started": [...]}
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING

from aiohttp import web

from . import status

if TYPE_CHECKING:
    from .daemon import Daemon

MAX_BODY = 64 << 10


def _authorised(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


ADMIN_PATHS = ("/api/v1/health", "/api/v1/status", "/api/v1/sync")


def _needs_token(request: web.Request) -> bool:
    if request.app.get("public"):  # a mirror: only the admin endpoints are private
        return request.path in ADMIN_PATHS
    return True


@web.middleware
async def _security(request: web.Request, handler: object) -> web.StreamResponse:
    daemon: Daemon = request.app["daemon"]
    if _needs_token(request) and not _authorised(request, daemon.token):
        response: web.StreamResponse = web.json_response(
            {"error": "missing or wrong bearer token"}, status=401
        )
    else:
        try:
            response = await handler(request)  # type: ignore[operator]
        except web.HTTPException as exc:
            response = web.json_response({"error": exc.reason}, status=exc.status)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def health(request: web.Request) -> web.Response:
    daemon: Daemon = request.app["daemon"]
    return web.json_response(
        {"status": "ok", "peer_id": daemon.node.peer_id, "addrs": daemon.p2p.addrs}
    )


def status_doc(daemon: Daemon) -> dict:
    node = daemon.node
    with node.store.read() as txn:
        states = node.archive.states(txn)
    p2p = daemon.p2p
    return {
        "peer_id": node.peer_id,
        "addrs": p2p.addrs,
        "connected": p2p.net.connected() if hasattr(p2p, "net") else [],
        "peers": dict(p2p.last_result),
        "collections": [status.collection_status(node, s) for s in states],
    }


async def status_handler(request: web.Request) -> web.Response:
    # LMDB reads and completeness scans: off the event loop.
    loop = asyncio.get_running_loop()
    return web.json_response(await loop.run_in_executor(None, status_doc, request.app["daemon"]))


async def sync_handler(request: web.Request) -> web.Response:
    daemon: Daemon = request.app["daemon"]
    p2p = daemon.p2p
    wanted = request.query.get("peer")
    targets = [wanted] if wanted else list(p2p.trusted)
    unknown = [t for t in targets if t not in p2p.trusted]
    if unknown:
        return web.json_response({"error": f"not a trusted peer: {unknown[0]}"}, status=404)
    for peer_id in targets:
        p2p.trio_token.run_sync_soon(p2p.poke, peer_id)
    return web.json_response({"started": targets})


async def start(daemon: Daemon, listen: str) -> tuple[web.AppRunner, str]:
    app = web.Application(middlewares=[_security], client_max_size=MAX_BODY)
    app["daemon"] = daemon
    app.router.add_get("/api/v1/health", health)
    app.router.add_get("/api/v1/status", status_handler)
    app.router.add_post("/api/v1/sync", sync_handler)
    if daemon.node.config.role == "mirror":
        from . import web as public_web

        app["public"] = True
        public_web.mount(app, daemon.node)
    else:
        from . import partner_api

        partner_api.mount(app, daemon.node)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    site = web.TCPSite(runner, host.strip("[]"), int(port))
    await site.start()
    sockets = site._server.sockets if site._server else []  # the bound port, when 0 was asked
    bound = listen
    if sockets:
        addr = sockets[0].getsockname()
        bound = f"{addr[0]}:{addr[1]}"
    return runner, bound
