"""Photo uploads: the `uploads` collection, signed direct uploads and processing of finalized objects.

Flow: `create_pending` stores an upload `pending` and hands out a signed PUT URL for
`gs://<uploads bucket>/raw/<user_id>/<upload_id>`; the browser PUTs the photo; Cloud Storage announces the
finalized object (Eventarc -> on_upload_finalized) and `handle_finalized` checks and normalizes it into the
images bucket and marks the upload `ready` (or `rejected` with a reason). `create_direct` runs the same
processing synchronously on a multipart body.

Object names carry only our ids, never a user's file name. Outputs go to another bucket and prefix, so
processing never triggers itself. Processing is idempotent on the object generation: a claim (with a lease,
so a crashed attempt is retried) lets exactly one delivery of a generation do the work, outputs are written
with if_generation_match=0 under names that include the generation, and a redelivered event is a no-op.
Only the first object of an upload is processed: the signed PUT is single use (x-goog-if-generation-match: 0),
and should another generation of the raw object appear anyway, it changes nothing and is never downloaded.

Document: {_id, user_id, status: pending|ready|rejected, reason?, reason_message?, content_type, size_bytes,
source: signed|direct, raw?, put_expires_at?, image?, thumbnail?, width?, height?, generation_processed?,
claim_generation?, claim_expires_at?, created_at, updated_at}. Refs are gs:// strings; URLs are signed only in
public_upload.
"""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pymongo import ASCENDING, DESCENDING, IndexModel

from lib import db, errors, images, storage, throttle
from lib.answers import Answer, Timestamp
from lib.config import get_settings

log = logging.getLogger("zipkku.uploads")

COLLECTION = db.declare("uploads", [
    IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_created"),
])
CLAIM_LEASE = timedelta(seconds=120)  # a processing attempt that dies releases its claim after this
# A PUT that started just before its signed URL expired may still be arriving this long after.
ARRIVAL_GRACE = timedelta(minutes=15)
_ID = re.compile(r"^[0-9a-f]{32}$")

# Direct uploads cannot be undone by the user; these are the HTTP answers for each rejection reason.
_DIRECT_ERRORS: dict[str, type[errors.ApiError]] = {
    "empty": errors.BadRequest,
    "too_large": errors.PayloadTooLarge,
    "not_an_image": errors.UnsupportedMediaType,
    "content_type_mismatch": errors.UnsupportedMediaType,
}


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content_type: StrictStr = Field(min_length=1, max_length=100)
    size_bytes: StrictInt = Field(ge=1)


class GetQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)


# Why an upload was rejected (tests keep this equal to the codes lib.images and this module use).
RejectionReason = Literal["empty", "corrupt", "truncated", "not_an_image", "too_large", "too_many_pixels",
                          "decoded_too_large", "too_small", "too_narrow", "content_type_mismatch", "not_received"]


class Upload(Answer):
    id: str
    status: Literal["pending", "ready", "rejected"]
    content_type: str | None
    size_bytes: int | None = Field(description="The size in bytes the client declared (signed) or sent (direct)")
    created_at: Timestamp | None
    updated_at: Timestamp | None
    reason: RejectionReason | None = Field(default=None, description="Only when rejected: why")
    reason_message: str | None = Field(default=None, description="Only when rejected: why, in words")
    image_url: str | None = Field(default=None, description=(
        "Only when ready: the normalized photo (sRGB JPEG, long edge <= 2048 px; a signed, short-lived URL)"))
    thumbnail_url: str | None = Field(default=None, description="Only when ready: a thumbnail (signed, short-lived)")
    width: int | None = Field(default=None, description="Only when ready: the normalized photo's width in pixels")
    height: int | None = Field(default=None, description="Only when ready: its height in pixels")


class UploadAnswer(Answer):
    upload: Upload


class PendingUpload(Answer):
    """A new signed upload: PUT the photo to `put_url` with exactly `headers`."""
    upload: Upload
    put_url: str = Field(description="A V4 signed URL for one PUT of the photo")
    headers: dict[str, str] = Field(description="Send exactly these headers with the PUT (the signature binds them)")
    expires_at: Timestamp = Field(description="When put_url stops working")


def _collection():
    return db.collection(COLLECTION)


def _raw_name(user_id: str, upload_id: str) -> str:
    return f"{get_settings().raw_uploads_prefix}{user_id}/{upload_id}"


def _output_names(user_id: str, upload_id: str, version: str) -> tuple[str, str]:
    base = f"uploads/{user_id}/{upload_id}/{version}"
    return f"{base}/image.jpg", f"{base}/thumbnail.jpg"


