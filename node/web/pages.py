"""The HTML pages: collections, a collection's items, an item with its proof, search results.

Pages are plain HTML with one same-origin stylesheet: no script, so they work with JavaScript
off and stay small on slow links. Every page answers in the reader's language (i18n.negotiate)
and says so with Content-Language and Vary: Accept-Language.
"""

from __future__ import annotations

from aiohttp import web

from . import proof
from .catalog import PAGE_SIZE, CollectionView, ItemDetail, ItemView
from .content import etag_matches, previewable
from .i18n import Lang, count_noun, negotiate
from .jsonapi import cached
from .render import (
    STYLE_BYTES,
    STYLE_ETAG,
    code,
    esc,
    human_size,
    link,
    ltr,
    page,
    pager,
    title_of,
    user,
)
from .search import MAX_QUERY
from .site import BadRequest, base_url, body_etag, not_modified, page_number, site


def html(body: bytes, lang: Lang, status: int = 200, etag: str | None = None) -> web.Response:
    response = web.Response(body=body, status=status, content_type="text/html", charset="utf-8")
    response.headers["Content-Language"] = lang.code
    response.headers["Vary"] = "Accept-Language"
    if etag is not None:
        response.headers["ETag"] = etag
        response.headers["Cache-Control"] = "no-cache"
    return response


def not_found(request: web.Request, lang: Lang | None = None) -> web.Response:
    """The one answer for anything unknown, non-public, redacted or malformed (no oracle)."""
    lang = lang or negotiate(request)
    body = f"<h1>{esc(lang.t('not_found'))}</h1><p>{esc(lang.t('not_found_text'))}</p>"
    return html(page(lang, lang.t("not_found"), body, "/"), lang, 404)


def bad_request(lang: Lang, exc: BadRequest) -> web.Response:
    body = f"<h1>{esc(lang.t('bad_request'))}</h1><p>{esc(lang.t(exc.key))}</p>"
    return html(page(lang, lang.t("bad_request"), body, "/"), lang, 400)


def item_title(lang: Lang, view: ItemView, tag: str = "span") -> str:
    text, text_lang = title_of(lang, view.title_en, view.title_ar)
    return user(text or view.filename, tag, text_lang)


def item_row(lang: Lang, view: ItemView) -> str:
    meta = [ltr(view.mime), human_size(view.size, lang)]
    if view.captured_at:
        meta.append(ltr(view.captured_at))
    return (
        f"<li>{link(lang.url('/items/' + view.id), item_title(lang, view))}"
        f'<div class="meta">{" · ".join(meta)}</div></li>'
    )


def owner_html(lang: Lang, name: str, peer_id: str) -> str:
    shown = user(name) if name else esc(lang.t("owner_unknown"))
    return f"{shown} ({code(peer_id)})"


# --- handlers -----------------------------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    lang = negotiate(request)
    catalog = site(request).catalog
    views = sorted(catalog.collections.values(), key=lambda c: (-c.updated_at, c.id))
    rows = [
        f"<li>{link(lang.url('/collections/' + v.id), user(v.name))}"
        f'<div class="meta">{items_count(lang, len(v.items))} · {esc(lang.t("owner"))}: '
        f"{owner_html(lang, catalog.owner_name(v.owner), v.owner_peer_id)}</div></li>"
        for v in views
    ]
    listing = (
        f'<ul class="cols">{"".join(rows)}</ul>'
        if rows
        else f"<p>{esc(lang.t('no_collections'))}</p>"
    )
    body = f"<h1>{esc(lang.t('collections'))}</h1>{listing}"
    return html(page(lang, lang.t("collections"), body, "/"), lang)


def collection_head(lang: Lang, view: CollectionView, owner_name: str) -> str:
    feed = f"/collections/{view.id}/feed.atom"
    return (
        f"<h1>{user(view.name)}</h1>"
        f'<p class="meta">{esc(lang.t("owner"))}: '
        f"{owner_html(lang, owner_name, view.owner_peer_id)}"
        f" · {ltr(len(view.items))} {esc(lang.t('items'))}"
        f" · {link(feed, esc(lang.t('feed')), type='application/atom+xml')}</p>"
    )


