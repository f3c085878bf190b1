"""The public JSON API: the same content as the pages. Its paths are a contract (openapi.py).

Item documents are built once per item (and base URL) and kept as bytes with the item's
details, so a hot item is served from memory: a dict lookup and a write.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from amanah.protocol import ids

from . import proof
from .catalog import PAGE_SIZE, CollectionView, ItemDetail, rfc3339_ms
from .content import etag_matches
from .search import MAX_QUERY
from .site import (
    BadRequest,
    bad_request_json,
    base_url,
    body_etag,
    json_bytes,
    json_ok,
    not_found_json,
    not_modified,
    page_number,
    site,
)

MAX_RENDERED = 16  # cached bodies per item (kinds x base URLs): a bound against Host games


def collection_doc(view: CollectionView, owner_name: str) -> dict:
    return {
        "id": view.id,
        "name": view.name,
        "owner": {
            "peer_id": view.owner_peer_id,
            "name": owner_name,
            "public_key": view.owner.hex(),
        },
        "items": len(view.items),
        "log_length": view.length,
        "head": ids.to_text("ent", view.head),
        "created_at": rfc3339_ms(view.created_at),
        "updated_at": rfc3339_ms(view.updated_at),
        "links": {
            "self": f"/api/v1/collections/{view.id}",
            "items": f"/api/v1/collections/{view.id}/items",
            "feed": f"/collections/{view.id}/feed.atom",
            "html": f"/collections/{view.id}",
        },
    }


def item_doc(detail: ItemDetail, base: str) -> dict:
    view = detail.view
    return {
        "id": view.id,
        "collection": {"id": view.collection, "name": detail.collection_name},
        "metadata": detail.meta,
        "sha256": view.sha256,
        "size": view.size,
        "mime": view.mime,
        "filename": view.filename,
        **proof.document(detail, base),
        "links": {
            "self": f"/api/v1/items/{view.id}",
            "content": f"/api/v1/items/{view.id}/content",
            "record": f"/api/v1/items/{view.id}/record",
            "entry": f"/api/v1/items/{view.id}/entry",
            "html": f"/items/{view.id}",
            "collection": f"/api/v1/collections/{view.collection}",
        },
    }


def cached(detail: ItemDetail, key: object, build: object) -> bytes:
    body = detail.rendered.get(key)
    if body is None:
        if len(detail.rendered) >= MAX_RENDERED:
            detail.rendered.clear()
        body = build()  # type: ignore[operator]
        detail.rendered[key] = body
    return body


def _paged(total: int, page: int, path: str, extra: str = "") -> dict:
    pages = max(1, -(-total // PAGE_SIZE))
    return {
        "page": page,
        "page_size": PAGE_SIZE,
        "pages": pages,
        "total": total,
        "links": {
            "prev": f"{path}?{extra}page={page - 1}" if page > 1 else None,
            "next": f"{path}?{extra}page={page + 1}" if page < pages else None,
        },
    }


# --- handlers -----------------------------------------------------------------------------------


async def collections(request: web.Request) -> web.Response:
    catalog = site(request).catalog
    views = sorted(catalog.collections.values(), key=lambda c: (-c.updated_at, c.id))
    docs = [collection_doc(v, catalog.owner_name(v.owner)) for v in views]
    return json_ok(json_bytes({"collections": docs}))


async def collection(request: web.Request) -> web.Response:
    catalog = site(request).catalog
    view = catalog.collections.get(request.match_info["id"])
    if view is None:
        return not_found_json()
    return json_ok(json_bytes(collection_doc(view, catalog.owner_name(view.owner))))


async def collection_items(request: web.Request) -> web.Response:
    catalog = site(request).catalog
    view = catalog.collections.get(request.match_info["id"])
    if view is None:
        return not_found_json()
    try:
        page = page_number(request)
    except BadRequest as exc:
        return bad_request_json(exc)
    if page > view.pages():
        return not_found_json()
    doc = {
        "collection": collection_doc(view, catalog.owner_name(view.owner)),
        **_paged(len(view.items), page, f"/api/v1/collections/{view.id}/items"),
        "items": [v.summary() for v in view.page(page)],
    }
    return json_ok(json_bytes(doc))


async def item(request: web.Request) -> web.Response:
    detail = site(request).catalog.detail(request.match_info["id"])
    if detail is None:
        return not_found_json()
    base = base_url(request)
    body = cached(detail, ("json", base), lambda: json_bytes(item_doc(detail, base)))
    etag = cached(detail, ("json-etag", base), lambda: body_etag(body).encode()).decode()
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        return not_modified(etag)
    return json_ok(body, etag)


async def item_record(request: web.Request) -> web.Response:
    """The item record's exact bytes: its SHA-256 multihash is the item id."""
    return _raw(request, "record")


async def item_entry(request: web.Request) -> web.Response:
    """The owner's signed log entry naming the item, exactly as stored."""
    return _raw(request, "entry")


def _raw(request: web.Request, kind: str) -> web.Response:
    detail = site(request).catalog.detail(request.match_info["id"])
    if detail is None:
        return not_found_json()
    etag = f'"{detail.view.id}.{kind}"'
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        return not_modified(etag)
    body = detail.record.raw if kind == "record" else detail.entry.raw
    return web.Response(
        body=body,
        content_type="application/cbor",
        headers={
            "ETag": etag,
            "Cache-Control": "no-cache",
            "Content-Disposition": f'attachment; filename="{kind}.cbor"',
        },
    )


async def search(request: web.Request) -> web.Response:
    catalog = site(request).catalog
    query = request.query.get("q", "")
    try:
        if len(query) > MAX_QUERY:
            raise BadRequest("bad_query", f"q is longer than {MAX_QUERY} characters")
        page = page_number(request)
    except BadRequest as exc:
        return bad_request_json(exc)
    found = catalog.newest_first(catalog.index.query(query))
    doc = {
        "query": query,
        **_paged(len(found), page, "/api/v1/search", f"q={quote(query)}&"),
        "items": [v.summary() for v in found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]],
    }
    return json_ok(json_bytes(doc))
