"""The public web of a mirror: pages in Arabic and English, a JSON API, downloads, feeds.

`mount(app, node)` adds every public route to the daemon's aiohttp application (node/api.py
calls it on a mirror, where these routes need no token). Modules, one concept each:

    site.py      running state (catalog, worker threads, refresher) and shared helpers
    catalog.py   what is served, in memory: public collections, their items, item details
    search.py    Arabic normalisation, case-folding and the in-memory inverted index
    content.py   downloads: Range, HEAD, ETag, Content-Disposition, verified streaming
    jsonapi.py   the JSON API (its paths are a contract: openapi.py)
    pages.py     the HTML pages; render.py their building blocks; i18n.py their strings
    proof.py     the authenticity proof and the steps to verify a file independently
    feed.py      an Atom feed per collection
    security.py  security headers on every response

Routes (HTML; JSON under /api/v1):

    GET /                               collections
    GET /collections/{id}?page=N        a collection's items, 50 a page, newest first
    GET /collections/{id}/feed.atom     its Atom feed
    GET /items/{id}                     an item, its proof, how to verify it
    GET /search?q=…&page=N              search
    GET /static/style.css               the one stylesheet
    GET /api/v1/openapi.json            the API description
    GET /api/v1/collections             GET /api/v1/collections/{id}
    GET /api/v1/collections/{id}/items?page=N
    GET /api/v1/items/{id}              GET /api/v1/items/{id}/content (HEAD, Range)
    GET /api/v1/items/{id}/record       GET /api/v1/items/{id}/entry
    GET /api/v1/search?q=…&page=N
"""

from __future__ import annotations

from aiohttp import web

from ..home import Node
from . import content, feed, jsonapi, openapi, pages, security
from .render import STYLE_PATH
from .site import SITE, Site


def mount(app: web.Application, node: Node) -> None:
    """Add the public routes, the security headers and the catalog's lifecycle to `app`."""
    site = Site(node)
    app[SITE] = site
    app.on_startup.append(site.start)
    app.on_cleanup.append(site.stop)
    app.on_response_prepare.append(security.add_headers)
    get = app.router.add_get
    get("/", pages.home)
    get("/collections/{id}", pages.collection)
    get("/collections/{id}/feed.atom", feed.handler)
    get("/items/{id}", pages.item)
    get("/search", pages.search)
    get(STYLE_PATH, pages.style)
    get("/api/v1/openapi.json", openapi.handler)
    get("/api/v1/collections", jsonapi.collections)
    get("/api/v1/collections/{id}", jsonapi.collection)
    get("/api/v1/collections/{id}/items", jsonapi.collection_items)
    get("/api/v1/items/{id}", jsonapi.item)
    get("/api/v1/items/{id}/content", content.handler)
    get("/api/v1/items/{id}/record", jsonapi.item_record)
    get("/api/v1/items/{id}/entry", jsonapi.item_entry)
    get("/api/v1/search", jsonapi.search)
