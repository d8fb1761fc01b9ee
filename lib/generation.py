"""The generation pipeline run by the `generate_interior` job, with leases so nothing is lost or done twice.

Claiming: one atomic find-and-modify moves an interior queued -> running with a lease (owner token, expiry)
and counts the attempt. A duplicate task or a second execution finds it running under a live lease and leaves
it alone; a crashed run's lease expires and the next run claims it again; after JOB_MAX_ATTEMPTS it is
failed (and refunded). A retry of the same Cloud Run task (same execution and task index) may take over its
own crashed attempt's lease at once.

Steps, each persisted with progress {stage, percent} and a lease renewal (a checkpoint only succeeds while
we still hold the lease, so a run that lost it stops instead of overwriting):
  generating 5-60%   one variant at a time: generate -> store in the images bucket -> record it. A resumed run
                     skips every variant already stored, so a retry never pays the provider twice.
  detecting 60-80%   furniture in each variant (recorded per variant, also skipped on resume)
  matching 85%       ONE batched vector query for every detected part of the interior (filtered by label),
                     products enriched from the catalog
  finishing 95%      AR models for each part's label
  done 100%          then `interior.finished` is published (also after a failure)

Failures: a ProviderError that may pass (rate limit, outage, timeout) or any unexpected error releases the
interior for another attempt; a permanent one (billing, rejected prompt, invalid image) fails it at once with
its reason code. Either failure refunds the quota unit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from lib import db, interiors
from lib.config import get_settings
from lib.providers import GenerationRequest, ProviderError

log = logging.getLogger("zipkku.generation")

COLLECTION = interiors.COLLECTION
ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"
GENERATION_FAILED = "GENERATION_FAILED"


class LeaseLost(Exception):
    """Someone else holds the interior now (or it was deleted): stop without writing."""


class Retry(Exception):
    """This attempt failed in a way another attempt may not."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


# --- who we are, sharding --------------------------------------------------------------------------------

def task_identity() -> str | None:
    """'execution/task-index' of a Cloud Run task (None outside Cloud Run jobs): a retry of a crashed attempt
    carries the same identity and may take over its lease."""
    execution = os.environ.get("CLOUD_RUN_EXECUTION")
    return f"{execution}/{os.environ.get('CLOUD_RUN_TASK_INDEX', '0')}" if execution else None


