"""The OpenAPI 3.1 document of every HTTP function, generated from what the functions declare.

Each `functions/<name>/main.py` declares its methods on `@http_function` (lib.http.Operation): the pydantic
models that validate its body and query, the model of its answer, its status, auth, errors and headers. This
module turns those declarations (the `.contract` the decorator attaches; the openapi function collects them,
lib never loads a function) into the document, so the models that validate requests and build answers are the
contract: nothing here restates a shape.
tests/test_fuzz.py checks the running stack's answers against the document, and tests/test_contract.py checks
what typed clients generate from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from lib import discovery
from lib.errors import ErrorEnvelope
from lib.http import Contract, Operation

REF = "#/components/schemas/{model}"

TAGS = {
    "accounts": "Sign-up, login, tokens and the caller's account",
    "uploads": "Room photos: signed direct uploads and their processing",
    "catalog": "Styles, room types, products and AR models (public, cacheable)",
    "interiors": "AI redesigns of a room photo and the caller's library",
    "notifications": "In-app notifications",
    "meta": "This document, as JSON and as a web page",
}

_STATUS_TEXT = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No content",
    400: "Bad input: VALIDATION_ERROR (one `details` entry per invalid field) or INVALID_JSON",
    401: "Missing, invalid or expired access token (log in or refresh)", 403: "Not allowed",
    404: "Not found (or not yours)", 405: "Method not allowed (see Allow)", 409: "Conflict",
    413: "Too large", 415: "Unsupported media type", 422: "Understood but not processable",
    429: "Too many requests (see Retry-After)", 503: "A dependency is unavailable; retry after Retry-After seconds",
}

RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {"description": "Version of this answer; send it back as If-None-Match to get 304 when unchanged",
             "schema": {"type": "string"}},
    "Cache-Control": {"description": "public, max-age=SECONDS for catalog answers; private, no-store for a "
                                     "person's data", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer", "minimum": 1}},
    "Idempotent-Replayed": {"description": "`true` when this answer replays the interior an earlier request with "
                                           "the same Idempotency-Key created (nothing new was charged)",
                            "schema": {"type": "string", "enum": ["true"]}},
}

LOCAL_SERVER = "http://127.0.0.1:8080"


class OpenApiInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    title: str
    version: str


class OpenApiDocument(BaseModel):
    """GET /openapi: this document (OpenAPI 3.1; see https://spec.openapis.org/oas/v3.1.0)."""
    model_config = ConfigDict(extra="allow")
    openapi: str = Field(pattern=r"^3\.1\.\d+$")
    info: OpenApiInfo
    paths: dict[str, dict[str, Any]] = Field(description="URL path -> method -> operation")
    components: dict[str, dict[str, Any]] = Field(description="schemas and securitySchemes")


# --- what the functions declare --------------------------------------------------------------------------

# --- schemas ---------------------------------------------------------------------------------------------

class _Schemas:
    """components/schemas, filled as operations refer to models (requests in validation mode, answers in
    serialization mode)."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, kind: Any, mode: str) -> dict[str, Any]:
        schema = TypeAdapter(kind).json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        for name, definition in schema.pop("$defs", {}).items():
            self._register(name, definition, mode)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            self._register(kind.__name__, schema, mode)
            return {"$ref": REF.format(model=kind.__name__)}
        return schema

    def _register(self, name: str, definition: dict[str, Any], mode: str) -> None:
        definition = _properties_without_defaults(definition, note=mode == "validation")
        existing = self.schemas.setdefault(name, definition)
        if existing != definition:
            raise ValueError(f"two different models are both named {name}; rename one")


def _properties_without_defaults(schema: dict[str, Any], *, note: bool) -> dict[str, Any]:
    """A model's schema as typed clients should read it. A property with a default is one a client may leave
    out of a request (and one an answer may leave out), but openapi-typescript (default options) makes every
    property with a `default` required. So `default` goes: into the description and `x-default` for requests
    (`note`), and away for answers, where it only meant "absent". Property titles (pydantic's "Upload Id")
    say nothing the name does not."""
    properties = schema.get("properties")
    if not properties:
        return schema
    out = {**schema, "properties": {}}
    for name, prop in properties.items():
        prop = {k: v for k, v in prop.items() if k not in ("default", "title")}
        if note and "default" in schema["properties"][name]:
            prop["x-default"] = schema["properties"][name]["default"]
            text = "Optional." if prop["x-default"] is None else f"Optional; default {json.dumps(prop['x-default'])}."
            prop["description"] = f"{prop['description']} {text}" if prop.get("description") else text
        out["properties"][name] = prop
    return out


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent, never null: `X | None` becomes X."""
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        extra = {k: v for k, v in schema.items() if k not in ("anyOf", "default") or (k == "default" and v is not None)}
        return {**rest[0], **extra} if len(rest) == 1 else {**extra, "anyOf": rest}
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null({k: v for k, v in prop.items() if k != "title"})
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


# --- operations ------------------------------------------------------------------------------------------

def _error_statuses(op: Operation, auth: bool) -> dict[int, str]:
    statuses: dict[int, str] = {405: _STATUS_TEXT[405]}
    if op.body is not None or op.query is not None or op.multipart_file:
        statuses[400] = _STATUS_TEXT[400]
    if op.body is not None or op.multipart_file:
        statuses[413], statuses[415] = _STATUS_TEXT[413], _STATUS_TEXT[415]
    if auth:
        statuses[401] = _STATUS_TEXT[401]
    if not op.offline:
        statuses[503] = _STATUS_TEXT[503]
    for error in op.errors:
        status, text = error if isinstance(error, tuple) else (error, _STATUS_TEXT[error])
        statuses[status] = text
    return dict(sorted(statuses.items()))


def _operation(function: str, method: str, op: Operation, contract: Contract, schemas: _Schemas) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": f"{function}_{method.lower()}", "summary": op.summary,
                           "tags": list(contract.tags)}
    if op.description:
        doc["description"] = op.description
    doc["security"] = [{"bearer": []}] if contract.auth else []
    parameters = _query_parameters(op.query) if op.query is not None else []
    for header, model in op.headers.items():
        ((field_name, field_schema),) = model.model_json_schema()["properties"].items()
        parameters.append({"name": header, "in": "header", "required": False,
                           "schema": {k: v for k, v in field_schema.items() if k != "title"}})
    if op.cached:
        parameters.append({"name": "If-None-Match", "in": "header", "required": False,
                           "description": "An ETag of an earlier answer: 304 without a body when unchanged",
                           "schema": {"type": "string"}})
    if parameters:
        doc["parameters"] = parameters
    content: dict[str, Any] = {}
    if op.body is not None:
        content["application/json"] = {"schema": schemas.add(op.body, "validation")}
    if op.form is not None:
        content["application/x-www-form-urlencoded"] = {"schema": schemas.add(op.form, "validation")}
    if op.multipart_file:
        content["multipart/form-data"] = {"schema": {
            "type": "object", "required": [op.multipart_file],
            "properties": {op.multipart_file: {"type": "string", "format": "binary"}}}}
    if content:
        doc["requestBody"] = {"required": True, "content": content}

    success: dict[str, Any] = {"description": _STATUS_TEXT[op.status]}
    if op.response is not None:
        success["content"] = {op.media_type: {"schema": schemas.add(op.response, "serialization")}}
    headers = {name: RESPONSE_HEADERS[name] for name in op.response_headers}
    if op.cached:
        headers.update({name: RESPONSE_HEADERS[name] for name in ("ETag", "Cache-Control")})
    if headers:
        success["headers"] = headers
    responses: dict[str, Any] = {str(op.status): success}
    if op.cached:
        responses["304"] = {"description": "Not modified: If-None-Match matched the ETag",
                            "headers": {name: RESPONSE_HEADERS[name] for name in ("ETag", "Cache-Control")}}
    for status, text in _error_statuses(op, contract.auth).items():
        responses[str(status)] = {"description": text,
                                  "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}}
        if status in (429, 503):
            responses[str(status)]["headers"] = {"Retry-After": RESPONSE_HEADERS["Retry-After"]}
    doc["responses"] = responses
    return doc


def document(contracts: Mapping[str, Contract], server_url: str | None = None) -> dict[str, Any]:
    """The document for these functions (name -> declared contract); `server_url` replaces the local server."""
    schemas = _Schemas()
    schemas.add(ErrorEnvelope, "serialization")
    schemas.schemas["Error"] = schemas.schemas.pop("ErrorEnvelope")
    paths: dict[str, Any] = {}
    for function, contract in sorted(contracts.items()):
        for method, op in sorted(contract.operations.items()):
            operation = _operation(function, method, op, contract, schemas)
            paths.setdefault(discovery.url_path(function), {})[method.lower()] = operation
    used_tags = {tag for ops in paths.values() for op in ops.values() for tag in op["tags"]}
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "Zipkku API", "version": "1.0.0",
            "description": "Every endpoint is its own function at /<function-name>; in production the base URL is "
                           "the `api_base_url` output of terraform (the load balancer). Errors use the envelope in "
                           "components/schemas/Error. Times are RFC 3339 in UTC; sizes of furniture are in "
                           "centimeters, of images in pixels.",
            "license": {"name": "Proprietary", "identifier": "LicenseRef-Proprietary"},
        },
        "servers": [{"url": LOCAL_SERVER, "description": "The local stack started by `make run` (PORT=... picks "
                                                         "another port)"}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items() if name in used_tags],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                           "description": "The access_token of /auth-login or /auth-refresh"}},
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
