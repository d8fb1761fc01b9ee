"""In-app notifications (the `notifications` collection), recorded from domain events.

A notification's id is derived from the interior and its final status, so a redelivered message (Pub/Sub
delivers at least once) and a re-published one (the job's sweep announces results whose first publish was
lost) insert nothing new: the unique _id makes recording idempotent without a separate ledger.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from lib import db, interiors
from lib.answers import Answer, Timestamp

COLLECTION = db.declare("notifications", [
    IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_created"),
    IndexModel([("user_id", ASCENDING), ("read", ASCENDING)], name="user_read"),
])


def _ids_or_all(schema: dict[str, Any]) -> None:
    """Documented as what it accepts: {ids} or {all: true}, never both (the validator below refuses that)."""
    ids = schema["properties"]["ids"]["anyOf"][0]
    schema.clear()
    schema.update({"description": "Which notifications the person has seen: these ids, or all of them.", "oneOf": [
        {"title": "ReadIds", "type": "object", "required": ["ids"], "additionalProperties": False,
         "properties": {"ids": ids}},
        {"title": "ReadAll", "type": "object", "required": ["all"], "additionalProperties": False,
         "properties": {"all": {"type": "boolean", "const": True}}},
    ]})


class ReadBody(BaseModel):
    """Which notifications the person has seen: these ids, or all of them."""
    model_config = ConfigDict(extra="forbid", json_schema_extra=_ids_or_all)

    ids: list[str] | None = Field(default=None, min_length=1, max_length=100)
    all: StrictBool = False

    @model_validator(mode="after")
    def _one_of(self) -> ReadBody:
        if (self.ids is None) == (not self.all):
            raise ValueError("give either ids or all: true")
        return self


class Notification(Answer):
    id: str
    kind: Literal["interior.finished"]
    interior_id: str | None
    status: str | None = Field(description="The interior's final status: done or failed")
    reason: str | None = Field(description="Why it failed (an interior failure reason), else null")
    message: str | None = Field(description="What to show, in words")
    read: bool
    created_at: Timestamp


class ReadAnswer(Answer):
    updated: int = Field(description="How many notifications this request marked read")
    unread: int = Field(description="How many are still unread")


def record_interior_finished(message_id: str, payload: dict[str, Any]) -> str:
    """'recorded', 'duplicate' or 'ignored' (malformed, or the interior no longer exists)."""
    interior_id, user_id = payload.get("interior_id"), payload.get("user_id")
    status = payload.get("status")
    if not isinstance(interior_id, str) or not isinstance(user_id, str) or status not in ("done", "failed"):
        return "ignored"
    interior = interiors.find_owned(user_id, interior_id, ["style", "room_type"])
    if interior is None:
        return "ignored"
    done = status == "done"
    text = (f"Your {interior.get('style', '')} {interior.get('room_type', '').replace('_', ' ')} is ready."
            if done else "Your design could not be generated; your quota unit was refunded.")
    doc = {
        "_id": hashlib.sha256(f"interior.finished:{interior_id}:{status}".encode()).hexdigest()[:32],
        "message_id": message_id,
        "user_id": user_id, "kind": "interior.finished", "interior_id": interior_id, "status": status,
        "reason": payload.get("reason"), "message": " ".join(text.split()), "read": False,
        "created_at": db.utcnow(),
    }
    try:
        db.collection(COLLECTION).insert_one(doc)
    except DuplicateKeyError:
        return "duplicate"
    return "recorded"


def recent(user_id: str, limit: int = 20) -> list[Notification]:
    docs = db.collection(COLLECTION).find({"user_id": user_id}).sort([("created_at", DESCENDING)]).limit(limit)
    return [
        Notification(id=d["_id"], kind=d["kind"], interior_id=d.get("interior_id"), status=d.get("status"),
                     reason=d.get("reason"), message=d.get("message"), read=d.get("read", False),
                     created_at=d["created_at"])
        for d in docs
    ]


def unread_count(user_id: str) -> int:
    return db.collection(COLLECTION).count_documents({"user_id": user_id, "read": False})


def mark_read(user_id: str, body: ReadBody) -> int:
    """Mark the caller's notifications read (ids that are not theirs are ignored); returns how many changed."""
    query: dict[str, Any] = {"user_id": user_id, "read": False}
    if body.ids is not None:
        query["_id"] = {"$in": body.ids}
    return db.collection(COLLECTION).update_many(query, {"$set": {"read": True}}).modified_count


def delete_all_for_user(user_id: str) -> None:
    db.collection(COLLECTION).delete_many({"user_id": user_id})