async def collection(request: web.Request) -> web.Response:
    lang = negotiate(request)
    catalog = site(request).catalog
    view = catalog.collections.get(request.match_info["id"])
    if view is None:
        return not_found(request, lang)
    try:
        number = page_number(request)
    except BadRequest as exc:
        return bad_request(lang, exc)
    if number > view.pages():
        return not_found(request, lang)
    path = f"/collections/{view.id}"
    rows = "".join(item_row(lang, v) for v in view.page(number))
    listing = f'<ol class="items">{rows}</ol>' if rows else f"<p>{esc(lang.t('no_items'))}</p>"
    body = (
        collection_head(lang, view, catalog.owner_name(view.owner))
        + f"<h2>{esc(lang.t('newest_first'))}</h2>{listing}"
        + pager(lang, path, number, view.pages())
    )
    feed = f'<link rel="alternate" type="application/atom+xml" href="{path}/feed.atom">\n'
    params = {"page": number if number > 1 else None}
    return html(page(lang, view.name, body, path, params, feed), lang)


async def item(request: web.Request) -> web.Response:
    lang = negotiate(request)
    detail = site(request).catalog.detail(request.match_info["id"])
    if detail is None:
        return not_found(request, lang)
    base = base_url(request)
    key = ("html", lang, base)
    body = cached(detail, key, lambda: item_page(lang, detail, base))
    etag = cached(detail, (key, "etag"), lambda: body_etag(body).encode()).decode()
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        response = not_modified(etag)
        response.headers["Vary"] = "Accept-Language"
        return response
    return html(body, lang, etag=etag)


def item_page(lang: Lang, detail: ItemDetail, base: str) -> bytes:
    view, meta = detail.view, detail.meta
    t = lang.t
    content = f"/api/v1/items/{view.id}/content"
    title, title_lang = title_of(lang, view.title_en, view.title_ar)
    parts = [
        f'<p class="meta">{esc(t("collection"))}: '
        f"{link(lang.url('/collections/' + view.collection), user(detail.collection_name))}</p>",
        user(title or view.filename, "h1", title_lang),
    ]
    other = view.title_en if title_lang == "ar" else view.title_ar
    if other and title:
        parts.append(user(other, "p", "en" if title_lang == "ar" else "ar"))
    if previewable(view.mime):
        src = esc(content + "?inline=1")
        kind = view.mime.split("/", 1)[0].lower()
        if kind == "image":
            media = f'<img src="{src}" alt="{esc(title or view.filename)}">'
        else:
            media = f'<{kind} controls preload="metadata" src="{src}"></{kind}>'
        parts.append(f'<section class="preview" aria-label="{esc(t("preview"))}">{media}</section>')
    parts.append(
        f'<p><a class="download" href="{esc(content)}" download>{esc(t("download"))}</a> '
        f"({human_size(view.size, lang)})</p>"
    )
    rows = [
        (esc(t("sha256")), code(view.sha256)),
        (esc(t("size")), f"{ltr(view.size)} {esc(t('bytes'))}"),
        (esc(t("mime")), ltr(view.mime)),
        (esc(t("filename")), user(view.filename)),
    ]
    for field in ("description_ar", "description_en"):
        if meta.get(field):
            rows.append((esc(t(field)), user(meta[field], "div", field[-2:], "desc")))
    for field in ("captured_at", "ingested_at"):
        if meta.get(field):
            rows.append((esc(t(field)), ltr(meta[field])))
    if meta.get("source_url"):
        url = meta["source_url"]
        # Validated as http(s) when the record was checked; a link only if still so here.
        shown = ltr(url)
        if url.startswith(("https://", "http://")):
            shown = link(url, shown, rel="nofollow noopener noreferrer")
        rows.append((esc(t("source_url")), shown))
    if meta.get("tags"):
        rows.append((esc(t("tags")), " ".join(user(tag, cls="tag") for tag in meta["tags"])))
    location = meta.get("location", {})
    if location.get("name"):
        rows.append((esc(t("location")), user(location["name"])))
    if "lat" in location:
        rows.append((esc(t("coordinates")), ltr(f"{location['lat']}, {location['lon']}")))
    if "precision" in location:
        rows.append((esc(t("precision")), ltr(location["precision"])))
    for name, value in meta.get("extra", {}).items():
        rows.append((user(name), user(value, "div", cls="desc")))  # free field: user text
    parts.append(f"<h2>{esc(t('details'))}</h2>{definitions(rows)}")

    entry = detail.entry
    doc = proof.document(detail, base)
    provenance = [
        (esc(t("owner")), owner_html(lang, detail.owner_name, detail.owner_peer_id)),
        (esc(t("public_key")), code(detail.owner.hex())),
        (esc(t("collection")), code(view.collection)),
        (esc(t("log_position")), ltr(entry.seq)),
        (esc(t("entry_id")), code(doc["log"]["entry_id"])),
        (esc(t("signed_at")), ltr(doc["log"]["signed_at"])),
        (esc(t("signature")), code(doc["log"]["signature"])),
        (esc(t("item_id")), code(view.id)),
        (esc(t("record_sha256")), code(detail.record_sha256)),
    ]
    parts.append(f"<h2>{esc(t('provenance'))}</h2>{definitions(provenance)}")
    files = [
        link(f"/api/v1/items/{view.id}/record", esc(t("record_file"))),
        link(f"/api/v1/items/{view.id}/entry", esc(t("entry_file"))),
        link(f"/api/v1/items/{view.id}", esc(t("json")), type="application/json"),
    ]
    parts.append(f"<p>{' · '.join(files)}</p>")

    cmds = doc["verify"]["commands"]
    steps = [
        (t("verify_1"), [cmds["download"], cmds["sha256sum"]]),
        (t("verify_2"), [cmds["record"], cmds["record_sha256sum"], cmds["entry"]]),
        (t("verify_3"), [doc["verify"]["script"], cmds["script"]]),
        (t("verify_4"), []),
    ]
    items_html = "".join(
        f"<li><p>{esc(text)}</p>"
        + "".join(f'<pre dir="ltr"><code>{esc(c)}</code></pre>' for c in commands)
        + "</li>"
        for text, commands in steps
    )
    parts.append(f'<h2 id="verify">{esc(t("verify"))}</h2><ol>{items_html}</ol>')
    return page(lang, title or view.filename, "\n".join(parts), f"/items/{view.id}")


