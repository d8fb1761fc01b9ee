"""Interiors: a user's generation requests and their results (the `interiors` collection).

Request side (functions): `create` validates the upload, style and room type, takes one unit of quota, stores
the interior `queued` and enqueues the generation job through lib.tasks, named after the interior. Read side:
`view` turns a stored document into the API shape (gs:// references become short-lived signed URLs only here),
`list_for`, `set_saved`, `delete`. The job's side of the state machine (claim, checkpoint, release, finish,
fail_exhausted, announcements) is here too; lib.generation runs the pipeline steps and calls it for every
state change.

Document: `StoredInterior` below (variants -> detected parts -> product matches and AR objects, each a named type).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NotRequired, TypedDict

import pymongo
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from lib import catalog, cursors, db, errors, quota, storage, tasks, throttle, uploads
from lib.answers import Answer, Timestamp
from lib.config import get_settings
from lib.text import PlainText

log = logging.getLogger("zipkku.interiors")

COLLECTION = db.declare("interiors", [
    IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="user_created"),
    IndexModel([("user_id", ASCENDING), ("saved", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
               name="user_saved_created"),
    IndexModel([("status", ASCENDING), ("lease_expires_at", ASCENDING)], name="status_lease"),
    IndexModel([("user_id", ASCENDING), ("idempotency_key", ASCENDING)], unique=True,
               partialFilterExpression={"idempotency_key": {"$type": "string"}}, name="idempotency"),
])
MAX_PROMPT = 500
MAX_VARIANTS = 4
ENQUEUE_FAILED = "ENQUEUE_FAILED"
NOT_STARTED = "The generation could not be started."
# A confirmation applied later than confirm_by - CONFIRM_MARGIN may have reached its request too late (a reply
# takes a moment): it counts as none, so a request that answered 503 never has its interior generated.
CONFIRM_MARGIN = timedelta(milliseconds=500)
ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"


# --- the stored document ---------------------------------------------------------------------------------
# TypedDicts, not pydantic models: pymongo hands back plain dicts and the job updates them in place between
# checkpoints, so a typed view of the same dict costs no conversion on every read and write, and the type
# checker still knows every field. The API shape is `view` (a separate contract).

Status = Literal["queued", "running", "done", "failed"]


class StoredProgress(TypedDict):
    stage: str  # queued, generating, detecting, matching, finishing, done
    percent: int


class StoredBox(TypedDict):
    """Where a part is in its variant's picture, in pixels."""
    x: float
    y: float
    width: float
    height: float


class ProductSnapshot(TypedDict, total=False):
    """The product as it was when the interior was generated: its _id and lib.catalog.PRODUCT_FIELDS (unsigned
    refs); shown through lib.catalog.public_product."""
    _id: str
    label: str
    name: str
    brand: str
    price: float
    currency: str
    product_url: str
    image_urls: list[str]
    dimensions: dict[str, float]
    styles: list[str]


class ProductMatch(TypedDict):
    product: ProductSnapshot
    score: float  # vector similarity to the detected part


class StoredArObject(TypedDict):
    """A 3D model for the part's label (the catalog's ar_models document without timestamps) and the label's
    typical dimensions; shown through lib.catalog.public_ar_object."""
    model: dict[str, Any]
    typical: dict[str, float] | None


class StoredDetectedPart(TypedDict):
    id: str  # "<variant index>-<n>"
    label: str
    confidence: float
    box: StoredBox
    embedding: NotRequired[list[float] | None]  # only until products are matched; removed when done
    products: NotRequired[list[ProductMatch]]
    ar_objects: NotRequired[list[StoredArObject]]


class StoredVariant(TypedDict):
    index: int
    seed: int
    image: str  # gs:// in the images bucket
    generator: str
    width: NotRequired[int]  # pixels of the stored image (boxes are in these); absent on older designs
    height: NotRequired[int]
    detected_parts: NotRequired[list[StoredDetectedPart]]  # absent until detection ran on this variant


