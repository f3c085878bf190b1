"""Interface strings in Arabic and English, and choosing the language of a page.

The language comes from `?lang=ar|en` when given (the switch on every page is a plain link, so
it works without JavaScript), else from Accept-Language, else English. A language chosen by the
link is carried on every link of the page, so it holds while the reader browses.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

LANGUAGES = ("en", "ar")
DEFAULT = "en"
NAMES = {"en": "English", "ar": "العربية"}

STRINGS: dict[str, tuple[str, str]] = {  # key -> (English, Arabic)
    "site": ("Amanah mirror", "مرآة أمانة"),
    "tagline": (
        "Public evidence collections, preserved and verifiable.",
        "مجموعات أدلة عامة، محفوظة وقابلة للتحقق.",
    ),
    "collections": ("Collections", "المجموعات"),
    "no_collections": ("No public collections yet.", "لا توجد مجموعات عامة بعد."),
    "items": ("items", "مادة"),  # used through count_items(), which picks the right form
    "no_items": ("No items yet.", "لا توجد مواد بعد."),
    "newest_first": ("Newest first", "الأحدث أولاً"),
    "search": ("Search", "بحث"),
    "search_label": (
        "Search titles, descriptions and tags",
        "ابحث في العناوين والأوصاف والوسوم",
    ),
    "results": ("Results", "النتائج"),
    "results_for": ("Results for", "نتائج البحث عن"),
    "no_results": ("Nothing found.", "لم يُعثر على شيء."),
    "page": ("Page", "الصفحة"),
    "of": ("of", "من"),
    "next": ("Next", "التالي"),
    "prev": ("Previous", "السابق"),
    "owner": ("Owner", "المالك"),
    "owner_unknown": ("(name not known to this mirror)", "(الاسم غير معروف لهذه المرآة)"),
    "peer_id": ("Peer ID", "معرّف النظير"),
    "public_key": ("Public key (Ed25519, hex)", "المفتاح العام (Ed25519، ست عشري)"),
    "collection": ("Collection", "المجموعة"),
    "feed": ("Atom feed", "موجز Atom"),
    "untitled": ("(untitled)", "(بلا عنوان)"),
    "title_en": ("Title (English)", "العنوان (بالإنجليزية)"),
    "title_ar": ("Title (Arabic)", "العنوان (بالعربية)"),
    "description_en": ("Description (English)", "الوصف (بالإنجليزية)"),
    "description_ar": ("Description (Arabic)", "الوصف (بالعربية)"),
    "source_url": ("Source", "المصدر"),
    "captured_at": ("Captured", "وقت الالتقاط"),
    "ingested_at": ("Added to the archive", "أُضيف إلى الأرشيف"),
    "tags": ("Tags", "الوسوم"),
    "location": ("Location", "الموقع"),
    "coordinates": ("Coordinates", "الإحداثيات"),
    "precision": ("Precision", "الدقة"),
    "extra": ("Other fields", "حقول أخرى"),
    "filename": ("File name", "اسم الملف"),
    "mime": ("Type", "النوع"),
    "size": ("Size", "الحجم"),
    "bytes": ("bytes", "بايت"),
    "sha256": ("SHA-256 of the original", "بصمة SHA-256 للملف الأصلي"),
    "details": ("Details", "التفاصيل"),
    "download": ("Download the original", "تنزيل الملف الأصلي"),
    "preview": ("Preview", "معاينة"),
    "provenance": ("Provenance and signature", "الأصالة والتوقيع"),
    "log_position": ("Position in the owner's signed log", "الموضع في سجل المالك الموقّع"),
    "entry_id": ("Log entry ID", "معرّف قيد السجل"),
    "signature": ("Owner's signature (Ed25519, hex)", "توقيع المالك (Ed25519، ست عشري)"),
    "signed_at": ("Signed at", "وقت التوقيع"),
    "record_sha256": ("SHA-256 of the item record", "بصمة SHA-256 لسجل المادة"),
    "item_id": ("Item ID", "معرّف المادة"),
    "record_file": ("Item record (CBOR)", "سجل المادة (CBOR)"),
    "entry_file": ("Signed log entry (CBOR)", "قيد السجل الموقّع (CBOR)"),
    "json": ("This item as JSON", "هذه المادة بصيغة JSON"),
    "verify": ("Verify this file yourself", "تحقّق من هذا الملف بنفسك"),
    "verify_1": (
        "Download the original and compute its SHA-256. It must equal the SHA-256 above "
        "(on macOS: shasum -a 256; on Windows: certutil -hashfile FILE SHA256).",
        "نزّل الملف الأصلي واحسب بصمته SHA-256. يجب أن تطابق البصمة المذكورة أعلاه "
        "(على macOS: shasum -a 256؛ على Windows: certutil -hashfile FILE SHA256).",
    ),
    "verify_2": (
        "Download the item record and the signed log entry. The record's SHA-256 must equal "
        "the record SHA-256 above; the record names the original's SHA-256 (meta.sha256).",
        "نزّل سجل المادة وقيد السجل الموقّع. يجب أن تطابق بصمة SHA-256 للسجل البصمة المذكورة "
        "أعلاه؛ ويذكر السجل بصمة الملف الأصلي (meta.sha256).",
    ),
    "verify_3": (
        "Check the owner's signature on the log entry, with the key inside the owner's peer "
        "ID, and that the entry names this record and the record this file. This script "
        "(Python 3 with the cbor2 and PyNaCl packages) does all of it and needs nothing from "
        "this mirror:",
        "تحقّق من توقيع المالك على قيد السجل بالمفتاح الموجود داخل معرّف النظير الخاص به، "
        "ومن أن القيد يذكر هذا السجل وأن السجل يذكر هذا الملف. هذا البرنامج (Python 3 مع "
        "حزمتي cbor2 وPyNaCl) يقوم بذلك كله ولا يحتاج شيئاً من هذه المرآة:",
    ),
    "verify_4": (
        "Confirm the owner's peer ID with the owner through another channel. Any Amanah node "
        "that holds the collection re-checks every signature and the whole hash chain with "
        "amanah verify.",
        "تأكّد من معرّف نظير المالك عبر قناة أخرى مع المالك نفسه. وأي عقدة أمانة تحمل هذه "
        "المجموعة تعيد التحقق من كل توقيع ومن سلسلة البصمات كاملة بالأمر amanah verify.",
    ),
    "not_found": ("Not found", "غير موجود"),
    "not_found_text": (
        "There is nothing public at this address.",
        "لا يوجد شيء منشور على هذا العنوان.",
    ),
    "bad_request": ("Bad request", "طلب غير صالح"),
    "bad_page": ("The page number must be a whole number from 1.", "رقم الصفحة عدد صحيح من 1."),
    "bad_query": ("The search text is too long.", "نص البحث طويل جداً."),
    "home": ("All collections", "كل المجموعات"),
    "language": ("Language", "اللغة"),
}


@dataclass(frozen=True)
class Lang:
    code: str
    explicit: bool  # chosen by ?lang=: carried on the page's links

    @property
    def dir(self) -> str:
        return "rtl" if self.code == "ar" else "ltr"

    def t(self, key: str) -> str:
        en, ar = STRINGS[key]
        return ar if self.code == "ar" else en

    def url(self, path: str, **params: object) -> str:
        """A link to `path` that keeps the chosen language."""
        query = {k: v for k, v in params.items() if v is not None}
        if self.explicit:
            query["lang"] = self.code
        return path + ("?" + urlencode(query) if query else "")


def from_accept_language(header: str) -> str | None:
    """The supported language the reader prefers most, by q-value (RFC 9110 12.5.4)."""
    best: tuple[float, int] | None = None
    chosen = None
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        params = params.strip()
        if params.lower().startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        if not 0 < q <= 1:
            continue
        rank = (q, -position)
        if best is None or rank > best:
            best, chosen = rank, primary
    return chosen


def negotiate(request: web.Request) -> Lang:
    asked = request.query.get("lang", "")
    if asked in LANGUAGES:
        return Lang(asked, True)
    found = from_accept_language(request.headers.get("Accept-Language", ""))
    return Lang(found or DEFAULT, False)


def count_noun(code: str, n: int) -> tuple[bool, str]:
    """How to say "n items": (show the number?, the noun). Arabic agrees with the number:
    مادة واحدة (1), مادتان (2), ٣-١٠ مواد, otherwise مادة."""
    if code != "ar":
        return True, "item" if n == 1 else "items"
    if n == 1:
        return False, "مادة واحدة"
    if n == 2:
        return False, "مادتان"
    return True, "مواد" if 3 <= n % 100 <= 10 else "مادة"
