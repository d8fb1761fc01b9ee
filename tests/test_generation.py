"""The generate_interior job: leases, resume, duplicates, provider faults, refunds, results, sharding."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from PIL import Image

from lib import db, discovery, generation, interiors, quota
from lib.config import get_settings
from scripts.localstack import ROOT
from tests.doubles import ReplicateDouble
from tests.generation_helpers import queued_interior, ready_upload, seed_mini_catalog

JOB = discovery.job_script("generate-interior")


@pytest.fixture
def env(stack, settings_env):
    return settings_env


@pytest.fixture
def replicate(env):
    double = ReplicateDouble().start()
    env(generator="replicate", replicate_api_url=f"{double.url}/v1", replicate_api_token=double.token,
        replicate_poll_seconds=0.05, replicate_retry_backoff_seconds=0.01, replicate_retries=2)
    yield double
    double.stop()


@pytest.fixture
def user(make_user):
    return make_user()["user"]


def _token_for(user):
    from lib import auth

    return auth.issue_token_pair(db.collection("users").find_one({"_id": user["id"]}))["access_token"]


def _doc(interior_id):
    return db.collection("interiors").find_one({"_id": interior_id})


def _notifications(user_id):
    return list(db.collection("notifications").find({"user_id": user_id}))


def _object_exists(ref: str) -> bool:
    from lib import storage

    bucket, name = storage.parse_ref(ref)
    return storage.bucket(bucket).blob(name).exists()


def test_job_generates_variants_detects_matches_products_and_ar(env, user, fn, make_user):
    catalog = seed_mini_catalog()
    doc = queued_interior(user, ready_upload(user["id"]), variants=2, prompt="cosy")
    assert generation.run([doc["_id"]]) == {"done": 1, "failed": 0, "skipped": 0, "lost": 0, "announced": 0}

    done = _doc(doc["_id"])
    assert done["status"] == "done" and done["progress"] == {"stage": "done", "percent": 100}
    assert done["attempts"] == 1 and [v["index"] for v in done["variants"]] == [0, 1]
    assert all(_object_exists(v["image"]) for v in done["variants"])
    assert done["variants"][0]["seed"] != done["variants"][1]["seed"]
    parts = [p for v in done["variants"] for p in v["detected_parts"]]
    assert parts, "the local detector should find catalog-like regions"
    for part in parts:
        assert part["label"] in catalog["labels"] and 0 <= part["confidence"] <= 1
        box = part["box"]
        assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= 640 and box["y"] + box["height"] <= 480
        assert part["products"] and all(m["product"]["label"] == part["label"] for m in part["products"])  # by label
        assert [a["model"]["label"] for a in part["ar_objects"]] == [part["label"]]
        assert part["ar_objects"][0]["typical"] == {"width_cm": 100.0, "depth_cm": 50.0, "height_cm": 80.0}
        assert "embedding" not in part

    # the API view: signed image URLs, product cards, AR models, and the owner's notification
    login = make_user()
    r = fn("interiors_get").get(f"/?id={doc['_id']}", headers=login["headers"])
    assert r.status_code == 404  # someone else's interior
    owner_headers = {"Authorization": f"Bearer {_token_for(user)}"}
    view = fn("interiors_get").get(f"/?id={doc['_id']}", headers=owner_headers).get_json()["interior"]
    part = next(p for v in view["variants"] for p in v["detected_parts"])
    image_url = view["variants"][0]["image_url"]
    assert image_url.startswith("http") and "X-Goog-Signature" in image_url
    assert set(part) == {"id", "label", "confidence", "box", "products", "ar_objects"}
    card_fields = {"id", "name", "price", "currency", "product_url", "image_url", "dimensions", "score"}
    assert card_fields <= set(part["products"][0])
    # one product shape everywhere: the interior's card is the catalog's answer for that product, plus its score
    card = part["products"][0]
    listed = fn("products_search").get("/", query_string={"label": card["label"], "limit": 100}).get_json()
    same = next(p for p in listed["products"] if p["id"] == card["id"])
    assert set(card) == set(same) | {"score"}
    def unsigned(product: dict) -> dict:  # URLs are signed per answer, so only their paths compare
        return {**{k: v for k, v in product.items() if k != "score"}, "image_url": product["image_url"].split("?")[0],
                "image_urls": [u.split("?")[0] for u in product["image_urls"]]}

    assert unsigned(card) == unsigned(same) and card["image_url"] == card["image_urls"][0]
    ar = part["ar_objects"][0]
    assert ar["model_url"].startswith("http") and (ar["width"], ar["depth"], ar["height"]) == (100.0, 50.0, 80.0)
    assert [n["status"] for n in _notifications(user["id"])] == ["done"]
    assert quota.usage(user["id"])["used"] == 1


def test_the_answer_gives_a_ui_what_it_draws_with(env, user, fn):
    """Each variant's pixel size (its boxes' unit), the upload the design came from, and AR models sized to the
    part's best-matching product, with the factors the client multiplies the model by."""
    seed_mini_catalog()
    upload_id = ready_upload(user["id"])
    doc = queued_interior(user, upload_id, variants=1)
    generation.run([doc["_id"]])
    headers = {"Authorization": f"Bearer {_token_for(user)}"}
    view = fn("interiors_get").get(f"/?id={doc['_id']}", headers=headers).get_json()["interior"]
    assert view["upload_id"] == upload_id
    variant = view["variants"][0]
    image = Image.open(io.BytesIO(requests.get(variant["image_url"], timeout=30).content))
    assert (variant["width"], variant["height"]) == image.size
    for part in variant["detected_parts"]:
        box = part["box"]
        assert box["x"] + box["width"] <= variant["width"] and box["y"] + box["height"] <= variant["height"]

    # the best product of a part gets another size: its AR model follows it, not the label's median
    stored = _doc(doc["_id"])
    stored["variants"][0]["detected_parts"][0]["products"][0]["product"]["dimensions"] = {
        "width_cm": 180.0, "depth_cm": 90.0, "height_cm": 60.0}
    db.collection("interiors").update_one({"_id": doc["_id"]}, {"$set": {"variants": stored["variants"]}})
    part = fn("interiors_get").get(f"/?id={doc['_id']}", headers=headers).get_json()["interior"]["variants"][0][
        "detected_parts"][0]
    ar = part["ar_objects"][0]
    assert ar["sized_to"] == "product" and ar["product_id"] == part["products"][0]["id"]
    assert (ar["width"], ar["depth"], ar["height"]) == (180.0, 90.0, 60.0)
    own = ar["model_dimensions"]  # the mini catalog's models are 90 x 45 x 75 cm
    assert ar["scale"] == {"x": round(180 / own["width_cm"], 4), "y": round(60 / own["height_cm"], 4),
                           "z": round(90 / own["depth_cm"], 4)}
    # outside an interior a model is sized to its label's typical product
    listed = fn("ar_similar_objects").get("/", query_string={"label": part["label"]}).get_json()["objects"][0]
    assert listed["sized_to"] == "label" and listed["product_id"] is None