def normalize_content_type(value: str) -> str:
    """'Image/JPEG; charset=x' -> 'image/jpeg'; 415 (listing what we accept) for anything else."""
    content_type = value.split(";", 1)[0].strip().lower()
    if content_type not in images.ACCEPTED_TYPES:
        raise errors.UnsupportedMediaType(
            f"Content type {content_type or '(none)'!r} is not accepted; "
            f"use one of {', '.join(images.ACCEPTED_TYPES)}.",
            details=[{"field": "content_type", "message": "unsupported image type", "type": "unsupported"}],
        )
    return content_type


def _check_size(size_bytes: int) -> None:
    limit = get_settings().max_upload_bytes
    if size_bytes > limit:
        raise errors.PayloadTooLarge(
            f"The photo is {size_bytes} bytes; the limit is {limit} bytes.",
            details=[{"field": "size_bytes", "message": f"at most {limit}", "type": "too_large"}],
        )


# --- reading ------------------------------------------------------------------------------------------------

def get_for_user(user_id: str, upload_id: str) -> dict[str, Any]:
    """The caller's upload; 404 for an unknown id and for someone else's (no difference is revealed)."""
    if not isinstance(upload_id, str) or not _ID.match(upload_id):
        raise errors.NotFound("No such upload.", code="UPLOAD_NOT_FOUND")
    doc = _collection().find_one({"_id": upload_id, "user_id": user_id})
    if doc is None:
        raise errors.NotFound("No such upload.", code="UPLOAD_NOT_FOUND")
    return _settle_if_never_received(doc)


def image_ref(upload: dict[str, Any]) -> str | None:
    """The normalized photo of a ready upload (a gs:// reference in `image`)."""
    value = upload.get("image")
    return value if isinstance(value, str) and value.startswith("gs://") else None


def get_ready(user_id: str, upload_id: str) -> dict[str, Any]:
    """The caller's upload to generate from: 404 when unknown or someone else's, 409 until it is ready."""
    upload = _collection().find_one({"_id": upload_id, "user_id": user_id})
    if upload is None:
        raise errors.NotFound("No such upload.", code="UPLOAD_NOT_FOUND")
    if upload.get("status") != "ready" or image_ref(upload) is None:
        raise errors.Conflict(f"The upload is {upload.get('status', 'not ready')}; generate from a ready upload.",
                              code="UPLOAD_NOT_READY")
    return upload


def arrived_object(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The raw object a signed upload's photo was PUT to (its Cloud Storage resource), or None if none arrived."""
    if not isinstance(doc.get("raw"), str):
        return None
    bucket_name, raw_name = storage.parse_ref(doc["raw"])
    blob = storage.bucket(bucket_name).get_blob(raw_name)
    return dict(blob._properties) if blob is not None else None  # as the JSON API (and an event) carries it


def _settle_if_never_received(doc: dict[str, Any]) -> dict[str, Any]:
    """A signed upload still pending after its PUT window (plus grace) with no object in the bucket can never
    become ready: answer `rejected` (`not_received`) so a client stops polling, instead of `pending` forever.
    An object that did arrive keeps the upload pending: its event is only late."""
    put_expires_at = doc.get("put_expires_at")
    if doc["status"] != "pending" or put_expires_at is None or db.utcnow() < put_expires_at + ARRIVAL_GRACE:
        return doc
    if arrived_object(doc) is not None:
        return doc
    _collection().update_one({"_id": doc["_id"], "status": "pending"}, {"$set": {
        "status": "rejected", "reason": "not_received", "updated_at": db.utcnow(),
        "reason_message": "No photo arrived before the upload link expired; create a new upload."}})
    return _collection().find_one({"_id": doc["_id"]}) or doc


def public_upload(doc: dict[str, Any]) -> Upload:
    """What a client sees: status, the reason if rejected, signed URLs of the normalized image when ready."""
    reply: dict[str, Any] = {
        "id": doc["_id"], "status": doc["status"], "content_type": doc.get("content_type"),
        "size_bytes": doc.get("size_bytes"), "created_at": doc.get("created_at"), "updated_at": doc.get("updated_at"),
    }
    if doc["status"] == "rejected":
        reply["reason"] = doc.get("reason")
        reply["reason_message"] = doc.get("reason_message")
    if doc["status"] == "ready":
        reply.update({
            "image_url": storage.client_url(doc.get("image")),
            "thumbnail_url": storage.client_url(doc.get("thumbnail")),
            "width": doc.get("width"), "height": doc.get("height"),
        })
    return Upload.model_validate(reply)


# --- signed uploads -----------------------------------------------------------------------------------------

def create_pending(user_id: str, body: CreateBody, address: str | None = None) -> PendingUpload:
    """A pending upload and the signed PUT the browser uses: {upload, put_url, headers, expires_at}. `address`:
    the client's (lib.http.client_address), counted per hour; None for requests that are not a client's."""
    content_type = normalize_content_type(body.content_type)
    _check_size(body.size_bytes)
    throttle.reserve_upload(user_id, address)  # after the checks: a refused request does not count
    settings = get_settings()
    upload_id, now = db.new_id(), db.utcnow()
    raw = _raw_name(user_id, upload_id)
    # The signature binds the content type and caps the body at the declared size.
    put_url, headers = storage.signed_put_url(settings.uploads_bucket, raw, content_type, body.size_bytes)
    expires_at = storage.signed_put_expiry()
    doc = {
        "_id": upload_id, "user_id": user_id, "status": "pending", "source": "signed",
        "content_type": content_type, "size_bytes": body.size_bytes,
        "raw": storage.ref(settings.uploads_bucket, raw), "put_expires_at": expires_at,
        "created_at": now, "updated_at": now,
    }
    _collection().insert_one(doc)
    return PendingUpload(upload=public_upload(doc), put_url=put_url, headers=headers, expires_at=expires_at)


def _parse_raw_name(name: str) -> tuple[str, str] | None:
    prefix = get_settings().raw_uploads_prefix
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix):].split("/")
    if len(parts) != 2 or not all(_ID.match(p) for p in parts):
        return None
    return parts[0], parts[1]