class StoredInterior(TypedDict):
    _id: str
    user_id: str
    upload_id: str
    original_image: str  # gs:// (the ready upload's normalized photo)
    room_type: str  # catalog room type id
    style: str  # catalog style id
    prompt: str
    variants_requested: int
    strength: float
    status: Status
    progress: StoredProgress
    variants: list[StoredVariant]
    saved: bool
    quota_period: datetime  # the quota window the unit was taken from (a refund goes back there)
    attempts: int
    created_at: datetime
    updated_at: datetime
    idempotency_key: NotRequired[str]
    request_fingerprint: NotRequired[str]
    # The request confirms its enqueue (confirm_enqueued) before it answers 202; only then may a job generate it.
    enqueue_by: NotRequired[datetime]  # not confirmed by then: the request answered 503 (failed + refunded)
    confirm_by: NotRequired[datetime]  # how long the request waited for its confirmation to be applied
    enqueued_at: NotRequired[datetime]  # the database's own time when it applied the confirmation
    lease_owner: NotRequired[str | None]
    lease_task: NotRequired[str | None]  # the Cloud Run task holding the lease (its retry may take over)
    lease_expires_at: NotRequired[datetime | None]
    last_error: NotRequired[str]  # why the last released attempt failed
    spent_at: NotRequired[datetime]  # a provider call started: the unit is spent (never refunded by a delete)
    reason: NotRequired[str]  # failed: a reason code
    reason_message: NotRequired[str]
    timings: NotRequired[dict[str, float]]  # done: seconds per stage of the finishing attempt
    finished_at: NotRequired[datetime]
    announced_at: NotRequired[datetime | None]  # interior.finished was published


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
    width: int | None = Field(description="The image's width in pixels, the unit of its parts' boxes (null only for "
                                          "designs stored before sizes were recorded)")
    height: int | None = Field(description="The image's height in pixels")
    detected_parts: list[DetectedPart] = Field(description="Empty until the interior is done")


class _InteriorFields(Answer):
    id: str
    upload_id: str = Field(description="The upload whose photo was redesigned")
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


# --- create ----------------------------------------------------------------------------------------------

def task_id(interior_id: str) -> str:
    return f"interior-{interior_id}"


def create(user: dict[str, Any], body: GenerateBody, idempotency_key: str | None,
           address: str | None = None) -> tuple[dict[str, Any], bool]:
    """(interior doc, created?) for a generate request. Same key from the same user -> the same interior.
    `address`: the client's (lib.http.client_address), counted per hour; None for requests not from a client.
    All or nothing for the client: a 202 is generated; after a 503 (database or queue down) the interior, if
    it was stored at all, is failed and refunded by its job or the sweep (confirm_enqueued)."""
    doc, created = store_request(user, body, idempotency_key, address)
    if created:
        enqueue(doc)
        confirm_enqueued(doc)
    return doc, created


SETTLE_WAIT_SECONDS = 2.0  # how long a retry waits for the first request with its key to take its unit


def store_request(user: dict[str, Any], body: GenerateBody, idempotency_key: str | None,
                  address: str | None = None) -> tuple[dict[str, Any], bool]:
    """Validate, take a quota unit and store the interior `queued` (not yet enqueued).

    With an Idempotency-Key the key is settled BEFORE the unit is taken: the interior is written first (its
    unique index holds the key, `quota_period` None), then the unit is taken and recorded. So a retry that
    arrives while the first request runs finds the key and answers as a replay, instead of finding the quota
    used up by that very request (429); if the first request is refused its unit, its interior is removed."""
    user_id = user["_id"]
    interiors = db.collection(COLLECTION)
    fingerprint = _request_fingerprint(body)
    if idempotency_key is not None:
        existing = _settled(user_id, idempotency_key)
        if existing is not None:
            return _replayed(existing, fingerprint), False
    upload = uploads.get_ready(user_id, body.upload_id)
    style_doc, room_doc = catalog.style_for_room(body.style, body.room_type)
    throttle.reserve_generation(address)
    now = db.utcnow()
    doc: dict[str, Any] = {
        "_id": db.new_id(), "user_id": user_id, "upload_id": upload["_id"],
        "original_image": uploads.image_ref(upload), "room_type": room_doc["_id"],
        "style": style_doc["_id"], "prompt": body.prompt,
        "variants_requested": body.variants, "strength": body.strength, "status": "queued",
        "progress": {"stage": "queued", "percent": 0}, "variants": [], "saved": False, "quota_period": None,
        "attempts": 0, "created_at": now, "updated_at": now,
        "enqueue_by": now + timedelta(seconds=get_settings().interior_enqueue_seconds),
    }
    if idempotency_key is None:
        doc["quota_period"] = quota.take(user_id)
        try:
            interiors.insert_one(doc)
        except Exception as exc:
            if not _write_may_have_applied(exc):
                quota.refund(user_id, doc["quota_period"])
            raise
        return doc, True
    doc["idempotency_key"], doc["request_fingerprint"] = idempotency_key, fingerprint
    try:
        interiors.insert_one(doc)
    except DuplicateKeyError:  # the same key raced us: answer with the winner's
        existing = _settled(user_id, idempotency_key)
        if existing is None:
            raise errors.Conflict("A request with this Idempotency-Key is in progress; retry it.") from None
        return _replayed(existing, fingerprint), False
    try:
        period = quota.take(user_id)
    except Exception:
        interiors.delete_one({"_id": doc["_id"], "quota_period": None})
        raise
    try:
        interiors.update_one({"_id": doc["_id"]}, {"$set": {"quota_period": period}})
    except Exception as exc:
        if not _write_may_have_applied(exc):
            quota.refund(user_id, period)
            interiors.delete_one({"_id": doc["_id"], "quota_period": None})
        raise
    doc["quota_period"] = period
    return doc, True


