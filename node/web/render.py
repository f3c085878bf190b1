"""HTML building blocks: escaping, bidirectional isolation, the page layout and its stylesheet.

Rules every page keeps:
- everything from the data is escaped here (`esc`), never formatted into markup raw;
- user text (titles, descriptions, tags, names) goes in an element with dir="auto": its own
  direction, whatever the page's;
- hashes, ids, URLs, numbers and dates are isolated left-to-right (`ltr`, `code`), so they never
  scramble inside Arabic text;
- no script, no external asset: one small stylesheet served from this origin.
"""

from __future__ import annotations

import hashlib
from html import escape

from .i18n import LANGUAGES, NAMES, Lang


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def ltr(value: object) -> str:
    """A number, date, id or URL, isolated left-to-right."""
    return f'<bdi dir="ltr">{esc(value)}</bdi>'


def code(value: object) -> str:
    """A hash or id, isolated left-to-right in monospace (wraps anywhere on small screens)."""
    return f'<code dir="ltr">{esc(value)}</code>'


def user(value: str, tag: str = "span", lang: str | None = None, cls: str | None = None) -> str:
    """Text a person wrote, in its own direction."""
    attrs = ' dir="auto"'
    if lang:
        attrs += f' lang="{esc(lang)}"'
    if cls:
        attrs += f' class="{esc(cls)}"'
    return f"<{tag}{attrs}>{esc(value)}</{tag}>"


def link(href: str, text_html: str, **attrs: str) -> str:
    extra = "".join(f' {k.rstrip("_")}="{esc(v)}"' for k, v in attrs.items())
    return f'<a href="{esc(href)}"{extra}>{text_html}</a>'


def human_size(n: int, lang: Lang) -> str:
    units = (
        ("B", "KB", "MB", "GB", "TB") if lang.code == "en" else ("بايت", "ك.ب", "م.ب", "غ.ب", "ت.ب")
    )
    value = float(n)
    for unit in units:
        if value < 1000 or unit == units[-1]:
            number = f"{int(value)}" if unit == units[0] else f"{value:.1f}"
            return f"{ltr(number)} {esc(unit)}"
        value /= 1000
    raise AssertionError("unreachable")


def title_of(lang: Lang, title_en: str | None, title_ar: str | None) -> tuple[str, str | None]:
    """The title to show in this language (falling back to the other), and its language."""
    pairs = [(title_ar, "ar"), (title_en, "en")]
    if lang.code == "en":
        pairs.reverse()
    for text, code_ in pairs:
        if text:
            return text, code_
    return "", None


def pager(lang: Lang, path: str, page: int, pages: int, **params: object) -> str:
    if pages <= 1:
        return ""
    parts = []
    if page > 1:
        parts.append(link(lang.url(path, **params, page=page - 1), esc(lang.t("prev")), rel="prev"))
    parts.append(f"<span>{esc(lang.t('page'))} {ltr(page)} {esc(lang.t('of'))} {ltr(pages)}</span>")
    if page < pages:
        parts.append(link(lang.url(path, **params, page=page + 1), esc(lang.t("next")), rel="next"))
    return f'<nav class="pager">{" ".join(parts)}</nav>'


def page(
    lang: Lang,
    title: str,
    body: str,
    path: str,
    params: dict | None = None,
    head_extra: str = "",
) -> bytes:
    """A whole page. `title` is plain text; `body` is markup built with the helpers above."""
    params = {k: v for k, v in (params or {}).items() if v is not None}
    switch = []
    alternates = []
    for code_ in LANGUAGES:
        href = Lang(code_, True).url(path, **params)
        alternates.append(f'<link rel="alternate" hreflang="{code_}" href="{esc(href)}">')
        if code_ != lang.code:
            switch.append(link(href, esc(NAMES[code_]), lang=code_, hreflang=code_))
    hidden = f'<input type="hidden" name="lang" value="{lang.code}">' if lang.explicit else ""
    return (
        "<!doctype html>\n"
        f'<html lang="{lang.code}" dir="{lang.dir}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)} · {esc(lang.t('site'))}</title>\n"
        f'<link rel="stylesheet" href="{STYLE_PATH}">\n'
        f"{''.join(alternates)}\n{head_extra}</head>\n<body>\n"
        '<header><div class="bar">'
        f"{link(lang.url('/'), esc(lang.t('site')), class_='site')}"
        f'<nav class="lang" aria-label="{esc(lang.t("language"))}">{" ".join(switch)}</nav>'
        "</div>"
        '<form action="/search" method="get" role="search">'
        f'<label for="q" class="hidden">{esc(lang.t("search_label"))}</label>'
        f'<input id="q" type="search" name="q" dir="auto" maxlength="256" '
        f'value="{esc(str(params.get("q", "")))}" '
        f'placeholder="{esc(lang.t("search_label"))}">{hidden}'
        f'<button type="submit">{esc(lang.t("search"))}</button></form>'
        f"</header>\n<main>\n{body}\n</main>\n"
        f"<footer><p>{esc(lang.t('tagline'))}</p></footer>\n</body>\n</html>\n"
    ).encode()


STYLE = """\
*{box-sizing:border-box}
html{font-family:system-ui,"Noto Sans","Noto Naskh Arabic","Segoe UI",Tahoma,sans-serif;
line-height:1.5;color:#1a1a1a;background:#fcfcfa}
body{margin:0 auto;max-width:60rem;padding:0 1rem}
header{border-bottom:1px solid #ccc;padding:.75rem 0}
.bar{display:flex;justify-content:space-between;align-items:baseline;gap:1rem}
.site{font-weight:bold;font-size:1.2rem;text-decoration:none;color:inherit}
form[role=search]{display:flex;gap:.5rem;margin-top:.5rem}
input[type=search]{flex:1;padding:.4rem;font:inherit;min-width:0}
button{font:inherit;padding:.4rem .8rem}
.hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
main{padding:1rem 0}
h1{font-size:1.5rem;margin:.5rem 0}
h2{font-size:1.2rem;margin-top:1.5rem}
ol.items,ul.cols{padding-inline-start:0;list-style:none}
ol.items li,ul.cols li{padding:.5rem 0;border-bottom:1px solid #eee}
.meta{color:#555;font-size:.9rem}
dl{display:grid;grid-template-columns:minmax(8rem,max-content) 1fr;gap:.3rem 1rem}
dt{font-weight:bold}
dd{margin:0;overflow-wrap:anywhere}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;overflow-wrap:anywhere}
pre{background:#f1f1ee;padding:.6rem;overflow-x:auto;font-size:.85rem;text-align:left}
.desc{white-space:pre-line}
.preview img,.preview video,.preview audio{max-width:100%;max-height:70vh}
.download{display:inline-block;padding:.5rem 1rem;border:1px solid #333;margin:.5rem 0}
.pager{display:flex;gap:1rem;margin:1rem 0}
.tag{display:inline-block;border:1px solid #ccc;padding:0 .4rem;margin-inline-end:.3rem}
footer{border-top:1px solid #ccc;color:#555;font-size:.9rem}
"""
STYLE_BYTES = STYLE.encode()
STYLE_ETAG = '"' + hashlib.sha256(STYLE_BYTES).hexdigest()[:32] + '"'
STYLE_PATH = "/static/style.css"