def test_claim_is_exclusive_and_an_expired_lease_is_claimed_again(env, user):
    seed_mini_catalog()
    doc = queued_interior(user, ready_upload(user["id"]))
    first = interiors.claim(doc["_id"], "owner-a")
    assert first["status"] == "running" and first["attempts"] == 1
    assert interiors.claim(doc["_id"], "owner-b") is None  # live lease
    db.collection("interiors").update_one({"_id": doc["_id"]},
                                          {"$set": {"lease_expires_at": db.utcnow() - timedelta(seconds=1)}})
    second = interiors.claim(doc["_id"], "owner-b")
    assert second["lease_owner"] == "owner-b" and second["attempts"] == 2
    with pytest.raises(interiors.LeaseLost):  # the first owner can no longer write
        interiors.checkpoint(first, "owner-a", {"progress": {"stage": "generating", "percent": 5}})


def test_a_retry_of_the_same_cloud_run_task_takes_over_its_own_lease_at_once(env, user, monkeypatch):
    """Cloud Run retries a crashed task with the same execution and index: it may claim its live lease; a
    different task may not."""
    seed_mini_catalog()
    doc = queued_interior(user, ready_upload(user["id"]))
    monkeypatch.setenv("CLOUD_RUN_EXECUTION", "generate-interior-e1")
    monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", "0")
    crashed = interiors.claim(doc["_id"], "attempt-1", generation.task_identity())
    assert crashed["lease_task"] == "generate-interior-e1/0"
    monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", "1")
    assert interiors.claim(doc["_id"], "other-task", generation.task_identity()) is None  # someone else's live lease
    monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", "0")
    retried = interiors.claim(doc["_id"], "attempt-2", generation.task_identity())
    assert retried["lease_owner"] == "attempt-2" and retried["attempts"] == 2


