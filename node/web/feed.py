"""An Atom feed (RFC 4287) per collection: its newest items (one page, 50), newest first.

Ids are `urn:amanah:` plus the item or collection id, stable whichever address the mirror is
reached at; links are absolute (feed readers resolve them outside the page). Each entry links
the original as an enclosure, with its type and length.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from .catalog import rfc3339_ms
from .pages import not_found
from .site import base_url, site

# XML 1.0 allows only these characters; metadata can hold others (e.g. U+FFFE).
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def text(value: object) -> str:
    return escape(_NOT_XML.sub("\ufffd", str(value)))


def attr(value: object) -> str:
    return quoteattr(_NOT_XML.sub("\ufffd", str(value)))


async def handler(request: web.Request) -> web.Response:
    s = site(request)
    catalog = s.catalog
    view = catalog.collections.get(request.match_info["id"])
    if view is None:
        return not_found(request)
    base = base_url(request)
    home = f"{base}/collections/{view.id}"
    owner = catalog.owner_name(view.owner) or view.owner_peer_id
    newest = view.page(1)  # the feed changes when its items do: that is its updated time
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<id>urn:amanah:{view.id}</id>",
        f"<title>{text(view.name)}</title>",
        f"<updated>{rfc3339_ms(newest[0].at if newest else view.created_at)}</updated>",
        f"<author><name>{text(owner)}</name><uri>urn:libp2p:{view.owner_peer_id}</uri></author>",
        f'<link rel="self" type="application/atom+xml" href={attr(home + "/feed.atom")}/>',
        f'<link rel="alternate" type="text/html" href={attr(home)}/>',
        "<generator>Amanah</generator>",
    ]
    for item in newest:
        detail = catalog.detail(item.id)
        if detail is None:
            continue
        meta = detail.meta
        title, lang = (
            (item.title_en, "en")
            if item.title_en
            else (item.title_ar, "ar")
            if item.title_ar
            else (item.filename, None)
        )
        lang_attr = f' xml:lang="{lang}"' if lang else ""
        out.append("<entry>")
        out.append(f"<id>urn:amanah:{item.id}</id>")
        out.append(f"<title{lang_attr}>{text(title)}</title>")
        out.append(f"<updated>{rfc3339_ms(item.at)}</updated>")
        out.append(f"<published>{rfc3339_ms(item.at)}</published>")
        out.append(
            f'<link rel="alternate" type="text/html" href={attr(base + "/items/" + item.id)}/>'
        )
        out.append(
            f'<link rel="enclosure" type={attr(item.mime)} length="{item.size}" '
            f"href={attr(base + '/api/v1/items/' + item.id + '/content')}/>"
        )
        for field, code in (("description_en", "en"), ("description_ar", "ar")):
            if meta.get(field):
                out.append(f'<summary xml:lang="{code}">{text(meta[field])}</summary>')
                break
        for tag in meta.get("tags", []):
            out.append(f"<category term={attr(tag)}/>")
        out.append("</entry>")
    out.append("</feed>\n")
    return web.Response(
        body="\n".join(out).encode(),
        content_type="application/atom+xml",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )
