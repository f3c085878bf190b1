"""The OpenAPI 3.1 description of the public JSON API, served at /api/v1/openapi.json.

The paths listed in CONTRACT are a contract: clients and other mirrors rely on them, and
tests/test_web_api.py checks that every one is described here and answers as described.
"""

from __future__ import annotations

from aiohttp import web

from .catalog import PAGE_SIZE
from .site import json_bytes

CONTRACT = (
    "/api/v1/collections",
    "/api/v1/collections/{id}/items",
    "/api/v1/items/{id}",
    "/api/v1/items/{id}/content",
    "/api/v1/search",
)

_ID = {"type": "string", "pattern": "^(col|itm)_[a-z2-7]{55}$"}
_NOT_FOUND = {
    "description": "Unknown, not public, redacted or malformed id: always this same answer",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_BAD = {
    "description": "A parameter is not acceptable",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _param(name: str, where: str, schema: dict, description: str, required: bool = False) -> dict:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
    }


def _json(ref: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


_PAGE = _param(
    "page",
    "query",
    {"type": "integer", "minimum": 1, "default": 1},
    f"1-based page of {PAGE_SIZE} items, newest (highest log position) first",
)
_COL_ID = _param("id", "path", {**_ID, "pattern": "^col_[a-z2-7]{55}$"}, "Collection id")
_ITEM_ID = _param("id", "path", {**_ID, "pattern": "^itm_[a-z2-7]{55}$"}, "Item id")

_PAGED = {
    "page": {"type": "integer"},
    "page_size": {"type": "integer", "const": PAGE_SIZE},
    "pages": {"type": "integer"},
    "total": {"type": "integer"},
    "links": {
        "type": "object",
        "properties": {
            "prev": {"type": ["string", "null"]},
            "next": {"type": ["string", "null"]},
        },
    },
}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Owner": {
        "type": "object",
        "properties": {
            "peer_id": {"type": "string", "description": "libp2p peer ID (Ed25519) of the owner"},
            "name": {"type": "string", "description": "the owner's name as this mirror knows it"},
            "public_key": {"type": "string", "description": "Ed25519 public key, hex"},
        },
    },
    "Collection": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "owner": {"$ref": "#/components/schemas/Owner"},
            "items": {"type": "integer", "description": "items served"},
            "log_length": {"type": "integer"},
            "head": {"type": "string", "description": "id of the newest log entry (ent_…)"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "links": {"type": "object"},
        },
    },
    "ItemSummary": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "collection": {"type": "string"},
            "position": {"type": "integer", "description": "position in the signed log"},
            "title_en": {"type": ["string", "null"]},
            "title_ar": {"type": ["string", "null"]},
            "filename": {"type": "string"},
            "mime": {"type": "string"},
            "size": {"type": "integer"},
            "sha256": {"type": "string"},
            "captured_at": {"type": ["string", "null"]},
            "signed_at": {"type": "string", "format": "date-time"},
            "links": {"type": "object"},
        },
    },
    "Item": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "collection": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
            },
            "metadata": {
                "type": "object",
                "description": "published metadata only (the allow-list: precise location and "
                "free fields only when the owner listed them in public_fields)",
            },
            "sha256": {"type": "string", "description": "SHA-256 of the original, hex"},
            "size": {"type": "integer"},
            "mime": {"type": "string"},
            "filename": {"type": "string"},
            "owner": {"$ref": "#/components/schemas/Owner"},
            "log": {
                "type": "object",
                "properties": {
                    "collection": {"type": "string"},
                    "position": {"type": "integer"},
                    "entry_id": {"type": "string"},
                    "signature": {"type": "string", "description": "Ed25519, hex"},
                    "signed_at": {"type": "string", "format": "date-time"},
                    "signed_bytes": {"type": "string"},
                },
            },
            "record_sha256": {"type": "string"},
            "verify": {
                "type": "object",
                "description": "the exact steps (and a script) to verify the file independently",
                "properties": {
                    "steps": {"type": "array", "items": {"type": "string"}},
                    "commands": {"type": "object"},
                    "script": {"type": "string"},
                },
            },
            "links": {"type": "object"},
        },
    },
    "ItemPage": {
        "type": "object",
        "properties": {
            "collection": {"$ref": "#/components/schemas/Collection"},
            **_PAGED,
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/ItemSummary"}},
        },
    },
    "SearchResults": {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            **_PAGED,
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/ItemSummary"}},
        },
    },
}