def handle_finalized(data: dict[str, Any]) -> str:
    """Process one finalized-object event (Cloud Storage object JSON). Returns what happened: ignored,
    unknown, duplicate, stale, ready or rejected. Bad input never raises (a raise makes Eventarc retry);
    only a dependency outage does, after releasing the claim so the retry can run."""
    settings = get_settings()
    bucket, name = data.get("bucket"), data.get("name")
    if bucket != settings.uploads_bucket or not isinstance(name, str):
        return "ignored"
    ids = _parse_raw_name(name)
    if ids is None:
        return "ignored"  # not an upload of ours (e.g. someone else's object, or a malformed name)
    try:
        generation, size = int(data["generation"]), int(data.get("size", -1))
    except (KeyError, TypeError, ValueError):
        log.warning("finalized event without a usable generation for %s", name)
        return "ignored"
    user_id, upload_id = ids
    uploads = _collection()
    now = db.utcnow()
    # Only the first object of an upload is processed (upload links are single use): once a generation is
    # processed, or while one holds a live claim, any other generation changes nothing and is not even read.
    claimed = uploads.find_one_and_update(
        {"_id": upload_id, "user_id": user_id, "generation_processed": {"$exists": False},
         "$or": [{"claim_generation": {"$exists": False}}, {"claim_expires_at": {"$lt": now}}]},
        {"$set": {"claim_generation": generation, "claim_expires_at": now + CLAIM_LEASE}},
    )
    if claimed is None:
        if uploads.count_documents({"_id": upload_id, "user_id": user_id}, limit=1):
            return "duplicate"
        # Nobody expects this photo: its account was deleted after the upload link was handed out. Keeping it
        # would leave a deleted person's photo behind, so it goes too.
        _delete_object(bucket, name, generation)
        return "unknown"
    try:
        return _process_claimed(claimed, bucket, name, generation, size)
    except Exception:
        _release_claim(upload_id, generation)
        raise


def _delete_object(bucket: str, name: str, generation: int) -> None:
    from google.api_core.exceptions import NotFound  # google-api-core loads grpc: only on first use

    with contextlib.suppress(NotFound):
        storage.bucket(bucket).blob(name, generation=generation).delete()


def _release_claim(upload_id: str, generation: int) -> None:
    """Let the next delivery of `generation` process it at once (not only after the lease)."""
    _collection().update_one({"_id": upload_id, "claim_generation": generation},
                             {"$unset": {"claim_generation": "", "claim_expires_at": ""}})