def _write_may_have_applied(exc: Exception) -> bool:
    """A write that timed out or lost its connection may still be applied by the database. Its unit is not
    refunded by the request: if the interior lands, it is unconfirmed, and its job or the sweep fails and
    refunds it (refunding here too would give the unit back twice)."""
    return isinstance(exc, ConnectionFailure) or (isinstance(exc, PyMongoError) and bool(exc.timeout))


def _settled(user_id: str, idempotency_key: str) -> dict[str, Any] | None:
    """The interior made under this key once its unit is taken (a request still taking it is waited for, up to
    SETTLE_WAIT_SECONDS, then 409); None when there is none (or its request was refused its unit)."""
    deadline = time.monotonic() + SETTLE_WAIT_SECONDS
    while True:
        existing = db.collection(COLLECTION).find_one({"user_id": user_id, "idempotency_key": idempotency_key})
        if existing is None or existing.get("quota_period", True) is not None:  # None only while taking it
            return existing
        if time.monotonic() > deadline:
            raise errors.Conflict("A request with this Idempotency-Key is in progress; retry it.")
        time.sleep(0.05)


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
    try:
        # No arguments: the run claims queued interiors from Mongo, so the queue's identity needs only
        # run.jobs.run and a task can ask for nothing but a generation; the task name still dedupes.
        tasks.enqueue_job(get_settings().generate_job_name, task_id=task_id(doc["_id"]))
    except tasks.TaskExists:
        pass  # already on its way: the queue refused a duplicate, which is the point of naming tasks
    except Exception as exc:  # noqa: BLE001 - whatever the cause, nothing will run it
        log.error("enqueue failed for interior %s: %s", doc["_id"], exc)
        fail(doc["_id"], ENQUEUE_FAILED, NOT_STARTED, only_status=("queued",))
        raise errors.DependencyUnavailable("The generation could not be started; try again shortly.",
                                           code="ENQUEUE_FAILED") from None


def confirm_enqueued(doc: dict[str, Any]) -> None:
    """The request's last write: its job is enqueued, so the interior may be generated. The database stamps
    its own clock (enqueued_at) next to the moment this request stops waiting for the reply (confirm_by). If
    the database applies it too late (after a pause, the request having answered 503 meanwhile), the stamp
    says so and the job fails and refunds the interior instead of generating it."""
    now = db.utcnow()
    confirm_by = min(doc["enqueue_by"], now + timedelta(milliseconds=get_settings().mongodb_timeout_ms))
    wait = (confirm_by - now).total_seconds()
    if wait <= CONFIRM_MARGIN.total_seconds():  # enqueueing took all the time there was: nothing to confirm
        raise errors.DependencyUnavailable("The generation could not be started; try again shortly.",
                                           code=ENQUEUE_FAILED)
    with pymongo.timeout(wait):
        db.collection(COLLECTION).update_one(
            {"_id": doc["_id"], "status": "queued"},
            {"$set": {"confirm_by": confirm_by}, "$currentDate": {"enqueued_at": True}})


def _confirmed_in_time(doc: dict[str, Any]) -> bool:
    if "enqueue_by" not in doc:
        return True  # stored before requests confirmed their enqueue
    at, by = doc.get("enqueued_at"), doc.get("confirm_by")
    return at is not None and by is not None and at <= by - CONFIRM_MARGIN


