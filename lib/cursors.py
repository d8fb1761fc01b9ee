"""Opaque page cursors: the sort values of a page's last item as base64url JSON, passed back as `cursor`.

Every list answers a cursor it does not recognise the same way: 400 VALIDATION_ERROR on the `cursor` field.
"""

from __future__ import annotations

import base64
import binascii
import json

from lib import errors


def encode(values: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def invalid() -> errors.ValidationFailed:
    return errors.ValidationFailed("The cursor is not valid; start again without it.", details=[
        {"field": "cursor", "message": "not a cursor from a previous page", "type": "value_error"}])


def decode(cursor: str, length: int) -> list[str]:
    """The `length` non-empty strings encoded in `cursor`, or 400 for anything else (forged, stale, truncated)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise invalid() from None
    if not isinstance(values, list) or len(values) != length or not all(isinstance(v, str) and v for v in values):
        raise invalid()
    return values