def test_an_unexpected_error_is_retried_then_fails_and_refunds(env, user):
    """Not a provider error (here the room photo is gone from the bucket): the interior goes back for another
    attempt, and after the last one it is failed with GENERATION_FAILED and the unit refunded."""
    from lib import storage

    seed_mini_catalog()
    env(job_max_attempts=2)
    doc = queued_interior(user, ready_upload(user["id"]))
    storage.bucket(get_settings().images_bucket).blob(storage.parse_ref(doc["original_image"])[1]).delete()
    assert generation.run([doc["_id"]], retry_delay=0)["failed"] == 1
    failed = _doc(doc["_id"])
    assert failed["status"] == "failed" and failed["reason"] == generation.GENERATION_FAILED
    assert failed["attempts"] == 2 and quota.usage(user["id"])["used"] == 0
    assert [n["status"] for n in _notifications(user["id"])] == ["failed"]


def test_after_max_attempts_the_interior_fails_and_is_refunded(env, user):
    seed_mini_catalog()
    doc = queued_interior(user, ready_upload(user["id"]))
    assert quota.usage(user["id"])["used"] == 1
    db.collection("interiors").update_one({"_id": doc["_id"]}, {"$set": {
        "status": "running", "attempts": get_settings().job_max_attempts, "lease_owner": "crashed",
        "lease_expires_at": db.utcnow() - timedelta(seconds=1)}})
    assert generation.run([doc["_id"]])["failed"] == 1
    failed = _doc(doc["_id"])
    assert failed["status"] == "failed" and failed["reason"] == interiors.ATTEMPTS_EXHAUSTED
    assert quota.usage(user["id"])["used"] == 0
    assert [n["status"] for n in _notifications(user["id"])] == ["failed"]
    assert generation.run([doc["_id"]])["skipped"] == 1  # nothing happens twice


def _start_job(interior_id: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(JOB), "--interior", interior_id], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not reached")