def seconds_to_confirm(interior_id: str) -> float:
    """How long its request may still confirm the enqueue (0 when it is confirmed or its time is over): a task
    can start the job before the request's confirmation is written."""
    doc = db.collection(COLLECTION).find_one(
        {"_id": interior_id, "status": "queued", "enqueue_by": {"$exists": True}, "enqueued_at": {"$exists": False}},
        {"enqueue_by": 1})
    if doc is None:
        return 0.0
    return max(0.0, (doc["enqueue_by"] + CONFIRM_MARGIN - db.utcnow()).total_seconds())


def fail_unconfirmed(interior_id: str) -> StoredInterior | None:
    """An interior whose request never confirmed its enqueue (so it answered 503): failed + refunded."""
    return fail(interior_id, ENQUEUE_FAILED, NOT_STARTED, only_status=("queued",), where={
        "enqueued_at": {"$exists": False}, "enqueue_by": {"$lt": db.utcnow() - CONFIRM_MARGIN}})


def fail(interior_id: str, reason: str, message: str, *, only_status: tuple[str, ...] = ("queued", "running"),
         lease_owner: str | None = None, where: dict[str, Any] | None = None) -> StoredInterior | None:
    """Mark failed with a reason code and refund its quota unit unless it is spent, exactly once (the status
    guards it)."""
    query: dict[str, Any] = {"_id": interior_id, "status": {"$in": list(only_status)}, **(where or {})}
    if lease_owner is not None:
        query["lease_owner"] = lease_owner
    now = db.utcnow()
    failed = db.collection(COLLECTION).find_one_and_update(
        query,
        {"$set": {"status": "failed", "reason": reason, "reason_message": message, "updated_at": now,
                  "finished_at": now, "lease_expires_at": None}},
        return_document=True,
    )
    if failed is not None and not spent(failed):
        quota.refund(failed["user_id"], failed.get("quota_period"))
    return failed


def spent(doc: StoredInterior) -> bool:
    """Is the interior's generation unit spent: may a provider have done paid work for it? Recorded before every
    provider call (provider_call_starting) and taken back only when the provider refused that call outright
    (provider_call_refused). A variant stored by an older job without spent_at also counts (it was delivered).
    A failed or deleted interior is refunded only when not spent."""
    return bool(doc.get("spent_at") or any(v.get("image") for v in doc.get("variants") or []))


# --- the job's side: leases, progress, outcome ---------------------------------------------------------------
# queued (stored) -> confirmed by its request (enqueued_at) | failed unconfirmed (fail_unconfirmed, refunded)
# queued -> running (claim: a lease for one owner, one attempt counted) -> checkpoints (progress, lease renewed,
# only while the lease is held) -> done (finish) | failed (fail, refunded unless spent) | queued again (release). After
# JOB_MAX_ATTEMPTS an unheld interior is failed (fail_exhausted). Finished ones are announced (announced_at).

class LeaseLost(Exception):
    """Someone else holds the interior now (or it was deleted): stop without writing."""


def _unheld(now: datetime) -> list[dict[str, Any]]:
    """Nobody works on it: queued, or running under an expired lease."""
    return [{"status": "queued"}, {"status": "running", "lease_expires_at": {"$lte": now}}]


def claim(interior_id: str, owner: str, task: str | None = None) -> StoredInterior | None:
    """queued and confirmed by its request (or running under an expired lease, or `task`'s own crashed
    attempt's) -> running, leased to owner. `task` is the Cloud Run task identity: a retry of a crashed attempt
    carries the same one. A confirmation its request no longer waited for fails the interior (refunded)."""
    settings = get_settings()
    now = db.utcnow()
    claimable: list[dict[str, Any]] = [
        {"status": "queued", "enqueued_at": {"$exists": True}},
        {"status": "queued", "enqueue_by": {"$exists": False}},
        {"status": "running", "lease_expires_at": {"$lte": now}},
    ]
    if task:
        claimable.append({"status": "running", "lease_task": task})
    claimed = db.collection(COLLECTION).find_one_and_update(
        {"_id": interior_id, "attempts": {"$lt": settings.job_max_attempts}, "$or": claimable},
        {"$set": {"status": "running", "lease_owner": owner, "lease_task": task,
                  "lease_expires_at": now + timedelta(seconds=settings.job_lease_seconds), "updated_at": now},
         "$inc": {"attempts": 1}},
        return_document=True,
    )
    if claimed is not None and not _confirmed_in_time(claimed):
        log.warning("interior %s: its request had given up before the enqueue was confirmed", interior_id)
        fail(interior_id, ENQUEUE_FAILED, NOT_STARTED, lease_owner=owner)
        return None
    return claimed


