"""Interiors: a user's generation requests and their results (the `interiors` collection).

Request side (functions): `create` validates the upload, style and room type, takes one unit of quota, stores
the interior `queued` and enqueues the generation job through lib.tasks, named after the interior. Read side:
`view` turns a stored document into the API shape (gs:// references become short-lived signed URLs only here),
`list_for`, `set_saved`, `delete`. The job's side (claiming, progress, results) is lib.generation.

Document: {_id, user_id, upload_id, original_image (gs://), room_type, style, prompt, variants_requested,
strength, status queued|running|done|failed, progress {stage, percent}, reason?, reason_message?,
variants [{index, seed, image (gs://), detected_parts [...]?}], saved, idempotency_key?, quota_period,
attempts, lease_owner?, lease_expires_at?, created_at, updated_at, finished_at?}.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from lib import catalog, cursors, db, errors, quota
from lib.answers import Answer, Timestamp
from lib.config import get_settings
from lib.text import PlainText

log = logging.getLogger("zipkku.interiors")

COLLECTION = "interiors"
MAX_PROMPT = 500
MAX_VARIANTS = 4
ENQUEUE_FAILED = "ENQUEUE_FAILED"


# --- request bodies --------------------------------------------------------------------------------------

class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upload_id: str = Field(min_length=1, max_length=64)
    room_type: str = Field(min_length=1, max_length=64)
    style: str = Field(min_length=1, max_length=64)
    prompt: PlainText = Field(default="", max_length=MAX_PROMPT)
    variants: int = Field(default=1, ge=1, le=MAX_VARIANTS)
    strength: float = Field(default=0.6, ge=0.0, le=1.0)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return value.strip()


class IdempotencyKey(BaseModel):
    key: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")


class GetQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64)


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    saved: bool | None = None
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200)


class SaveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interior_id: str = Field(min_length=1, max_length=64)
    saved: bool = True


class DeleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interior_id: str = Field(min_length=1, max_length=64)


# --- answers ------------------------------------------------------------------------------------------------

# Why an interior failed (tests keep this equal to the codes the providers, the job and `enqueue` use).
FailureReason = Literal[
    "PROVIDER_REJECTED_PROMPT", "PROVIDER_REJECTED_INPUT", "PROVIDER_BILLING", "PROVIDER_AUTH", "PROVIDER_RATE_LIMIT",
    "PROVIDER_UNAVAILABLE", "PROVIDER_TIMEOUT", "PROVIDER_FAILED", "PROVIDER_BAD_RESPONSE", "INVALID_IMAGE",
    "ATTEMPTS_EXHAUSTED", "GENERATION_FAILED", "ENQUEUE_FAILED",
]


class Progress(Answer):
    stage: str = Field(description="queued, then the job's steps (generating, detecting, matching, finishing), "
                                   "then done or failed")
    percent: float = Field(ge=0, le=100, description="0-100")


class Box(Answer):
    """Where a part is in its variant's image, in pixels of that image, from its top-left corner."""
    x: float = Field(description="Left edge in pixels from the image's left")
    y: float = Field(description="Top edge in pixels from the image's top")
    width: float = Field(description="Width in pixels")
    height: float = Field(description="Height in pixels")


class DetectedPart(Answer):
    id: str
    label: str = Field(description="What the detector saw (sofa, bed, ...); products and AR objects share it")
    confidence: float = Field(description="The detector's confidence, 0..1 (1 = certain)")
    box: Box
    products: list[catalog.Product] = Field(description="Matching products, best first, each with `score`")
    ar_objects: list[catalog.ArObject]


class Variant(Answer):
    index: int = Field(description="0-based, in the order generated")
    image_url: str = Field(description="The generated image (a signed, short-lived URL)")
    detected_parts: list[DetectedPart] = Field(description="Empty until the interior is done")


class _InteriorFields(Answer):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    progress: Progress | None
    room_type: str
    style: str
    prompt: str
    variants_requested: int
    strength: float | None = Field(description="How far the design may depart from the photo, 0..1")
    saved: bool
    original_image_url: str | None = Field(description="The uploaded photo (a signed, short-lived URL)")
    created_at: Timestamp
    updated_at: Timestamp | None
    finished_at: Timestamp | None
    timings: dict[str, float] | None = Field(default=None, description=(
        "Only when done: seconds spent per stage of the finishing attempt (diagnostics)"))
    reason: FailureReason | None = Field(default=None, description="Only when failed: why")
    reason_message: str | None = Field(default=None, description="Only when failed: why, in words")