def _process_claimed(doc: dict[str, Any], bucket: str, name: str, generation: int, size: int) -> str:
    from google.api_core.exceptions import NotFound  # google-api-core loads grpc: only on first use

    settings = get_settings()
    limit = min(settings.max_upload_bytes, doc.get("size_bytes") or settings.max_upload_bytes)
    if size == 0:
        return _reject(doc, generation, images.ImageRejected("empty", "The file is empty."))
    if size > limit:
        return _reject(doc, generation, images.ImageRejected(
            "too_large", f"The file is {size} bytes; at most {limit} bytes were allowed for this upload."))
    try:
        data = storage.download_bytes(bucket, name, generation=generation)
    except NotFound:
        # Overwritten or deleted since: the newer generation brings its own event.
        _release_claim(doc["_id"], generation)
        return "stale"
    try:
        sniffed = images.sniff(data)
        if sniffed is not None and sniffed != doc["content_type"]:
            raise images.ImageRejected(
                "content_type_mismatch",
                f"The file is {sniffed} but the upload was declared as {doc['content_type']}.")
        result = images.normalize_with_settings(data, max_bytes=limit)
    except images.ImageRejected as rejection:
        return _reject(doc, generation, rejection)
    image_ref, thumbnail_ref = _store_outputs(doc, f"g{generation}", result)
    _collection().update_one(
        {"_id": doc["_id"], "claim_generation": generation},
        {"$set": {"status": "ready", "image": image_ref, "thumbnail": thumbnail_ref, "width": result.width,
                  "height": result.height, "generation_processed": generation, "updated_at": db.utcnow()},
         "$unset": {"reason": "", "reason_message": "", "claim_generation": "", "claim_expires_at": ""}},
    )
    log.info("upload %s ready (%dx%d from %s)", doc["_id"], result.width, result.height, result.source_type)
    return "ready"


def _store_outputs(doc: dict[str, Any], version: str, result: images.NormalizedImage) -> tuple[str, str]:
    """Write the normalized image and thumbnail once: an object already there is from an earlier attempt of
    the same version (same input, same bytes), so a PreconditionFailed is success."""
    from google.api_core.exceptions import PreconditionFailed  # google-api-core loads grpc: only on first use

    bucket = get_settings().images_bucket
    image_name, thumbnail_name = _output_names(doc["user_id"], doc["_id"], version)
    for object_name, data in ((image_name, result.jpeg), (thumbnail_name, result.thumbnail)):
        with contextlib.suppress(PreconditionFailed):
            storage.upload_bytes(bucket, object_name, data, images.OUTPUT_TYPE, if_generation_match=0)
    return storage.ref(bucket, image_name), storage.ref(bucket, thumbnail_name)


def _reject(doc: dict[str, Any], generation: int, rejection: images.ImageRejected) -> str:
    _collection().update_one(
        {"_id": doc["_id"], "claim_generation": generation},
        {"$set": {"status": "rejected", "reason": rejection.code, "reason_message": rejection.message,
                  "generation_processed": generation, "updated_at": db.utcnow()},
         "$unset": {"image": "", "thumbnail": "", "width": "", "height": "", "claim_generation": "",
                    "claim_expires_at": ""}},
    )
    log.info("upload %s rejected: %s", doc["_id"], rejection.code)
    return "rejected"


# --- direct (multipart) uploads -----------------------------------------------------------------------------

def create_direct(user_id: str, data: bytes, declared_type: str | None, address: str | None = None) -> dict[str, Any]:
    """Process a photo sent in the request body, synchronously; the upload is `ready` when this returns.
    Refused photos are answered with the reason (nothing is stored); the raw bytes are never kept."""
    _check_size(len(data))
    throttle.reserve_upload(user_id, address)  # before the processing it protects: a refused photo costs the same
    declared = (declared_type or "").split(";", 1)[0].strip().lower()
    try:
        sniffed = images.sniff(data)
        if declared in images.ACCEPTED_TYPES and sniffed is not None and sniffed != declared:
            raise images.ImageRejected(
                "content_type_mismatch", f"The file is {sniffed} but was sent as {declared}.")
        result = images.normalize_with_settings(data)
    except images.ImageRejected as rejection:
        error = _DIRECT_ERRORS.get(rejection.code, errors.Unprocessable)
        raise error(rejection.message, code=None if error is not errors.Unprocessable else "IMAGE_REJECTED",
                    details=[{"field": "file", "message": rejection.message, "type": rejection.code}]) from None
    upload_id, now = db.new_id(), db.utcnow()
    doc: dict[str, Any] = {
        "_id": upload_id, "user_id": user_id, "status": "ready", "source": "direct",
        "content_type": result.source_type, "size_bytes": len(data), "created_at": now, "updated_at": now,
    }
    image_ref, thumbnail_ref = _store_outputs(doc, "direct", result)
    doc.update({"image": image_ref, "thumbnail": thumbnail_ref, "width": result.width, "height": result.height})
    _collection().insert_one(doc)
    log.info("direct upload %s ready (%dx%d from %s)", upload_id, result.width, result.height, result.source_type)
    return doc


def delete_all_for_user(user_id: str) -> None:
    """A deleted account's photos go with it: raw objects, normalized images, thumbnails and documents."""
    settings = get_settings()
    storage.delete_prefix(settings.uploads_bucket, _raw_name(user_id, ""))
    storage.delete_prefix(settings.images_bucket, f"uploads/{user_id}/")
    _collection().delete_many({"user_id": user_id})