def claimable_ids() -> list[str]:
    """Interiors nobody works on, oldest first."""
    docs = db.collection(COLLECTION).find({"$or": _unheld(db.utcnow())}, {"_id": 1}).sort("created_at", 1)
    return [d["_id"] for d in docs]


def fail_exhausted(interior_id: str) -> StoredInterior | None:
    """An interior whose attempts are used up and that nobody holds any more: failed + refunded."""
    settings = get_settings()
    doc = db.collection(COLLECTION).find_one(
        {"_id": interior_id, "attempts": {"$gte": settings.job_max_attempts}, "$or": _unheld(db.utcnow())})
    if doc is None:
        return None
    return fail(interior_id, doc.get("last_error") or ATTEMPTS_EXHAUSTED,
                f"The generation failed after {doc['attempts']} attempts.", lease_owner=doc.get("lease_owner"))


def checkpoint(doc: StoredInterior, owner: str, changes: dict[str, Any]) -> None:
    """Persist `changes` and renew the lease, only while we hold it."""
    now = db.utcnow()
    changes = {**changes, "updated_at": now,
               "lease_expires_at": now + timedelta(seconds=get_settings().job_lease_seconds)}
    result = db.collection(COLLECTION).update_one(
        {"_id": doc["_id"], "status": "running", "lease_owner": owner}, {"$set": changes})
    if not result.matched_count:
        raise LeaseLost(doc["_id"])
    doc.update(changes)  # type: ignore[typeddict-item]


def provider_call_starting(doc: StoredInterior, owner: str, progress: StoredProgress) -> bool:
    """Record, before the job calls the (paid) provider, that the interior's unit is spent: a delete or a
    failure from now on gives nothing back. A checkpoint, so it raises LeaseLost for an interior that was deleted
    or is no longer this owner's lease, and the provider is then never called for it. True when this call is
    the one that marked it (only such a mark may be taken back: provider_call_refused)."""
    changes: dict[str, Any] = {"progress": progress}
    marks = not doc.get("spent_at")
    if marks:
        changes["spent_at"] = db.utcnow()
    checkpoint(doc, owner, changes)
    return marks


def provider_call_refused(doc: StoredInterior, owner: str) -> None:
    """The provider refused the call that marked the unit spent before doing any work (an error answer to the
    create: nothing ran, nothing is billed): the unit is not spent after all, so a failure refunds it. Only
    while the lease is held (LeaseLost otherwise: a delete that saw the mark kept the unit, and that stands)."""
    result = db.collection(COLLECTION).update_one(
        {"_id": doc["_id"], "status": "running", "lease_owner": owner}, {"$unset": {"spent_at": ""}})
    if not result.matched_count:
        raise LeaseLost(doc["_id"])
    doc.pop("spent_at", None)


def release(doc: StoredInterior, owner: str, reason: str) -> None:
    """Give the interior back to the queue for another attempt (remembering why this one failed)."""
    db.collection(COLLECTION).update_one(
        {"_id": doc["_id"], "status": "running", "lease_owner": owner},
        {"$set": {"status": "queued", "lease_owner": None, "lease_task": None, "lease_expires_at": None,
                  "last_error": reason, "updated_at": db.utcnow()}})


def finish(doc: StoredInterior, owner: str, timings: dict[str, float]) -> StoredInterior:
    """Mark done, keeping this attempt's seconds per stage (a resumed attempt reports only its own work)."""
    for variant in doc["variants"]:
        for part in variant.get("detected_parts") or []:
            part.pop("embedding", None)  # served parts do not need their vectors; keep documents small
    now = db.utcnow()
    done = db.collection(COLLECTION).find_one_and_update(
        {"_id": doc["_id"], "status": "running", "lease_owner": owner},
        {"$set": {"variants": doc["variants"], "progress": {"stage": "done", "percent": 100}, "timings": timings,
                  "status": "done", "finished_at": now, "lease_expires_at": None, "updated_at": now}},
        return_document=True)
    if done is None:
        raise LeaseLost(doc["_id"])
    return done