def definitions(rows: list[tuple[str, str]]) -> str:
    """A <dl> of (key markup, value markup) pairs, both already escaped."""
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


async def search(request: web.Request) -> web.Response:
    lang = negotiate(request)
    catalog = site(request).catalog
    query = request.query.get("q", "")
    try:
        if len(query) > MAX_QUERY:
            raise BadRequest("bad_query", "query too long")
        number = page_number(request)
    except BadRequest as exc:
        return bad_request(lang, exc)
    found = catalog.newest_first(catalog.index.query(query)) if query.strip() else []
    pages = max(1, -(-len(found) // PAGE_SIZE))
    shown = found[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    rows = "".join(item_row(lang, v) for v in shown)
    heading = (
        f"{esc(lang.t('results_for'))} {user(query, 'q')}" if query else esc(lang.t("results"))
    )
    listing = f'<ol class="items">{rows}</ol>' if rows else f"<p>{esc(lang.t('no_results'))}</p>"
    body = (
        f"<h1>{heading}</h1>"
        f'<p class="meta">{items_count(lang, len(found))}</p>{listing}'
        + pager(lang, "/search", number, pages, q=query)
    )
    params = {"q": query or None, "page": number if number > 1 else None}
    return html(page(lang, lang.t("search"), body, "/search", params), lang)


async def style(request: web.Request) -> web.Response:
    if etag_matches(request.headers.get("If-None-Match", ""), STYLE_ETAG):
        return not_modified(STYLE_ETAG, "public, max-age=86400")
    return web.Response(
        body=STYLE_BYTES,
        content_type="text/css",
        charset="utf-8",
        headers={"ETag": STYLE_ETAG, "Cache-Control": "public, max-age=86400"},
    )


def items_count(lang: Lang, n: int) -> str:
    """ "12 items", with the number isolated and the Arabic noun agreeing with it."""
    show, noun = count_noun(lang.code, n)
    return f"{ltr(n)} {esc(noun)}" if show else esc(noun)
