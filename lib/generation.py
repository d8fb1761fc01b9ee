"""The generation pipeline run by the `generate_interior` job, with leases so nothing is lost or done twice.

The interior's states, leases and checkpoints belong to lib.interiors (this module only calls them).
Claiming: one atomic find-and-modify moves an interior queued -> running with a lease (owner token, expiry)
and counts the attempt. A duplicate task or a second execution finds it running under a live lease and leaves
it alone; a crashed run's lease expires and the next run claims it again; after JOB_MAX_ATTEMPTS it is
failed (and refunded). A retry of the same Cloud Run task (same execution and task index) may take over its
own crashed attempt's lease at once.

Steps, each persisted with progress {stage, percent} and a lease renewal (a checkpoint only succeeds while
we still hold the lease, so a run that lost it stops instead of overwriting):
  generating 5-60%   one variant at a time: record that a provider call starts (the unit is spent from then on,
                     and a deleted or lost interior stops here) -> generate -> store in the images bucket ->
                     record it. A resumed run skips every variant already stored, so a retry never pays the
                     provider twice.
  detecting 60-80%   furniture in each variant (recorded per variant, also skipped on resume)
  matching 85%       ONE batched vector query for every detected part of the interior (filtered by label),
                     products enriched from the catalog
  finishing 95%      AR models for each part's label
  done 100%          then `interior.finished` is published (also after a failure)

Failures: a ProviderError that may pass (rate limit, outage, timeout) or any unexpected error releases the
interior for another attempt; a permanent one (billing, rejected prompt, invalid image) fails it at once with
its reason code. A failed interior is refunded unless its unit is spent: a provider may have done paid work for
it (interiors.spent; a call the provider refused outright does not count).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from datetime import timedelta
from typing import Any

from lib import catalog, db, errors, events, interiors, providers, storage, vectors
from lib import images as images_lib
from lib.config import get_settings
from lib.interiors import ProductMatch, StoredArObject, StoredDetectedPart, StoredInterior, StoredVariant
from lib.providers import GenerationRequest, ProviderError

log = logging.getLogger("zipkku.generation")

GENERATION_FAILED = "GENERATION_FAILED"


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


# --- outcomes ---------------------------------------------------------------------------------------------

def fail_and_announce(interior_id: str, reason: str, message: str, lease_owner: str | None) -> StoredInterior | None:
    """failed + refunded (lib.interiors.fail, guarded by the lease), then interior.finished and the outcome log."""
    return _announce_failure(interiors.fail(interior_id, reason, message, lease_owner=lease_owner))


def _announce_failure(failed: StoredInterior | None) -> StoredInterior | None:
    """interior.finished and the outcome log for an interior lib.interiors just failed (None: nothing failed)."""
    if failed is not None:
        publish_finished(failed)
        log.warning("interior %s failed: %s", failed["_id"], failed.get("reason"))  # the outcome metric reads this
    return failed


# --- the steps -------------------------------------------------------------------------------------------

def _download(ref: str) -> bytes:
    return storage.download_bytes(*storage.parse_ref(ref))


def _generation_request(doc: StoredInterior) -> GenerationRequest:
    generator = get_settings().generator
    style = catalog.resolve_style(doc["style"]) or {}
    return GenerationRequest(
        image=_download(doc["original_image"]), room_type=doc["room_type"], style=style.get("name", doc["style"]),
        prompt=doc.get("prompt", ""), strength=doc.get("strength", 0.6),
        image_url=storage.client_url(doc["original_image"]) if generator == "replicate" else None,
        style_description=style.get("description", "") or "",
    )


def generate_variants(doc: StoredInterior, owner: str, images: dict[int, bytes]) -> None:
    """Generate and store the missing variants; their bytes go to `images` (by index) for detect_parts."""
    settings = get_settings()
    wanted = doc.get("variants_requested", 1)
    variants: dict[int, StoredVariant] = {v["index"]: v for v in doc.get("variants") or [] if v.get("image")}
    missing = [i for i in range(wanted) if i not in variants]
    if not missing:
        return
    request = _generation_request(doc)
    generator = providers.generator()
    for i in missing:
        # Before every provider call: the unit is recorded spent and the lease renewed, or LeaseLost (deleted,
        # taken over) stops us without calling the provider.
        marked = interiors.provider_call_starting(
            doc, owner, {"stage": "generating", "percent": 5 + int(55 * len(variants) / wanted)})
        seed = seed_for(doc["_id"], i)
        try:
            image = images[i] = generator.generate(request, seed)
        except ProviderError as exc:
            if marked and not exc.work_started:  # refused outright: nothing ran, the unit is not spent
                interiors.provider_call_refused(doc, owner)
            raise
        name = f"{interiors.images_prefix(doc['user_id'], doc['_id'])}variant-{i}.jpg"
        storage.upload_bytes(settings.images_bucket, name, image, "image/jpeg")
        width, height = images_lib.pixel_size(image)  # boxes are in these pixels: a client scales them
        variants[i] = {"index": i, "seed": seed, "image": storage.ref(settings.images_bucket, name),
                       "generator": generator.name, "width": width, "height": height}
        interiors.checkpoint(doc, owner, {
            "variants": [variants[k] for k in sorted(variants)],
            "progress": {"stage": "generating", "percent": 5 + int(55 * len(variants) / wanted)}})


def detect_parts(doc: StoredInterior, owner: str, images: dict[int, bytes]) -> None:
    """Furniture in each variant; a variant generated by this attempt is in `images`, else it is downloaded."""
    detector = providers.detector()
    variants = doc["variants"]
    for n, variant in enumerate(variants):
        if variant.get("detected_parts") is not None:
            continue
        image = images.get(variant["index"])
        found = detector.detect(image if image is not None else _download(variant["image"]))
        parts: list[StoredDetectedPart] = [
            {"id": f"{variant['index']}-{k}", "label": d.label, "confidence": round(d.confidence, 4),
             "box": {"x": d.bbox[0], "y": d.bbox[1], "width": d.bbox[2], "height": d.bbox[3]},
             "embedding": d.embedding}
            for k, d in enumerate(found)
        ]
        variant["detected_parts"] = parts
        interiors.checkpoint(doc, owner, {
            "variants": variants,
            "progress": {"stage": "detecting", "percent": 60 + int(20 * (n + 1) / len(variants))}})


def _product_match(product: dict[str, Any], score: float) -> ProductMatch:
    """The product as it is now (unsigned refs) and its score, shown through lib.catalog.public_product."""
    snapshot = {"_id": product["_id"], **{k: product[k] for k in catalog.PRODUCT_FIELDS if k in product}}
    return {"product": snapshot, "score": score}  # type: ignore[typeddict-item]


def match_products(doc: StoredInterior, owner: str) -> None:
    """Every detected part of every variant in ONE batched vector query, then one Mongo read for the cards."""
    interiors.checkpoint(doc, owner, {"progress": {"stage": "matching", "percent": 85}})
    embedded = [(p, e) for v in doc["variants"] for p in v["detected_parts"] if (e := p.get("embedding"))]
    limit = get_settings().products_per_part
    hits = vectors.search_similar_batch([(e, p["label"], None) for p, e in embedded], limit=limit)
    ids = {pid for result in hits for pid, _ in result}
    products = catalog.products_by_id(ids)
    for (part, _), result in zip(embedded, hits, strict=True):
        part["products"] = [_product_match(products[pid], score) for pid, score in result if pid in products]


def attach_ar(doc: StoredInterior, owner: str) -> None:
    """The label's 3D models with the label's typical dimensions, stored unsigned as lib.catalog reads them
    (interiors.view renders them with lib.catalog.public_ar_object, the same shape as ar_similar_objects)."""
    interiors.checkpoint(doc, owner, {"progress": {"stage": "finishing", "percent": 95}})
    labels = sorted({p["label"] for v in doc["variants"] for p in v["detected_parts"]})
    by_label: dict[str, list[StoredArObject]] = {}
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


def publish_finished(doc: StoredInterior) -> None:
    payload = {"interior_id": doc["_id"], "user_id": doc["user_id"], "status": doc["status"],
               "reason": doc.get("reason")}
    try:
        events.publish(get_settings().interior_finished_topic, payload, kind="interior.finished")
    except Exception:  # noqa: BLE001 - the result is stored; the sweep announces it later (republish_unannounced)
        log.exception("could not publish interior.finished for %s", doc["_id"])
        return
    interiors.mark_announced(doc["_id"])


def republish_unannounced(index: int, count: int, grace_seconds: int = 60) -> int:
    """Announce finished interiors whose interior.finished was never published (the publish failed, or the
    run crashed between storing the result and publishing it). Notifications dedupe per interior and status."""
    announced = 0
    for doc in interiors.unannounced(db.utcnow() - timedelta(seconds=grace_seconds)):
        if in_shard(doc["_id"], index, count):
            publish_finished(doc)
            announced += 1
    return announced


# --- one interior, and the job's loop ---------------------------------------------------------------------

def process(doc: StoredInterior, owner: str) -> str:
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
            done = interiors.finish(doc, owner, timings)
        except ProviderError as exc:
            if exc.retryable:
                raise Retry(exc.code, exc.message) from exc
            fail_and_announce(doc["_id"], exc.code, exc.message, owner)
            return "failed"
        except (interiors.LeaseLost, Retry):
            raise
        except Exception as exc:  # noqa: BLE001 - storage, database or a bug: another attempt may succeed
            log.exception("interior %s attempt failed", doc["_id"])
            raise Retry(GENERATION_FAILED, "The generation failed unexpectedly.") from exc
    except Retry as retry:
        if doc.get("attempts", 1) >= get_settings().job_max_attempts:
            fail_and_announce(doc["_id"], retry.reason, retry.message, owner)
            return "failed"
        interiors.release(doc, owner, retry.reason)
        return "retry"
    except interiors.LeaseLost:
        log.warning("interior %s: lease lost (taken over or deleted); stopping", doc["_id"])
        _cleanup_if_deleted(doc)
        return "lost"
    publish_finished(done)
    log.info("interior %s done in %.2fs", doc["_id"], time.monotonic() - started)
    return "done"


def _cleanup_if_deleted(doc: StoredInterior) -> None:
    """If the user deleted the interior while we worked, remove what we may have written since."""
    if not interiors.exists(doc["_id"]):
        storage.delete_prefix(get_settings().images_bucket, interiors.images_prefix(doc["user_id"], doc["_id"]))


def candidates(index: int, count: int) -> list[str]:
    """Claimable interiors of this shard, oldest first (the sweep mode's work list)."""
    return [i for i in interiors.claimable_ids() if in_shard(i, index, count)]


def run(interior_ids: list[str] | None = None, *, retry_delay: float = 1.0) -> dict[str, int]:
    """Process the given interiors (or, without ids, every claimable one) that fall in this task's shard."""
    index, count = shard()
    task = task_identity()
    owner = f"{task or 'local'}/{uuid.uuid4().hex[:12]}"
    ids = [i for i in interior_ids if in_shard(i, index, count)] if interior_ids else candidates(index, count)
    summary = {"done": 0, "failed": 0, "skipped": 0, "lost": 0, "announced": 0}
    pending = list(ids)
    while pending:
        interior_id = pending.pop(0)
        doc = interiors.claim(interior_id, owner, task)
        if doc is None:
            if interiors.seconds_to_confirm(interior_id) > 0:
                # a task starts the job right after the enqueue, often before the request's confirmation is
                # written: look again (at most INTERIOR_ENQUEUE_SECONDS; then it is failed and refunded)
                time.sleep(0.2)
                pending.append(interior_id)
                continue
            # used up its attempts (announced), or its request answered 503 (not announced: the user knows)
            if (_announce_failure(interiors.fail_exhausted(interior_id)) is not None
                    or interiors.fail_unconfirmed(interior_id) is not None):
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