def exists(interior_id: str) -> bool:
    return db.collection(COLLECTION).count_documents({"_id": interior_id}, limit=1) > 0


def mark_announced(interior_id: str) -> None:
    """interior.finished was published for it."""
    db.collection(COLLECTION).update_one({"_id": interior_id}, {"$set": {"announced_at": db.utcnow()}})


def unannounced(finished_before: datetime) -> list[StoredInterior]:
    """Finished interiors whose interior.finished was never published ({_id, user_id, status, reason})."""
    return list(db.collection(COLLECTION).find(
        {"status": {"$in": ["done", "failed"]}, "announced_at": None, "finished_at": {"$lte": finished_before},
         "reason": {"$ne": ENQUEUE_FAILED}},  # that user got a 503 at once: nothing to announce
        {"_id": 1, "user_id": 1, "status": 1, "reason": 1}))


# --- read ------------------------------------------------------------------------------------------------

def find_owned(user_id: str, interior_id: str, fields: list[str] | None = None) -> dict[str, Any] | None:
    """The user's interior (only `fields` of it, when given), or None."""
    return db.collection(COLLECTION).find_one({"_id": interior_id, "user_id": user_id}, fields)


def get_owned(user_id: str, interior_id: str) -> dict[str, Any]:
    doc = find_owned(user_id, interior_id)
    if doc is None:
        raise errors.NotFound("No such interior.", code="INTERIOR_NOT_FOUND")
    return doc


def _url(ref: str | None) -> str | None:
    return storage.client_url(ref) if ref else None


def _product_view(match: dict[str, Any]) -> catalog.Product:
    if "product" not in match:  # a design generated before products were stored whole (old local data)
        return catalog.Product.model_validate({**match, "image_url": _url(match.get("image_url"))})
    return catalog.public_product(match["product"], match["score"])


def _part_view(part: dict[str, Any]) -> DetectedPart:
    matches = part.get("products", [])
    # AR models are shown at the size of the part's best-matching product (the first), so what the person
    # places in their room measures what they would buy
    best = matches[0].get("product", matches[0]) if matches else None
    return DetectedPart(
        id=part["id"], label=part["label"], confidence=part["confidence"], box=Box.model_validate(part["box"]),
        products=[_product_view(p) for p in matches],
        ar_objects=[catalog.public_ar_object(a["model"], a.get("typical"), best) for a in part.get("ar_objects", [])],
    )


def _common_fields(doc: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": doc["_id"], "upload_id": doc["upload_id"], "status": doc["status"], "progress": doc.get("progress"),
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
        Variant(index=v["index"], image_url=_url(v["image"]) or "", width=v.get("width"), height=v.get("height"),
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
    created_text, last_id = cursors.decode(cursor, 2)
    try:
        created = datetime.fromisoformat(created_text)
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
    """Remove the interior and its stored images; its unit comes back only if no provider call had started. A
    running generation notices at its next step (its lease updates stop matching) and stops; anything it wrote
    meanwhile lands under the deleted prefix and is removed again."""
    interiors = db.collection(COLLECTION)
    if interiors.count_documents({"_id": interior_id, "user_id": user_id}, limit=1) == 0:
        raise errors.NotFound("No such interior.", code="INTERIOR_NOT_FOUND")
    # The images go first: when storage fails (503) the design is still listed and the delete can be retried.
    storage.delete_prefix(get_settings().images_bucket, images_prefix(user_id, interior_id))
    doc = interiors.find_one_and_delete({"_id": interior_id, "user_id": user_id})
    if doc is None:
        return  # a concurrent delete finished it
    # Refund only work that never reached a provider. The job records spent_at before its first provider call
    # (provider_call_starting), and that write and this delete are each atomic: either the delete saw spent_at
    # (no refund; the call may go on and is paid for), or the job's write finds no interior and it never calls.
    if doc["status"] in ("queued", "running") and not spent(doc):
        quota.refund(user_id, doc.get("quota_period"))


def delete_all_for_user(user_id: str) -> None:
    """A deleted account's designs go with it. Running generations notice (their lease updates stop matching)."""
    db.collection(COLLECTION).delete_many({"user_id": user_id})
    storage.delete_prefix(get_settings().images_bucket, f"interiors/{user_id}/")
