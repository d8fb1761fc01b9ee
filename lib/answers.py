"""What every answer model shares: the base class and the one way a timestamp is written.

Answer shapes are pydantic models in the module that owns each concept (accounts.User, catalog.Product,
interiors.Interior, ...); their builders construct them, lib.http serialises them, and lib.openapi documents
them, so the model is the answer's shape. An optional field a builder does not set is left out of the answer
(not sent as null); a field it sets to None is sent as null.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema


def iso_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a `Z`, e.g. 2026-11-30T23:05:01.123Z: one format in every answer,
    whether the time was read back from MongoDB (which keeps milliseconds) or just computed (microseconds)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"

Timestamp = Annotated[
    datetime,
    PlainSerializer(iso_timestamp, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN,
                    "description": "RFC 3339 in UTC with milliseconds, e.g. 2026-11-30T23:05:01.123Z"}),
]


class Answer(BaseModel):
    """A JSON answer (or a part of one). Unknown fields are refused, so a builder cannot drift from its model."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)