def shard() -> tuple[int, int]:
    count = max(1, int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1") or 1))
    index = int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0") or 0)
    return index % count, count


def in_shard(interior_id: str, index: int, count: int) -> bool:
    return int(hashlib.sha256(interior_id.encode()).hexdigest()[:8], 16) % count == index


def seed_for(interior_id: str, index: int) -> int:
    """Deterministic per interior and variant: a resumed run asks for exactly the same image."""
    return (int(hashlib.sha256(interior_id.encode()).hexdigest()[:7], 16) + index) % 2**31


# --- leases ----------------------------------------------------------------------------------------------

def _unheld(now: datetime) -> list[dict[str, Any]]:
    """Nobody works on it: queued, or running under an expired lease."""
    return [{"status": "queued"}, {"status": "running", "lease_expires_at": {"$lte": now}}]


def claim(interior_id: str, owner: str) -> dict[str, Any] | None:
    """queued (or running under an expired lease, or our own crashed attempt's) -> running, leased to owner."""
    settings = get_settings()
    now = db.utcnow()
    claimable = _unheld(now)
    identity = task_identity()
    if identity:
        claimable.append({"status": "running", "lease_task": identity})
    return db.collection(COLLECTION).find_one_and_update(
        {"_id": interior_id, "attempts": {"$lt": settings.job_max_attempts}, "$or": claimable},
        {"$set": {"status": "running", "lease_owner": owner, "lease_task": identity,
                  "lease_expires_at": now + timedelta(seconds=settings.job_lease_seconds), "updated_at": now},
         "$inc": {"attempts": 1}},
        return_document=True,
    )


def fail_exhausted(interior_id: str) -> dict[str, Any] | None:
    """An interior whose attempts are used up and that nobody holds any more: failed + refunded."""
    settings = get_settings()
    doc = db.collection(COLLECTION).find_one(
        {"_id": interior_id, "attempts": {"$gte": settings.job_max_attempts}, "$or": _unheld(db.utcnow())})
    if doc is None:
        return None
    return fail_and_announce(interior_id, doc.get("last_error") or ATTEMPTS_EXHAUSTED,
                             f"The generation failed after {doc['attempts']} attempts.", doc.get("lease_owner"))


def fail_and_announce(interior_id: str, reason: str, message: str, lease_owner: str | None) -> dict[str, Any] | None:
    """failed + refunded (lib.interiors.fail, guarded by the lease), then interior.finished and the outcome log."""
    failed = interiors.fail(interior_id, reason, message, lease_owner=lease_owner)
    if failed is not None:
        publish_finished(failed)
        log.warning("interior %s failed: %s", interior_id, reason)  # the outcome metric reads this line
    return failed


def checkpoint(doc: dict[str, Any], owner: str, changes: dict[str, Any]) -> None:
    """Persist `changes` and renew the lease, only while we hold it."""
    now = db.utcnow()
    changes = {**changes, "updated_at": now,
               "lease_expires_at": now + timedelta(seconds=get_settings().job_lease_seconds)}
    result = db.collection(COLLECTION).update_one(
        {"_id": doc["_id"], "status": "running", "lease_owner": owner}, {"$set": changes})
    if not result.matched_count:
        raise LeaseLost(doc["_id"])
    doc.update(changes)


def release(doc: dict[str, Any], owner: str, error: Retry) -> None:
    """Give the interior back to the queue for another attempt (remembering why this one failed)."""
    db.collection(COLLECTION).update_one(
        {"_id": doc["_id"], "status": "running", "lease_owner": owner},
        {"$set": {"status": "queued", "lease_owner": None, "lease_task": None, "lease_expires_at": None,
                  "last_error": error.reason, "updated_at": db.utcnow()}})


# --- the steps -------------------------------------------------------------------------------------------

def _download(ref: str) -> bytes:
    from lib import storage

    return storage.download_bytes(*storage.parse_ref(ref))


def _style_image(style: dict[str, Any]) -> bytes | None:
    """The style's reference picture (lib.catalog keeps it as a gs:// `image_url`), if it can be read."""
    value = style.get("image_url")
    if not (isinstance(value, str) and value.startswith("gs://")):
        return None
    try:
        return _download(value)
    except Exception:  # noqa: BLE001 - a missing reference picture degrades, it does not fail
        log.warning("style picture %s unavailable", value)
        return None


def _generation_request(doc: dict[str, Any]) -> GenerationRequest:
    from lib import storage

    generator = get_settings().generator
    style = db.collection("styles").find_one({"_id": doc["style"]}) or {}
    return GenerationRequest(
        image=_download(doc["original_image"]), room_type=doc["room_type"], style=style.get("name", doc["style"]),
        prompt=doc.get("prompt", ""), strength=doc.get("strength", 0.6),
        image_url=storage.client_url(doc["original_image"]) if generator == "replicate" else None,
        style_image=_style_image(style) if generator == "local" else None,
        style_description=style.get("description", "") or "",
    )


def generate_variants(doc: dict[str, Any], owner: str, images: dict[int, bytes]) -> None:
    """Generate and store the missing variants; their bytes go to `images` (by index) for detect_parts."""
    from lib import providers, storage

    settings = get_settings()
    wanted = doc.get("variants_requested", 1)
    variants = {v["index"]: v for v in doc.get("variants") or [] if v.get("image")}
    missing = [i for i in range(wanted) if i not in variants]
    if not missing:
        return
    request = _generation_request(doc)
    generator = providers.generator()
    # each checkpoint renews the lease before the next (long) provider call
    checkpoint(doc, owner, {"progress": {"stage": "generating", "percent": 5 + int(55 * len(variants) / wanted)}})
    for i in missing:
        seed = seed_for(doc["_id"], i)
        image = images[i] = generator.generate(request, seed)
        name = f"{interiors.images_prefix(doc['user_id'], doc['_id'])}variant-{i}.jpg"
        storage.upload_bytes(settings.images_bucket, name, image, "image/jpeg")
        variants[i] = {"index": i, "seed": seed, "image": storage.ref(settings.images_bucket, name),
                       "generator": generator.name}
        checkpoint(doc, owner, {"variants": [variants[k] for k in sorted(variants)],
                                "progress": {"stage": "generating", "percent": 5 + int(55 * len(variants) / wanted)}})


def detect_parts(doc: dict[str, Any], owner: str, images: dict[int, bytes]) -> None:
    """Furniture in each variant; a variant generated by this attempt is in `images`, else it is downloaded."""
    from lib import providers

    detector = providers.detector()
    variants = doc["variants"]
    for n, variant in enumerate(variants):
        if variant.get("detected_parts") is not None:
            continue
        image = images.get(variant["index"])
        found = detector.detect(image if image is not None else _download(variant["image"]))
        variant["detected_parts"] = [
            {"id": f"{variant['index']}-{k}", "label": d.label, "confidence": round(d.confidence, 4),
             "box": {"x": d.bbox[0], "y": d.bbox[1], "width": d.bbox[2], "height": d.bbox[3]},
             "embedding": d.embedding}
            for k, d in enumerate(found)
        ]
        checkpoint(doc, owner, {"variants": variants,
                                "progress": {"stage": "detecting", "percent": 60 + int(20 * (n + 1) / len(variants))}})


def _product_match(product: dict[str, Any], score: float) -> dict[str, Any]:
    """The product as it is now (unsigned refs) and its score, shown through lib.catalog.public_product."""
    from lib.catalog import PRODUCT_FIELDS

    return {"product": {"_id": product["_id"], **{k: product[k] for k in PRODUCT_FIELDS if k in product}},
            "score": score}


def match_products(doc: dict[str, Any], owner: str) -> None:
    """Every detected part of every variant in ONE batched vector query, then one Mongo read for the cards."""
    from lib import vectors

    checkpoint(doc, owner, {"progress": {"stage": "matching", "percent": 85}})
    parts = [p for v in doc["variants"] for p in v["detected_parts"] if p.get("embedding")]
    limit = get_settings().products_per_part
    hits = vectors.search_similar_batch([(p["embedding"], p["label"], None) for p in parts], limit=limit)
    ids = {pid for result in hits for pid, _ in result}
    products = {p["_id"]: p for p in db.collection("products").find({"_id": {"$in": sorted(ids)}})}
    for part, result in zip(parts, hits, strict=True):
        part["products"] = [_product_match(products[pid], score) for pid, score in result if pid in products]


def attach_ar(doc: dict[str, Any], owner: str) -> None:
    """The label's 3D models with the label's typical dimensions, stored unsigned as lib.catalog reads them
    (interiors.view renders them with lib.catalog.public_ar_object, the same shape as ar_similar_objects)."""
    from lib import catalog, errors

    checkpoint(doc, owner, {"progress": {"stage": "finishing", "percent": 95}})
    labels = sorted({p["label"] for v in doc["variants"] for p in v["detected_parts"]})
    by_label: dict[str, list[dict[str, Any]]] = {}
    for label in labels:
        try:
            models, typical = catalog.ar_models_for(label)
        except errors.NotFound:
            continue
        by_label[label] = [{"model": {k: v for k, v in m.items() if k not in ("created_at", "updated_at")},
                            "typical": typical} for m in models]
    for variant in doc["variants"]:
        for part in variant["detected_parts"]:
            part["ar_objects"] = by_label.get(part["label"], [])


def finish(doc: dict[str, Any], owner: str, timings: dict[str, float]) -> dict[str, Any]:
    """Mark done, keeping this attempt's seconds per stage (a resumed attempt reports only its own work)."""
    for variant in doc["variants"]:
        for part in variant["detected_parts"]:
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


def publish_finished(doc: dict[str, Any]) -> None:
    from lib import events

    payload = {"interior_id": doc["_id"], "user_id": doc["user_id"], "status": doc["status"],
               "reason": doc.get("reason")}
    try:
        events.publish(get_settings().interior_finished_topic, payload, kind="interior.finished")
    except Exception:  # noqa: BLE001 - the result is stored; the sweep announces it later (republish_unannounced)
        log.exception("could not publish interior.finished for %s", doc["_id"])
        return
    db.collection(COLLECTION).update_one({"_id": doc["_id"]}, {"$set": {"announced_at": db.utcnow()}})


def republish_unannounced(index: int, count: int, grace_seconds: int = 60) -> int:
    """Announce finished interiors whose interior.finished was never published (the publish failed, or the
    run crashed between storing the result and publishing it). Notifications dedupe per interior and status."""
    cutoff = db.utcnow() - timedelta(seconds=grace_seconds)
    docs = db.collection(COLLECTION).find(
        {"status": {"$in": ["done", "failed"]}, "announced_at": None, "finished_at": {"$lte": cutoff},
         "reason": {"$ne": interiors.ENQUEUE_FAILED}},  # that user got a 503 at once: nothing to announce
        {"_id": 1, "user_id": 1, "status": 1, "reason": 1})
    announced = 0
    for doc in docs:
        if in_shard(doc["_id"], index, count):
            publish_finished(doc)
            announced += 1
    return announced


# --- one interior, and the job's loop ---------------------------------------------------------------------

def process(doc: dict[str, Any], owner: str) -> str:
    """Run the remaining steps for a claimed interior; returns its resulting status."""
    started = time.monotonic()
    try:
        try:
            timings: dict[str, float] = {}
            images: dict[int, bytes] = {}  # variants generated by this attempt: detection needs no download
            for stage, step in (("generating", lambda: generate_variants(doc, owner, images)),
                                ("detecting", lambda: detect_parts(doc, owner, images)),
                                ("matching", lambda: match_products(doc, owner)),
                                ("finishing", lambda: attach_ar(doc, owner))):
                step_started = time.monotonic()
                step()
                timings[stage] = round(time.monotonic() - step_started, 3)
                # json_fields become jsonPayload.stage / .duration_ms: the stage-duration log-based metric
                log.info("interior %s stage %s took %.3fs", doc["_id"], stage, timings[stage],
                         extra={"json_fields": {"stage": stage, "duration_ms": round(timings[stage] * 1000)}})
            done = finish(doc, owner, timings)
        except ProviderError as exc:
            if exc.retryable:
                raise Retry(exc.code, exc.message) from exc
            fail_and_announce(doc["_id"], exc.code, exc.message, owner)
            return "failed"
        except (LeaseLost, Retry):
            raise
        except Exception as exc:  # noqa: BLE001 - storage, database or a bug: another attempt may succeed
            log.exception("interior %s attempt failed", doc["_id"])
            raise Retry(GENERATION_FAILED, "The generation failed unexpectedly.") from exc
    except Retry as retry:
        if doc.get("attempts", 1) >= get_settings().job_max_attempts:
            fail_and_announce(doc["_id"], retry.reason, retry.message, owner)
            return "failed"
        release(doc, owner, retry)
        return "retry"
    except LeaseLost:
        log.warning("interior %s: lease lost (taken over or deleted); stopping", doc["_id"])
        _cleanup_if_deleted(doc)
        return "lost"
    publish_finished(done)
    log.info("interior %s done in %.2fs", doc["_id"], time.monotonic() - started)
    return "done"


def _cleanup_if_deleted(doc: dict[str, Any]) -> None:
    """If the user deleted the interior while we worked, remove what we may have written since."""
    from lib import storage

    if db.collection(COLLECTION).find_one({"_id": doc["_id"]}, {"_id": 1}) is None:
        storage.delete_prefix(get_settings().images_bucket, interiors.images_prefix(doc["user_id"], doc["_id"]))


def candidates(index: int, count: int) -> list[str]:
    """Claimable interiors of this shard, oldest first (the sweep mode's work list)."""
    docs = db.collection(COLLECTION).find({"$or": _unheld(db.utcnow())}, {"_id": 1}).sort("created_at", 1)
    return [d["_id"] for d in docs if in_shard(d["_id"], index, count)]


def run(interior_ids: list[str] | None = None, *, retry_delay: float = 1.0) -> dict[str, int]:
    """Process the given interiors (or, without ids, every claimable one) that fall in this task's shard."""
    index, count = shard()
    owner = f"{task_identity() or 'local'}/{uuid.uuid4().hex[:12]}"
    ids = [i for i in interior_ids if in_shard(i, index, count)] if interior_ids else candidates(index, count)
    summary = {"done": 0, "failed": 0, "skipped": 0, "lost": 0, "announced": 0}
    pending = list(ids)
    while pending:
        interior_id = pending.pop(0)
        doc = claim(interior_id, owner)
        if doc is None:
            if fail_exhausted(interior_id) is not None:
                summary["failed"] += 1
            else:
                summary["skipped"] += 1  # done, failed, deleted, or someone holds a live lease
            continue
        status = process(doc, owner)
        if status == "retry":
            pending.append(interior_id)
            time.sleep(retry_delay)
        else:
            summary[status] += 1
    if not interior_ids:  # the sweep also catches up on announcements that were lost
        summary["announced"] = republish_unannounced(index, count)
    return summary
