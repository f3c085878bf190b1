"""The public web's running state (catalog, worker threads, refresher) and what handlers share.

No-oracle rule: every unknown, non-public, redacted or malformed id answers exactly like a
missing one (`not_found_json`, or the HTML not-found page), whatever the kind of id, so a
visitor cannot learn that a closed collection or a redacted item exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from ..home import Node
from .catalog import Catalog
from .search import SearchIndex

logger = logging.getLogger("amanah.web")

REFRESH_INTERVAL = 0.5  # seconds between looks at the collection heads
# Block reads and hashing (hashlib releases the GIL on large buffers): one thread per core;
# more only contend for the GIL (measured on 2 cores: 2 threads beat 4 by a quarter).
READ_THREADS = max(2, min(8, os.cpu_count() or 2))
MAX_PAGE = 10_000_000
# Blocks read (by all downloads together) between Store.release_map calls. A call costs about
# 0.5 ms; a read maps whole page-cache folios around each 64 KiB fragment, far more than it
# reads, so the mapped pages between two calls reach a few times this many MiB.
RELEASE_EVERY = 8
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$")


class BadRequest(Exception):
    """400: a parameter that is not acceptable (the message names it, in i18n keys)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class MapReleaser:
    """Calls Store.release_map every RELEASE_EVERY blocks read, counted across every download of
    the process: memory stays flat however many run at once, at the least cost."""

    def __init__(self, node: Node, every: int = RELEASE_EVERY) -> None:
        self.node = node
        self.every = every
        self._count = 0
        self._lock = threading.Lock()

    def block_read(self) -> None:
        with self._lock:
            self._count += 1
            due = self._count >= self.every
            if due:
                self._count = 0
        if due:
            self.node.store.release_map()


class Site:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.catalog = Catalog(node, SearchIndex(fold_teh_marbuta=node.config.fold_teh_marbuta))
        self.pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="amanah-web")
        self.releaser = MapReleaser(node)
        self._refresher: asyncio.Task | None = None

    async def start(self, app: web.Application) -> None:
        # The first scan completes before the server answers: a fresh mirror never shows an
        # empty catalog that is merely not loaded yet.
        await self.refresh()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self, app: web.Application) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def refresh(self) -> None:
        delta = await asyncio.get_running_loop().run_in_executor(self.pool, self.catalog.scan)
        self.catalog.apply(delta)  # on the loop thread: requests never see half a change

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            try:
                await self.refresh()
            except Exception:  # keep serving what is known; the next look may succeed
                logger.exception("refreshing the public catalog failed")


SITE = web.AppKey("amanah_web_site", Site)


def site(request: web.Request) -> Site:
    return request.app[SITE]


def base_url(request: web.Request) -> str:
    """scheme://host of this mirror as the client reached it, for the command lines shown.
    A Host that is not a plain host name or address is not echoed into a shell command."""
    host = request.host or ""
    if not _HOST.match(host):
        host = "MIRROR"
    scheme = "https" if request.headers.get("X-Forwarded-Proto") == "https" else request.scheme
    return f"{scheme}://{host}"


def page_number(request: web.Request) -> int:
    """`page`, 1-based: ASCII digits only, from 1."""
    raw = request.query.getall("page", ["1"])
    if len(raw) != 1:
        raise BadRequest("bad_page", "page must be given once")
    text = raw[0]
    if not (text.isascii() and text.isdigit()) or len(text) > 8 or not 1 <= int(text) <= MAX_PAGE:
        raise BadRequest("bad_page", "page must be a whole number from 1")
    return int(text)


def json_bytes(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def json_ok(body: bytes, etag: str | None = None) -> web.Response:
    response = web.Response(body=body, content_type="application/json", charset="utf-8")
    if etag is not None:
        response.headers["ETag"] = etag
        response.headers["Cache-Control"] = "no-cache"
    return response


def body_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def not_found_json() -> web.Response:
    # The same status and body aiohttp's router gives for a path that matches nothing.
    return web.json_response({"error": "Not Found"}, status=404)


def bad_request_json(exc: BadRequest) -> web.Response:
    return web.json_response({"error": str(exc)}, status=400)


def not_modified(etag: str, cache_control: str = "no-cache") -> web.Response:
    return web.Response(status=304, headers={"ETag": etag, "Cache-Control": cache_control})