class InteriorSummary(_InteriorFields):
    """An interior in a list (interiors-list, me.recent_saved): no variants, a thumbnail."""
    thumbnail_url: str | None = Field(description="The first variant's image, else the photo (signed, short-lived)")


class Interior(_InteriorFields):
    """An interior with its results (interiors-get, -generate, -save)."""
    variants: list[Variant] = Field(description="The variants stored so far")


class InteriorAnswer(Answer):
    interior: Interior


class InteriorPage(Answer):
    interiors: list[InteriorSummary]
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page; null on the last page")


# --- catalog lookups (the catalog's collections belong to lib.catalog; we only read them) ------------------

def _by_id_or_name(collection: str, value: str) -> dict[str, Any] | None:
    """By id ("living-room"), its snake_case or spaced spelling ("living_room", "Living Room"), or name."""
    words = value.strip().lower().replace("_", " ").replace("-", " ").split()
    ids = [value, "-".join(words), "_".join(words)]
    return db.collection(collection).find_one({"$or": [{"_id": {"$in": ids}}, {"name": value}]})


def resolve_style(style: str, room_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The style and room type documents; 422 when either is unknown or they do not fit each other."""
    style_doc = _by_id_or_name("styles", style)
    if style_doc is None:
        raise errors.Unprocessable(f"Unknown style '{style}'.", code="UNKNOWN_STYLE",
                                   details=[{"field": "style", "message": "no such style", "type": "unknown_style"}])
    room_doc = _by_id_or_name("room_types", room_type)
    if room_doc is None:
        raise errors.Unprocessable(f"Unknown room type '{room_type}'.", code="UNKNOWN_ROOM_TYPE",
                                   details=[{"field": "room_type", "message": "no such room type",
                                             "type": "unknown_room_type"}])
    fits = style_doc.get("room_types")
    if fits and room_doc["_id"] not in fits and room_doc.get("name") not in fits:
        raise errors.Unprocessable(
            f"The style '{style_doc.get('name', style)}' is not offered for a {room_doc.get('name', room_type)}.",
            code="STYLE_ROOM_MISMATCH", details=[{"field": "style", "message": "does not fit the room type",
                                                           "type": "style_room_mismatch"}])
    return style_doc, room_doc


def upload_image_ref(upload: dict[str, Any]) -> str | None:
    """The normalized photo of a ready upload (lib.uploads stores it as a gs:// reference in `image`)."""
    value = upload.get("image")
    return value if isinstance(value, str) and value.startswith("gs://") else None


def ready_upload(user_id: str, upload_id: str) -> dict[str, Any]:
    upload = db.collection("uploads").find_one({"_id": upload_id, "user_id": user_id})
    if upload is None:
        raise errors.NotFound("No such upload.", code="UPLOAD_NOT_FOUND")
    if upload.get("status") != "ready" or upload_image_ref(upload) is None:
        raise errors.Conflict(f"The upload is {upload.get('status', 'not ready')}; generate from a ready upload.",
                              code="UPLOAD_NOT_READY")
    return upload


# --- create ----------------------------------------------------------------------------------------------

def task_id(interior_id: str) -> str:
    return f"interior-{interior_id}"


def create(user: dict[str, Any], body: GenerateBody, idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
    """(interior doc, created?) for a generate request. Same key from the same user -> the same interior."""
    doc, created = store_request(user, body, idempotency_key)
    if created:
        enqueue(doc)
    return doc, created


def store_request(user: dict[str, Any], body: GenerateBody,
                  idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
    """Validate, take a quota unit and store the interior `queued` (not yet enqueued)."""
    user_id = user["_id"]
    interiors = db.collection(COLLECTION)
    fingerprint = _request_fingerprint(body)
    if idempotency_key is not None:
        existing = interiors.find_one({"user_id": user_id, "idempotency_key": idempotency_key})
        if existing is not None:
            return _replayed(existing, fingerprint), False
    upload = ready_upload(user_id, body.upload_id)
    style_doc, room_doc = resolve_style(body.style, body.room_type)
    period = quota.take(user_id)
    now = db.utcnow()
    doc: dict[str, Any] = {
        "_id": db.new_id(), "user_id": user_id, "upload_id": upload["_id"],
        "original_image": upload_image_ref(upload), "room_type": room_doc["_id"],
        "style": style_doc["_id"], "prompt": body.prompt,
        "variants_requested": body.variants, "strength": body.strength, "status": "queued",
        "progress": {"stage": "queued", "percent": 0}, "variants": [], "saved": False, "quota_period": period,
        "attempts": 0, "created_at": now, "updated_at": now,
    }
    if idempotency_key is not None:
        doc["idempotency_key"], doc["request_fingerprint"] = idempotency_key, fingerprint
    try:
        interiors.insert_one(doc)
    except DuplicateKeyError:  # the same key raced us: give the unit back and answer with the winner's
        quota.refund(user_id, period)
        existing = interiors.find_one({"user_id": user_id, "idempotency_key": idempotency_key})
        if existing is None:
            raise errors.Conflict("A request with this Idempotency-Key is in progress.") from None
        return _replayed(existing, fingerprint), False
    except Exception:
        quota.refund(user_id, period)
        raise
    return doc, True


def _request_fingerprint(body: GenerateBody) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


def _replayed(existing: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """The interior an Idempotency-Key already made, if this request is the same one again (a retry); a
    different request under a used key is a client bug, refused rather than silently answered (422)."""
    if existing.get("request_fingerprint", fingerprint) != fingerprint:
        raise errors.Unprocessable("This Idempotency-Key was already used for a different request; use a new key.",
                                   code="IDEMPOTENCY_KEY_REUSED")
    return existing


def enqueue(doc: dict[str, Any]) -> None:
    """Start the generation job for a queued interior; on failure: failed + refunded, then 503."""
    from lib import tasks

    try:
        tasks.enqueue_job(get_settings().generate_job_name, task_id=task_id(doc["_id"]),
                          args=["--interior", doc["_id"]])
    except tasks.TaskExists:
        pass  # already on its way: the queue refused a duplicate, which is the point of naming tasks
    except Exception as exc:  # noqa: BLE001 - whatever the cause, nothing will run it
        log.error("enqueue failed for interior %s: %s", doc["_id"], exc)
        fail(doc["_id"], ENQUEUE_FAILED, "The generation could not be started.", only_status=("queued",))
        raise errors.DependencyUnavailable("The generation could not be started; try again shortly.",
                                           code="ENQUEUE_FAILED") from None


def fail(interior_id: str, reason: str, message: str, *, only_status: tuple[str, ...] = ("queued", "running"),
         lease_owner: str | None = None) -> dict[str, Any] | None:
    """Mark failed with a reason code and refund its quota unit, exactly once (the status guards it)."""
    query: dict[str, Any] = {"_id": interior_id, "status": {"$in": list(only_status)}}
    if lease_owner is not None:
        query["lease_owner"] = lease_owner
    now = db.utcnow()
    failed = db.collection(COLLECTION).find_one_and_update(
        query,
        {"$set": {"status": "failed", "reason": reason, "reason_message": message, "updated_at": now,
                  "finished_at": now, "lease_expires_at": None}},
        return_document=True,
    )
    if failed is not None:
        quota.refund(failed["user_id"], failed.get("quota_period"))
    return failed


# --- read ------------------------------------------------------------------------------------------------

def get_owned(user_id: str, interior_id: str) -> dict[str, Any]:
    doc = db.collection(COLLECTION).find_one({"_id": interior_id, "user_id": user_id})
    if doc is None:
        raise errors.NotFound("No such interior.", code="INTERIOR_NOT_FOUND")
    return doc


def _url(ref: str | None) -> str | None:
    from lib import storage

    return storage.client_url(ref) if ref else None


def _product_view(match: dict[str, Any]) -> catalog.Product:
    if "product" not in match:  # a design generated before products were stored whole (old local data)
        return catalog.Product.model_validate({**match, "image_url": _url(match.get("image_url"))})
    return catalog.public_product(match["product"], match["score"])


def _ar_view(stored: dict[str, Any]) -> catalog.ArObject:
    return catalog.public_ar_object(stored["model"], stored.get("typical"))


def _part_view(part: dict[str, Any]) -> DetectedPart:
    return DetectedPart(
        id=part["id"], label=part["label"], confidence=part["confidence"], box=Box.model_validate(part["box"]),
        products=[_product_view(p) for p in part.get("products", [])],
        ar_objects=[_ar_view(a) for a in part.get("ar_objects", [])],
    )


def _common_fields(doc: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": doc["_id"], "status": doc["status"], "progress": doc.get("progress"),
        "room_type": doc["room_type"], "style": doc["style"], "prompt": doc.get("prompt", ""),
        "variants_requested": doc.get("variants_requested", 1), "strength": doc.get("strength"),
        "saved": bool(doc.get("saved")),
        "original_image_url": _url(doc.get("original_image")), "created_at": doc["created_at"],
        "updated_at": doc.get("updated_at"), "finished_at": doc.get("finished_at"),
    }
    if doc["status"] == "done":
        fields["timings"] = doc.get("timings")  # seconds per stage of the finishing attempt (diagnostics)
    if doc["status"] == "failed":
        fields["reason"] = doc.get("reason")
        fields["reason_message"] = doc.get("reason_message")
    return fields


def _stored_variants(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in doc.get("variants") or [] if v.get("image")]


def view(doc: dict[str, Any]) -> Interior:
    """The API shape of an interior, with its stored variants (and their detected parts once done)."""
    show_parts = doc["status"] == "done"
    variants = [
        Variant(index=v["index"], image_url=_url(v["image"]) or "",
                detected_parts=[_part_view(p) for p in v.get("detected_parts") or []] if show_parts else [])
        for v in _stored_variants(doc)
    ]
    return Interior.model_validate({**_common_fields(doc), "variants": variants})


def summary_view(doc: dict[str, Any]) -> InteriorSummary:
    """An interior in a list: no variants; the first variant's image (else the photo) as thumbnail."""
    fields = _common_fields(doc)
    variants = _stored_variants(doc)
    fields["thumbnail_url"] = _url(variants[0]["image"]) if variants else fields["original_image_url"]
    return InteriorSummary.model_validate(fields)


# --- list with a stable cursor ---------------------------------------------------------------------------

def _encode_cursor(doc: dict[str, Any]) -> str:
    return cursors.encode([doc["created_at"].isoformat(), doc["_id"]])


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    created, last_id = cursors.decode(cursor, 2)
    try:
        created = datetime.fromisoformat(created)
        if created.tzinfo is None:
            raise ValueError("naive")
        # in UTC here, so a forged year-1 or year-9999 value fails now (OverflowError), not inside BSON encoding
        return created.astimezone(UTC), last_id
    except (ValueError, OverflowError):
        raise cursors.invalid() from None


def list_for(user_id: str, query: ListQuery) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; the cursor is (created_at, id) of the last item, so inserts never shift pages."""
    criteria: dict[str, Any] = {"user_id": user_id}
    if query.saved is not None:
        criteria["saved"] = query.saved
    if query.cursor:
        created, last_id = _decode_cursor(query.cursor)
        criteria["$or"] = [{"created_at": {"$lt": created}}, {"created_at": created, "_id": {"$lt": last_id}}]
    docs = list(db.collection(COLLECTION).find(criteria).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
                .limit(query.limit + 1))
    next_cursor = _encode_cursor(docs[query.limit - 1]) if len(docs) > query.limit else None
    return docs[:query.limit], next_cursor


def recent_saved(user_id: str, limit: int = 6) -> list[dict[str, Any]]:
    docs, _ = list_for(user_id, ListQuery(saved=True, limit=limit))
    return docs


# --- manage ----------------------------------------------------------------------------------------------

def set_saved(user_id: str, interior_id: str, saved: bool) -> dict[str, Any]:
    doc = db.collection(COLLECTION).find_one_and_update(
        {"_id": interior_id, "user_id": user_id}, {"$set": {"saved": saved, "updated_at": db.utcnow()}},
        return_document=True,
    )
    if doc is None:
        raise errors.NotFound("No such interior.", code="INTERIOR_NOT_FOUND")
    return doc


def images_prefix(user_id: str, interior_id: str) -> str:
    return f"interiors/{user_id}/{interior_id}/"


def delete(user_id: str, interior_id: str) -> None:
    """Remove the interior and its stored images. A running generation notices (its lease updates stop
    matching) and stops; anything it writes afterwards lands under the deleted prefix and is removed again."""
    from lib import storage

    interiors = db.collection(COLLECTION)
    if interiors.count_documents({"_id": interior_id, "user_id": user_id}, limit=1) == 0:
        raise errors.NotFound("No such interior.", code="INTERIOR_NOT_FOUND")
    # The images go first: when storage fails (503) the design is still listed and the delete can be retried.
    storage.delete_prefix(get_settings().images_bucket, images_prefix(user_id, interior_id))
    doc = interiors.find_one_and_delete({"_id": interior_id, "user_id": user_id})
    if doc is None:
        return  # a concurrent delete finished it
    # Refund only what was never delivered: a running design already shows its stored variants (interiors_get
    # signs them as they arrive), so deleting it after they exist must not give the unit back.
    delivered = any(v.get("image") for v in doc.get("variants") or [])
    if doc["status"] in ("queued", "running") and not delivered:
        quota.refund(user_id, doc.get("quota_period"))


def delete_all_for_user(user_id: str) -> None:
    """A deleted account's designs go with it. Running generations notice (their lease updates stop matching)."""
    from lib import storage

    db.collection(COLLECTION).delete_many({"user_id": user_id})
    storage.delete_prefix(get_settings().images_bucket, f"interiors/{user_id}/")