_ETAG = {"ETag": {"schema": {"type": "string"}}}

PATHS = {
    "/api/v1/collections": {
        "get": {
            "summary": "The public collections this mirror serves",
            "responses": {
                "200": {
                    "description": "Collections, most recently updated first",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "collections": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Collection"},
                                    }
                                },
                            }
                        }
                    },
                }
            },
        }
    },
    "/api/v1/collections/{id}": {
        "get": {
            "summary": "One collection",
            "parameters": [_COL_ID],
            "responses": {"200": _json("Collection", "The collection"), "404": _NOT_FOUND},
        }
    },
    "/api/v1/collections/{id}/items": {
        "get": {
            "summary": "A collection's items, paginated, newest first",
            "parameters": [_COL_ID, _PAGE],
            "responses": {
                "200": _json("ItemPage", "One page of items"),
                "400": _BAD,
                "404": _NOT_FOUND,
            },
        }
    },
    "/api/v1/items/{id}": {
        "get": {
            "summary": "An item: published metadata, SHA-256, owner, signature, how to verify",
            "parameters": [_ITEM_ID],
            "responses": {
                "200": {**_json("Item", "The item"), "headers": _ETAG},
                "304": {"description": "If-None-Match matched"},
                "404": _NOT_FOUND,
            },
        }
    },
    "/api/v1/items/{id}/content": {
        "get": {
            "summary": "The original bytes, verified block by block as they are sent",
            "description": "Supports HEAD, If-None-Match (ETag is the item id) and one byte "
            "Range (If-Range honoured). Several ranges or a unit other than bytes are "
            "ignored (200); a malformed or unsatisfiable bytes range answers 416 with "
            "Content-Range: bytes */SIZE. Content-Disposition carries the original file "
            "name (RFC 6266, filename* for non-ASCII). inline=1 previews images, video and "
            "audio in the browser.",
            "parameters": [
                _ITEM_ID,
                _param("inline", "query", {"type": "string", "enum": ["1"]}, "show inline"),
                _param("Range", "header", {"type": "string"}, "bytes=FIRST-LAST, FIRST-, -N"),
            ],
            "responses": {
                "200": {
                    "description": "The whole original",
                    "headers": _ETAG,
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "206": {
                    "description": "The range asked for",
                    "headers": {**_ETAG, "Content-Range": {"schema": {"type": "string"}}},
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "304": {"description": "If-None-Match matched"},
                "404": _NOT_FOUND,
                "416": {
                    "description": "Malformed or unsatisfiable range",
                    "headers": {"Content-Range": {"schema": {"type": "string"}}},
                },
            },
        }
    },
    "/api/v1/items/{id}/record": {
        "get": {
            "summary": "The item record, exactly as signed over (CBOR; its SHA-256 is the item id)",
            "parameters": [_ITEM_ID],
            "responses": {
                "200": {
                    "description": "Deterministic CBOR",
                    "content": {"application/cbor": {"schema": {"type": "string"}}},
                },
                "404": _NOT_FOUND,
            },
        }
    },
    "/api/v1/items/{id}/entry": {
        "get": {
            "summary": "The owner's signed log entry naming the item (CBOR {body, sig})",
            "parameters": [_ITEM_ID],
            "responses": {
                "200": {
                    "description": "Deterministic CBOR",
                    "content": {"application/cbor": {"schema": {"type": "string"}}},
                },
                "404": _NOT_FOUND,
            },
        }
    },
    "/api/v1/search": {
        "get": {
            "summary": "Search titles, descriptions and tags",
            "description": "Arabic normalised (NFC; أ إ آ -> ا; ى -> ي; harakat and tatweel "
            "removed) and case-folded, in the index and the query alike. Every query word "
            "must be a prefix of a word of the item. Results newest first.",
            "parameters": [
                _param("q", "query", {"type": "string", "maxLength": 256}, "search text"),
                _PAGE,
            ],
            "responses": {
                "200": _json("SearchResults", "Matching items"),
                "400": _BAD,
            },
        }
    },
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "Amanah mirror: public API",
        "version": "1",
        "description": "Read-only access to the public collections an Amanah mirror serves. "
        "Every file can be verified independently of this mirror (see Item.verify).",
    },
    "paths": PATHS,
    "components": {"schemas": SCHEMAS},
}
BODY = json_bytes(DOCUMENT)


async def handler(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json", charset="utf-8")