def test_a_job_killed_mid_run_resumes_without_regenerating_stored_variants(replicate, user):
    seed_mini_catalog()
    doc = queued_interior(user, ready_upload(user["id"]), variants=3)
    replicate.plan = ["ok", "never"]  # the second variant hangs: the job is killed while waiting for it
    proc = _start_job(doc["_id"])
    try:
        _wait_for(lambda: len(replicate.creates) == 2 and len(_doc(doc["_id"])["variants"]) == 1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    stored = _doc(doc["_id"])["variants"][0]
    assert _doc(doc["_id"])["status"] == "running"
    # the lease runs out (as time would make it), then a retry resumes
    db.collection("interiors").update_one({"_id": doc["_id"]},
                                          {"$set": {"lease_expires_at": db.utcnow() - timedelta(seconds=1)}})
    assert generation.run([doc["_id"]])["done"] == 1
    done = _doc(doc["_id"])
    assert done["status"] == "done" and done["attempts"] == 2
    assert done["variants"][0]["image"] == stored["image"] and done["variants"][0]["seed"] == stored["seed"]
    seeds = [c["body"]["input"]["seed"] for c in replicate.creates]
    assert len(seeds) == 4 and seeds[2:].count(stored["seed"]) == 0  # variant 0 was never asked for again
    assert seeds[1] == seeds[2]  # the hung variant is asked for again with the same seed


def test_the_same_task_delivered_twice_gives_one_result(replicate, user):
    seed_mini_catalog()
    doc = queued_interior(user, ready_upload(user["id"]))
    replicate.plan = ["slow"]
    replicate.slow_seconds = 1.5
    first, second = _start_job(doc["_id"]), _start_job(doc["_id"])
    assert first.wait(60) == 0 and second.wait(60) == 0
    done = _doc(doc["_id"])
    assert done["status"] == "done" and done["attempts"] == 1 and len(done["variants"]) == 1
    assert len(replicate.creates) == 1
    assert len(_notifications(user["id"])) == 1


def test_provider_500_then_success(replicate, user):
    seed_mini_catalog()
    doc = queued_interior(user, ready_upload(user["id"]))
    replicate.plan = [500, "ok"]
    assert generation.run([doc["_id"]])["done"] == 1
    assert len(replicate.creates) == 2 and _doc(doc["_id"])["status"] == "done"


# A unit is spent once the provider may have done paid work for it: a prediction it accepted and then failed or
# filtered (Replicate bills the time it ran) is not refunded, or a photo made to fail after generating would be
# free generations; a call the provider refused outright (402 billing: no prediction was created) is.
@pytest.mark.parametrize(("plan", "reason", "used"), [([402], "PROVIDER_BILLING", 0),
                                                      (["nsfw"], "PROVIDER_REJECTED_PROMPT", 1)])
def test_permanent_provider_failure_fails_and_refunds_only_unstarted_work(replicate, user, fn, make_user, plan,
                                                                          reason, used):
    seed_mini_catalog()
    login = make_user()
    doc = queued_interior({"id": login["user"]["id"]}, ready_upload(login["user"]["id"]))
    replicate.plan = list(plan)
    assert generation.run([doc["_id"]])["failed"] == 1
    assert len(replicate.creates) == 1  # never retried
    r = fn("interiors_get").get(f"/?id={doc['_id']}", headers=login["headers"])
    body = r.get_json()["interior"]
    assert r.status_code == 200 and body["status"] == "failed" and body["reason"] == reason
    assert quota.usage(login["user"]["id"])["used"] == used
    me = fn("me").get("/", headers=login["headers"]).get_json()
    assert me["usage"]["used"] == used and me["notifications"][0]["status"] == "failed"


def test_a_generation_that_fails_after_its_prediction_ran_is_not_refunded(replicate, env, user):
    """Failed predictions (Replicate bills their run time) on every attempt: the interior fails, the unit stays
    spent. Asking again and again with a photo that makes the model fail costs a unit each time."""
    seed_mini_catalog()
    env(replicate_retries=0, job_max_attempts=2)
    doc = queued_interior(user, ready_upload(user["id"]))
    replicate.plan = ["failed", "failed"]
    assert generation.run([doc["_id"]], retry_delay=0)["failed"] == 1
    failed = _doc(doc["_id"])
    assert failed["status"] == "failed" and failed["attempts"] == 2 and failed.get("spent_at")
    assert len(replicate.creates) == 2 and quota.usage(user["id"])["used"] == 1


def test_a_create_whose_answer_was_lost_keeps_the_unit_spent(replicate, env, user):
    """The create reached Replicate (the prediction exists and runs) but its answer never came back: we cannot
    know nothing ran, so the failed interior is not refunded."""
    seed_mini_catalog()
    env(replicate_retries=0, job_max_attempts=2)
    doc = queued_interior(user, ready_upload(user["id"]))
    replicate.plan = ["lost-answer", "lost-answer"]
    assert generation.run([doc["_id"]], retry_delay=0)["failed"] == 1
    failed = _doc(doc["_id"])
    assert failed["reason"] == "PROVIDER_UNAVAILABLE" and failed.get("spent_at")
    assert len(replicate.predictions) == 2 and quota.usage(user["id"])["used"] == 1


def test_a_refused_call_after_a_started_one_keeps_the_unit_spent(replicate, env, user):
    """The first attempt's prediction ran and failed; the second attempt's call is refused (503). The first
    one's work was paid, so the refusal does not give the unit back."""
    seed_mini_catalog()
    env(replicate_retries=0, job_max_attempts=2)
    doc = queued_interior(user, ready_upload(user["id"]))
    replicate.plan = ["failed", 503]
    assert generation.run([doc["_id"]], retry_delay=0)["failed"] == 1
    assert quota.usage(user["id"])["used"] == 1


def test_retryable_refusals_use_up_the_attempts_then_fail_and_refund(replicate, env, user):
    """Every call refused (503: no prediction was created): nothing reached the provider's models, so the
    failed interior is refunded and carries no spent mark."""
    seed_mini_catalog()
    env(replicate_retries=0, job_max_attempts=2)
    doc = queued_interior(user, ready_upload(user["id"]))
    replicate.plan = [503, 503, 503]
    assert generation.run([doc["_id"]], retry_delay=0)["failed"] == 1
    failed = _doc(doc["_id"])
    assert failed["status"] == "failed" and failed["reason"] == "PROVIDER_UNAVAILABLE" and failed["attempts"] == 2
    assert len(replicate.creates) == 2 and quota.usage(user["id"])["used"] == 0
    assert "spent_at" not in failed


def test_an_interior_deleted_during_the_run_stops_the_job_and_leaves_no_images(replicate, user):
    seed_mini_catalog()
    doc = queued_interior(user, ready_upload(user["id"]), variants=2)
    replicate.plan = ["ok", "slow"]
    replicate.slow_seconds = 1.0
    proc = _start_job(doc["_id"])
    _wait_for(lambda: len(_doc(doc["_id"])["variants"]) == 1)
    interiors.delete(user["id"], doc["_id"])
    assert proc.wait(60) == 0
    from lib import storage

    leftovers = list(storage.client().list_blobs(get_settings().images_bucket,
                                                 prefix=interiors.images_prefix(user["id"], doc["_id"])))
    assert leftovers == []


def test_sharding_splits_the_sweep_without_overlap(env, user):
    seed_mini_catalog()
    upload = ready_upload(user["id"])
    ids: set[str] = set()
    # ids are random: queue until both shards have some (8 random ids all land in one shard 1 time in 128)
    while len(ids) < 8 or len({generation.in_shard(i, 0, 2) for i in ids}) < 2:
        assert len(ids) < 64
        ids.add(queued_interior(user, upload)["_id"])
    shard0, shard1 = set(generation.candidates(0, 2)), set(generation.candidates(1, 2))
    assert shard0 | shard1 == ids and not shard0 & shard1
    assert shard0 and shard1


def test_http_detector_parts_are_matched_in_one_batch_by_their_embeddings(env, user):
    """With the production detector contract (a double of the service), each part's embedding finds the
    product it came from first, filtered by the part's label."""
    from lib import vectors
    from tests.doubles import DetectorDouble

    seed_mini_catalog()
    sofa, lamp = vectors.get_vector("test-sofa-2"), vectors.get_vector("test-lamp-1")
    double = DetectorDouble(reply=[
        {"label": "sofa", "confidence": 0.9, "bbox": [10, 200, 300, 150], "embedding": sofa},
        {"label": "lamp", "confidence": 0.8, "bbox": [500, 100, 60, 280], "embedding": lamp},
        {"label": "lamp", "confidence": 0.3, "bbox": [0, 0, 50, 50], "embedding": sofa},  # label filter wins
    ]).start()
    try:
        env(detector="http", detector_url=f"{double.url}/detect")
        doc = queued_interior(user, ready_upload(user["id"]))
        assert generation.run([doc["_id"]])["done"] == 1
    finally:
        double.stop()
    parts = _doc(doc["_id"])["variants"][0]["detected_parts"]
    assert [p["products"][0]["product"]["_id"] for p in parts[:2]] == ["test-sofa-2", "test-lamp-1"]
    assert parts[1]["box"] == {"x": 500, "y": 100, "width": 60, "height": 280}
    assert all(m["product"]["label"] == "lamp" for m in parts[2]["products"])
    assert len(double.received) == 1 and double.received[0]["size"] > 0


def test_structured_logs_feed_the_monitoring_metrics(env, user):
    """terraform/monitoring.tf builds its metrics from these log entries: stage durations from
    jsonPayload.stage/duration_ms, outcomes from the 'interior <id> done in|failed: <reason>' messages."""
    import io
    import json
    import logging
    import re

    from lib import log

    stream = io.StringIO()
    handler = log.structured_handler("zipkku-test", stream)  # what every function and job writes
    logger = logging.getLogger("zipkku.generation")
    logger.addHandler(handler)
    try:
        seed_mini_catalog()
        done = queued_interior(user, ready_upload(user["id"]))
        assert generation.run([done["_id"]])["done"] == 1
        exhausted = queued_interior(user, ready_upload(user["id"]))
        db.collection("interiors").update_one({"_id": exhausted["_id"]}, {"$set": {
            "status": "running", "attempts": get_settings().job_max_attempts, "lease_owner": "crashed",
            "lease_expires_at": db.utcnow() - timedelta(seconds=1)}})
        assert generation.run([exhausted["_id"]])["failed"] == 1
    finally:
        logger.removeHandler(handler)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    stages = {e["stage"]: e["duration_ms"] for e in entries if "stage" in e}
    assert set(stages) == {"generating", "detecting", "matching", "finishing"}
    assert all(isinstance(ms, int) and ms >= 0 for ms in stages.values())
    outcomes = [m.groups() for e in entries
                if (m := re.match(r"^interior [^ ]+ (done|failed)(?: in|: ([A-Za-z0-9_]+))", e["message"]))]
    assert ("done", None) in outcomes and ("failed", interiors.ATTEMPTS_EXHAUSTED) in outcomes
    assert all(e["severity"] in ("INFO", "WARNING") for e in entries)


def test_a_lost_announcement_is_published_by_the_sweep_exactly_once(env, user):
    """The result is stored before interior.finished is published; if that publish is lost (crash, Pub/Sub
    down), the sweep (a run without ids) announces it, and the user gets one notification, not two."""
    seed_mini_catalog()
    doc = queued_interior(user, ready_upload(user["id"]))
    assert generation.run([doc["_id"]])["done"] == 1
    assert _doc(doc["_id"])["announced_at"] is not None
    assert len(_notifications(user["id"])) == 1
    # Simulate a run that crashed right after storing the result, a while ago.
    db.collection("interiors").update_one({"_id": doc["_id"]}, {"$unset": {"announced_at": ""}, "$set": {
        "finished_at": db.utcnow() - timedelta(minutes=5)}})
    assert generation.run()["announced"] == 1
    assert _doc(doc["_id"])["announced_at"] is not None
    assert len(_notifications(user["id"])) == 1  # the re-publish deduplicates against the first delivery
    assert generation.run()["announced"] == 0  # and nothing is announced twice


def test_deleting_a_design_while_the_provider_works_on_it_does_not_refund_it(replicate, fn, make_user):
    """Generate 4 variants, delete as soon as the provider works on the first: the unit was spent when the
    provider call started, so it is not given back, and the job asks the provider for nothing more. Four such
    cycles cost four units (they used to cost none)."""
    from lib.local import job_runner

    seed_mini_catalog()
    login = make_user()
    user_id = login["user"]["id"]
    upload = ready_upload(user_id)
    replicate.slow_seconds = 1.0
    for _ in range(4):
        replicate.plan = ["slow"] * 4
        before_creates, before_jobs = len(replicate.creates), set(job_runner.execution_ids())
        r = fn("interiors_generate").post("/", headers=login["headers"], json={
            "upload_id": upload, "room_type": "living_room", "style": "boho", "variants": 4})
        assert r.status_code == 202, r.get_json()
        interior_id = r.get_json()["interior"]["id"]
        _wait_for(lambda n=before_creates: len(replicate.creates) > n, timeout=60)  # variant 0 is being made
        running = _doc(interior_id)
        assert running["status"] == "running" and running["progress"]["stage"] == "generating"
        assert not running["variants"]  # nothing delivered yet: the old rule refunded exactly this
        assert fn("interiors_delete").delete(f"/?id={interior_id}", headers=login["headers"]).status_code == 204
        for execution in set(job_runner.execution_ids()) - before_jobs:
            assert job_runner.wait(execution, timeout=120).succeeded
        assert len(replicate.creates) == before_creates + 1  # the job stopped at its next step
    assert quota.usage(user_id)["used"] == 4


def test_the_job_never_calls_the_provider_for_a_deleted_interior_or_a_lost_lease(replicate, user):
    seed_mini_catalog()
    upload = ready_upload(user["id"])
    deleted = queued_interior(user, upload, variants=2)
    claimed = interiors.claim(deleted["_id"], "worker-1")
    interiors.delete(user["id"], deleted["_id"])
    with pytest.raises(interiors.LeaseLost):
        generation.generate_variants(claimed, "worker-1", {})
    taken_over = queued_interior(user, upload)
    first = interiors.claim(taken_over["_id"], "worker-1")
    db.collection("interiors").update_one({"_id": taken_over["_id"]},
                                          {"$set": {"lease_expires_at": db.utcnow() - timedelta(seconds=1)}})
    assert interiors.claim(taken_over["_id"], "worker-2") is not None
    with pytest.raises(interiors.LeaseLost):
        generation.generate_variants(first, "worker-1", {})
    assert replicate.creates == []
    assert quota.usage(user["id"])["used"] == 1  # the deleted one was refunded: no provider call had started
