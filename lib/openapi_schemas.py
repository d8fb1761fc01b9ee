"""The shapes of successful answers, as JSON schemas for the OpenAPI document (lib.openapi).

They describe what the view functions return (accounts.public_user, uploads.public_upload, catalog.public_*,
interiors.view, ...). tests/test_fuzz.py has schemathesis check every answer of the running stack against them,
so a change to a view that is not made here too fails the suite.
"""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with these required and optional properties; more properties may be added later."""
    return {"type": "object", "required": sorted(required), "properties": {**required, **(optional or {})}}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
URL = {"type": "string", "minLength": 1}
NULLABLE_URL = {"type": ["string", "null"]}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
NUMBER = {"type": "number"}
XYZ = _object({"x": NUMBER, "y": NUMBER, "z": NUMBER})
DIMENSIONS = {"type": "object", "properties": {"width_cm": NUMBER, "depth_cm": NUMBER, "height_cm": NUMBER}}

# Why an upload was rejected / an interior failed (tests/test_openapi.py keeps these equal to the codes in lib).
UPLOAD_REJECTION_REASONS = ["empty", "corrupt", "truncated", "not_an_image", "too_large", "too_many_pixels",
                            "decoded_too_large", "too_small", "too_narrow", "content_type_mismatch", "not_received"]
INTERIOR_FAILURE_REASONS = ["PROVIDER_REJECTED_PROMPT", "PROVIDER_REJECTED_INPUT", "PROVIDER_BILLING", "PROVIDER_AUTH",
                            "PROVIDER_RATE_LIMIT", "PROVIDER_UNAVAILABLE", "PROVIDER_TIMEOUT", "PROVIDER_FAILED",
                            "PROVIDER_BAD_RESPONSE", "INVALID_IMAGE", "ATTEMPTS_EXHAUSTED", "GENERATION_FAILED",
                            "ENQUEUE_FAILED"]

_INTERIOR_REQUIRED = {"id": STRING, "status": {"enum": ["queued", "running", "done", "failed"]}, "room_type": STRING,
                      "style": STRING, "prompt": STRING, "saved": {"type": "boolean"}, "created_at": TIME}
_INTERIOR_OPTIONAL = {
    "progress": {"type": ["object", "null"], "properties": {"stage": STRING, "percent": NUMBER}},
    "variants_requested": {"type": "integer"}, "strength": {"type": ["number", "null"]},
    "original_image_url": NULLABLE_URL, "updated_at": NULLABLE_TIME, "finished_at": NULLABLE_TIME,
    "reason": {"enum": [*INTERIOR_FAILURE_REASONS, None]}, "reason_message": NULLABLE_STRING,
    "timings": {"type": ["object", "null"]},
}

COMPONENTS: dict[str, dict[str, Any]] = {
    "User": _object({"id": STRING, "email": STRING, "name": STRING, "created_at": TIME}),
    "TokenPair": _object({"access_token": STRING, "refresh_token": STRING, "token_type": {"const": "bearer"},
                          "expires_in": {"type": "integer"}}),
    "Upload": _object(
        {"id": STRING, "status": {"enum": ["pending", "ready", "rejected"]}},
        {"content_type": NULLABLE_STRING, "size_bytes": {"type": ["integer", "null"]}, "created_at": NULLABLE_TIME,
         "updated_at": NULLABLE_TIME, "reason": {"enum": [*UPLOAD_REJECTION_REASONS, None]},
         "reason_message": NULLABLE_STRING, "image_url": NULLABLE_URL, "thumbnail_url": NULLABLE_URL,
         "width": {"type": ["integer", "null"]}, "height": {"type": ["integer", "null"]}}),
    "Style": _object({"id": STRING, "name": STRING, "room_types": _array(STRING)},
                     {"description": STRING, "image_url": NULLABLE_URL, "palette": {"type": "array"}}),
    "RoomType": _object({"id": STRING, "name": STRING}),
    # one shape wherever a product appears (search, similar, an interior's detected parts); score when ranked
    "Product": _object(
        {"id": STRING, "name": STRING, "label": STRING, "brand": STRING, "price": {"type": ["number", "null"]},
         "currency": STRING, "product_url": NULLABLE_URL, "image_url": NULLABLE_URL, "image_urls": _array(URL),
         "dimensions": DIMENSIONS, "styles": _array(STRING)},
        {"score": NUMBER}),
    "ArObject": _object(
        {"id": STRING, "label": STRING, "model_url": URL, "position": XYZ, "rotation": XYZ, "scale": XYZ,
         "width": NUMBER, "depth": NUMBER, "height": NUMBER},
        {"name": STRING, "image_url": NULLABLE_URL, "model_dimensions": DIMENSIONS}),
    "DetectedPart": _object(
        {"id": STRING, "label": STRING, "confidence": NUMBER,
         "box": _object({"x": NUMBER, "y": NUMBER, "width": NUMBER, "height": NUMBER}),
         "products": _array(_ref("Product")), "ar_objects": _array(_ref("ArObject"))}),
    # interiors-get; lists (interiors-list, me.recent_saved) answer InteriorSummary: no variants, a thumbnail
    "Interior": _object(_INTERIOR_REQUIRED, {**_INTERIOR_OPTIONAL, "variants": _array(_object(
        {"index": {"type": "integer"}, "image_url": URL, "detected_parts": _array(_ref("DetectedPart"))}))}),
    "InteriorSummary": _object(_INTERIOR_REQUIRED, {**_INTERIOR_OPTIONAL, "thumbnail_url": NULLABLE_URL}),
    "Notification": _object(
        {"id": STRING, "kind": STRING, "read": {"type": "boolean"}, "created_at": TIME},
        {"interior_id": NULLABLE_STRING, "status": NULLABLE_STRING, "reason": NULLABLE_STRING,
         "message": NULLABLE_STRING}),
}

PAGE_CURSOR = {"next_cursor": NULLABLE_STRING}

# (function, method) -> the schema of its success body. Operations answering 204 have none.
RESPONSES: dict[tuple[str, str], dict[str, Any]] = {
    ("auth_signup", "POST"): _object({"user": _ref("User")}),
    ("auth_login", "POST"): _ref("TokenPair"),
    ("auth_refresh", "POST"): _ref("TokenPair"),
    ("me", "GET"): _object({"user": _ref("User"),
                            "usage": _object({"used": {"type": "integer"}, "limit": {"type": "integer"},
                                              "resets_at": NULLABLE_TIME}),
                            "recent_saved": _array(_ref("InteriorSummary")),
                            "notifications": _array(_ref("Notification")),
                            "unread_notifications": {"type": "integer"}}),
    ("me", "PATCH"): _object({"user": _ref("User")}, {"tokens": _ref("TokenPair")}),
    ("uploads_create", "POST"): _object({"upload": _ref("Upload"), "put_url": URL,
                                         "headers": {"type": "object", "additionalProperties": STRING},
                                         "expires_at": TIME}),
    ("uploads_direct", "POST"): _object({"upload": _ref("Upload")}),
    ("uploads_get", "GET"): _object({"upload": _ref("Upload")}),
    ("styles_list", "GET"): {"oneOf": [_object({"styles": _array(_ref("Style")),
                                                "room_types": _array(_ref("RoomType"))}),
                                       _object({"style": _ref("Style")})]},
    ("products_search", "GET"): _object({"products": _array(_ref("Product")), **PAGE_CURSOR}),
    ("products_similar", "GET"): _object({"products": _array(_ref("Product"))}, {"product_id": STRING}),
    ("ar_similar_objects", "GET"): _object({"objects": _array(_ref("ArObject"))}, {"label": STRING}),
    ("ar_similar_objects", "POST"): _object({"objects": _array(_ref("ArObject"))}, {"label": STRING}),
    ("interiors_generate", "POST"): _object({"interior": _ref("Interior")}),
    ("interiors_get", "GET"): _object({"interior": _ref("Interior")}),
    ("interiors_list", "GET"): _object({"interiors": _array(_ref("InteriorSummary")), **PAGE_CURSOR}),
    ("interiors_save", "POST"): _object({"interior": _ref("Interior")}),
    ("notifications_read", "POST"): _object({"updated": {"type": "integer"}, "unread": {"type": "integer"}}),
    ("openapi", "GET"): _object({"openapi": STRING, "paths": {"type": "object"}}),
}
