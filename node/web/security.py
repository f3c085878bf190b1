"""Security headers on every response the mirror sends, errors and admin answers included.

Set in `on_response_prepare`, which runs for every response whatever produced it (a handler,
the router's 404, the daemon's token check), rather than in a middleware that some responses
would bypass. A handler may set a stricter Content-Security-Policy first (downloads do).
"""

from __future__ import annotations

from aiohttp import web

# No external source of anything; no script at all. Styles come from this origin only (one
# stylesheet), images and media from this origin only (previews), forms submit here only.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", PAGE_CSP)
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers.setdefault("Cache-Control", "no-store")
    headers["Server"] = "Amanah"  # not aiohttp's name and version: nothing to fingerprint
