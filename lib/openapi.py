"""The OpenAPI 3.1 document for every HTTP function, served by `GET /openapi`.

The table below is the contract the frontend codes against: one row per (function, method) with the pydantic
model that function validates its body or query with, so request schemas come from the same models that
enforce them, and success bodies from lib/openapi_schemas.py. A test checks that the table and functions/ agree
(every HTTP function documented, every method allowed, nothing documented that does not exist), and the fuzz
test checks the running stack's answers against the document.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from lib.openapi_schemas import COMPONENTS, RESPONSES


@dataclass(frozen=True)
class Operation:
    function: str  # folder name in functions/
    method: str
    summary: str
    success: int = 200
    auth: bool = False
    body: str | None = None  # "module:Model" validated from the JSON body
    query: str | None = None  # "module:Model" validated from the query string
    headers: dict[str, str] = field(default_factory=dict)  # optional header -> "module:Model" of one field
    errors: tuple[int, ...] = ()
    description: str = ""
    multipart_file: str | None = None  # a multipart/form-data body with this one file part
    cached: bool = False  # answers carry ETag + Cache-Control and a matching If-None-Match gets 304
    offline: bool = False  # needs no database or other dependency, so it never answers 503


_AUTH_ERRORS = (401,)
_BODY_ERRORS = (400, 413, 415)

OPERATIONS: tuple[Operation, ...] = (
    # accounts
    Operation("auth_signup", "POST", "Create an account", 201, body="lib.accounts:SignupBody",
              errors=(*_BODY_ERRORS, 409), description="Returns {user}. 409 EMAIL_TAKEN."),
    Operation("auth_login", "POST", "Log in (JSON or OAuth2 password form)", body="lib.accounts:LoginBody",
              errors=(*_BODY_ERRORS, 401, 429),
              description="Returns {access_token, refresh_token, token_type, expires_in}. Also accepts "
                          "application/x-www-form-urlencoded with username and password. 429 LOGIN_THROTTLED."),
    Operation("auth_refresh", "POST", "Exchange a refresh token for a new pair", body="lib.auth:RefreshTokenBody",
              errors=(*_BODY_ERRORS, 401),
              description="The presented token is spent; presenting it again revokes its whole family."),
    Operation("auth_logout", "POST", "Sign out the session family of a refresh token", 204,
              body="lib.auth:RefreshTokenBody", errors=_BODY_ERRORS),
    Operation("me", "GET", "The caller's account, usage, saved designs and notifications", auth=True,
              errors=_AUTH_ERRORS),
    Operation("me", "PATCH", "Change name, email or password", auth=True, body="lib.accounts:ProfileUpdate",
              errors=(*_AUTH_ERRORS, *_BODY_ERRORS, 403, 409, 429),
              description="Email and password changes need current_password (403 CURRENT_PASSWORD_REQUIRED; wrong "
                          "ones are throttled: 429 PASSWORD_THROTTLED). A password change returns a fresh token "
                          "pair in `tokens` and signs out every other session."),
    Operation("me", "DELETE", "Delete the account (photos, designs, notifications) and deactivate it", 204,
              auth=True, body="lib.accounts:DeleteAccountBody", errors=(*_AUTH_ERRORS, *_BODY_ERRORS, 403, 429, 503),
              description="Needs current_password (403 CURRENT_PASSWORD_REQUIRED; wrong ones are throttled: 429 "
                          "PASSWORD_THROTTLED). 503 when a deletion fails: nothing is deactivated yet, retry."),
    # uploads
    Operation("uploads_create", "POST", "Start a signed direct upload of a room photo", 201, auth=True,
              body="lib.uploads:CreateBody", errors=(*_AUTH_ERRORS, *_BODY_ERRORS, 429),
              description="Returns {upload, put_url, headers, expires_at}: PUT the bytes to put_url with exactly "
                          "those headers. 413/415 for a size or type we do not accept; 429 UPLOAD_RATE_LIMITED "
                          "over UPLOADS_PER_HOUR new uploads per user."),
    Operation("uploads_direct", "POST", "Upload a photo as multipart `file`, processed synchronously", 201,
              auth=True, errors=(*_AUTH_ERRORS, 400, 413, 415, 422, 429),
              description="429 UPLOAD_RATE_LIMITED over UPLOADS_PER_HOUR new uploads per user.",
              multipart_file="file"),
    Operation("uploads_get", "GET", "An upload's status and, when ready, signed image URLs", auth=True,
              query="lib.uploads:GetQuery", errors=(*_AUTH_ERRORS, 400, 404)),
    # catalog
    Operation("styles_list", "GET", "Styles and room types (or one style with ?name=)",
              query="lib.catalog:StylesQuery", errors=(400, 404), cached=True),
    Operation("products_search", "GET", "Search products by label, size that fits, price and text",
              query="lib.catalog:SearchQuery", errors=(400,), cached=True,
              description="Returns {products, next_cursor}; pass next_cursor back as cursor for the next page."),
    Operation("products_similar", "GET", "Products that look like a product", query="lib.catalog:SimilarQuery",
              errors=(400, 404, 409), cached=True,
              description="409 NOT_EMBEDDED while the product has no vector yet (its import is still running)."),
    Operation("ar_similar_objects", "GET", "3D models for a label with its typical dimensions",
              query="lib.catalog:ArQuery", errors=(400, 404), cached=True),
    Operation("ar_similar_objects", "POST", "3D models for a label with its typical dimensions",
              body="lib.catalog:ArQuery", errors=(*_BODY_ERRORS, 404), cached=True),
    # generation
    Operation("interiors_generate", "POST", "Request a redesign of an uploaded room photo", 202, auth=True,
              body="lib.interiors:GenerateBody", errors=(*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409, 422, 429, 503),
              description="Answers at once with the queued {interior}; poll /interiors-get?id=. An Idempotency-Key "
                          "header makes retries return the same interior (with Idempotent-Replayed: true); the "
                          "same key with a different request is 422 IDEMPOTENCY_KEY_REUSED. 429 QUOTA_EXCEEDED "
                          "with Retry-After.",
              headers={"Idempotency-Key": "lib.interiors:IdempotencyKey"}),
    Operation("interiors_get", "GET", "An interior's status, progress and results", auth=True,
              query="lib.interiors:GetQuery", errors=(*_AUTH_ERRORS, 400, 404)),
    Operation("interiors_list", "GET", "The caller's interiors, newest first", auth=True,
              query="lib.interiors:ListQuery", errors=(*_AUTH_ERRORS, 400),
              description="Returns {interiors, next_cursor}."),
    Operation("interiors_save", "POST", "Save an interior to the library (or unsave it)", auth=True,
              body="lib.interiors:SaveBody", errors=(*_AUTH_ERRORS, *_BODY_ERRORS, 404)),
    Operation("interiors_delete", "DELETE", "Delete an interior and its stored images (?id=)", 204, auth=True,
              query="lib.interiors:GetQuery", errors=(*_AUTH_ERRORS, 400, 404)),
    Operation("interiors_delete", "POST", "Delete an interior and its stored images", 204, auth=True,
              body="lib.interiors:DeleteBody", errors=(*_AUTH_ERRORS, *_BODY_ERRORS, 404)),
    Operation("notifications_read", "POST", "Mark notifications read: {ids: [...]} or {all: true}", auth=True,
              body="lib.notifications:ReadBody", errors=(*_AUTH_ERRORS, *_BODY_ERRORS),
              description="Returns {updated, unread}; ids that are not the caller's are ignored."),
    Operation("openapi", "GET", "This document", cached=True, offline=True),
)

_STATUS_TEXT = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No content", 400: "Bad input (VALIDATION_ERROR, INVALID_JSON)",
    401: "Missing or invalid access token", 403: "Not allowed", 404: "Not found (or not yours)",
    405: "Method not allowed", 409: "Conflict", 413: "Too large", 415: "Unsupported media type",
    422: "Understood but not processable", 429: "Too many requests (see Retry-After)",
    503: "A dependency is unavailable (see Retry-After)",
}

_HEADERS = {
    "ETag": {"description": "Version of this answer; send it back as If-None-Match", "schema": {"type": "string"}},
    "Cache-Control": {"description": "public, max-age=... for catalog answers", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}},
}

_ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "details"], "properties": {
        "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    }}},
}


def url_path(function: str) -> str:
    return "/" + function.replace("_", "-")


def _model(reference: str) -> type[BaseModel]:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON schema, registered under components/schemas; returns a $ref to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": f"{op.function}_{op.method.lower()}", "summary": op.summary}
    if op.description:
        doc["description"] = op.description
    if op.auth:
        doc["security"] = [{"bearer": []}]
    parameters = _query_parameters(_model(op.query)) if op.query else []
    for header, reference in op.headers.items():
        (schema,) = _model(reference).model_json_schema()["properties"].values()
        parameters.append({"name": header, "in": "header", "required": False, "schema": schema})
    if op.cached:
        parameters.append({"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}})
    if parameters:
        doc["parameters"] = parameters
    if op.body:
        doc["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": _schema(_model(op.body), schemas)}}}
    if op.multipart_file:
        doc["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": [op.multipart_file],
            "properties": {op.multipart_file: {"type": "string", "format": "binary"}}}}}}
    success: dict[str, Any] = {"description": _STATUS_TEXT[op.success]}
    if op.success != 204:
        success["content"] = {"application/json": {"schema": RESPONSES[(op.function, op.method)]}}
    responses = {str(op.success): success}
    if op.cached:
        cache_headers = {name: _HEADERS[name] for name in ("ETag", "Cache-Control")}
        success["headers"] = cache_headers
        responses["304"] = {"description": "Not modified: If-None-Match matched the ETag", "headers": cache_headers}
    for status in sorted({*op.errors, 405, *(() if op.offline else (503,))}):
        responses[str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status in (429, 503):
            responses[str(status)]["headers"] = {"Retry-After": _HEADERS["Retry-After"]}
    doc["responses"] = responses
    return doc


def document(server_url: str | None = None) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA, **COMPONENTS}
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(url_path(op.function), {})[op.method.lower()] = _operation(op, schemas)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Zipkku API", "version": "1.0.0",
                 "description": "Every endpoint is its own function; errors use the envelope in "
                                "components/schemas/Error."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
