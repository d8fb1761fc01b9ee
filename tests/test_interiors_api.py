"""The interiors functions: validation, ownership, idempotency, quota (incl. concurrency), enqueue failure,
reading, the library (cursor, save, delete), the finished-event handler and `me`."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import pytest

from lib import db, generation, interiors, quota
from lib.config import get_settings
from lib.local import job_runner
from tests.generation_helpers import queued_interior, ready_upload, seed_mini_catalog


@pytest.fixture
def env(stack, settings_env):
    yield settings_env
    # jobs started by the local queue must be finished before the test's database goes away
    for execution_id in job_runner.execution_ids():
        job_runner.wait(execution_id, timeout=120)


@pytest.fixture
def ctx(env, make_user):
    seed_mini_catalog()
    login = make_user()
    return {**login, "upload": ready_upload(login["user"]["id"])}


def _generate(fn, ctx, headers=None, **body):
    payload = {"upload_id": ctx["upload"], "room_type": "living_room", "style": "boho", **body}
    return fn("interiors_generate").post("/", json=payload, headers={**ctx["headers"], **(headers or {})})


def test_generate_answers_202_at_once_and_the_job_finishes_it(fn, ctx):
    before = set(job_runner.execution_ids())
    r = _generate(fn, ctx, prompt="  plants everywhere ", variants=1, strength=0.5)
    assert r.status_code == 202, r.get_json()
    interior = r.get_json()["interior"]
    assert interior["status"] == "queued" and interior["progress"] == {"stage": "queued", "percent": 0}
    assert interior["prompt"] == "plants everywhere" and interior["style"] == "boho"
    assert "Location" not in r.headers  # each function has its own URL: poll interiors-get?id= instead
    assert db.collection("local_tasks").count_documents({"_id": {"$regex": f"interior-{interior['id']}$"}}) == 1
    started = [e for e in job_runner.execution_ids() if e not in before]
    assert len(started) == 1 and started[0].startswith("generate-interior-")
    assert job_runner.wait(started[0], timeout=120).succeeded
    got = fn("interiors_get").get(f"/?id={interior['id']}", headers=ctx["headers"]).get_json()["interior"]
    assert got["status"] == "done" and got["variants"][0]["image_url"].startswith("http")
    assert got["original_image_url"].startswith("http")


@pytest.mark.parametrize(("body", "field"), [
    ({"upload_id": None}, "upload_id"),
    ({"room_type": ""}, "room_type"),
    ({"prompt": "x" * 501}, "prompt"),
    ({"prompt": "bad\x00byte"}, "prompt"),
    ({"variants": 0}, "variants"),
    ({"variants": 5}, "variants"),
    ({"strength": 1.5}, "strength"),
    ({"extra": 1}, "extra"),
])
def test_generate_rejects_bad_fields(fn, ctx, body, field):
    r = _generate(fn, ctx, **body)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "VALIDATION_ERROR"
    assert r.get_json()["error"]["details"][0]["field"] == field
    assert quota.usage(ctx["user"]["id"])["used"] == 0


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"style": "gothic"}, 422, "UNKNOWN_STYLE"),
    ({"room_type": "garage"}, 422, "UNKNOWN_ROOM_TYPE"),
    ({"style": "spa"}, 422, "STYLE_ROOM_MISMATCH"),
    ({"upload_id": "nope"}, 404, "UPLOAD_NOT_FOUND"),
])
def test_generate_rejects_unknown_references(fn, ctx, body, status, code):
    r = _generate(fn, ctx, **body)
    assert r.status_code == status and r.get_json()["error"]["code"] == code
    assert quota.usage(ctx["user"]["id"])["used"] == 0


def test_generate_refuses_someone_elses_and_unready_uploads(fn, ctx, make_user):
    other = make_user()
    r = _generate(fn, {**ctx, "upload": ready_upload(other["user"]["id"])})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "UPLOAD_NOT_FOUND"
    db.collection("uploads").update_one({"_id": ctx["upload"]}, {"$set": {"status": "pending"}})
    r = _generate(fn, ctx)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "UPLOAD_NOT_READY"


def test_generate_needs_json_and_a_token(fn, ctx):
    r = fn("interiors_generate").post("/", data="upload_id=1", headers=ctx["headers"],
                                      content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415
    r = fn("interiors_generate").post("/", data="{", headers=ctx["headers"], content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "INVALID_JSON"
    assert fn("interiors_generate").post("/", json={}).status_code == 401


def test_idempotency_key_returns_the_same_interior(fn, ctx, make_user):
    first = _generate(fn, ctx, headers={"Idempotency-Key": "key-1"})
    again = _generate(fn, ctx, headers={"Idempotency-Key": "key-1"})
    assert first.status_code == again.status_code == 202
    assert first.get_json()["interior"]["id"] == again.get_json()["interior"]["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert quota.usage(ctx["user"]["id"])["used"] == 1
    assert db.collection("interiors").count_documents({"user_id": ctx["user"]["id"]}) == 1
    # another user's identical key is theirs alone
    other = make_user()
    mine = _generate(fn, {**other, "upload": ready_upload(other["user"]["id"])}, headers={"Idempotency-Key": "key-1"})
    assert mine.get_json()["interior"]["id"] != first.get_json()["interior"]["id"]
    bad = _generate(fn, ctx, headers={"Idempotency-Key": "x" * 200})
    assert bad.status_code == 400


def test_a_used_idempotency_key_with_a_different_request_is_refused(fn, ctx):
    first = _generate(fn, ctx, headers={"Idempotency-Key": "key-2"}, variants=1)
    assert first.status_code == 202
    other = _generate(fn, ctx, headers={"Idempotency-Key": "key-2"}, variants=3)
    assert other.status_code == 422 and other.get_json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert quota.usage(ctx["user"]["id"])["used"] == 1
    assert db.collection("interiors").count_documents({"user_id": ctx["user"]["id"]}) == 1
    assert _generate(fn, ctx, headers={"Idempotency-Key": "key-2"}, variants=1).status_code == 202  # the retry


def test_retries_of_the_request_that_took_the_last_unit_are_replays_not_429(fn, ctx, env):
    """A browser retrying (same Idempotency-Key) while its first request still runs: the key is settled before
    the unit is taken, so no retry finds the quota used up by the request it repeats."""
    env(generation_quota=3)
    db.collection("quota_usage").insert_one({"_id": ctx["user"]["id"], "used": 2,
                                             "resets_at": db.utcnow() + timedelta(days=1)})
    db.collection(interiors.COLLECTION)  # its indexes exist, as in any running deployment
    tries = 6
    barrier, answers = threading.Barrier(tries), []

    def post():
        client = fn("interiors_generate")
        barrier.wait()
        answers.append(_generate(lambda _name: client, ctx, headers={"Idempotency-Key": "last-unit"}))

    threads = [threading.Thread(target=post) for _ in range(tries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in answers] == [202] * tries, [r.get_json() for r in answers]
    assert len({r.get_json()["interior"]["id"] for r in answers}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == tries - 1
    assert quota.usage(ctx["user"]["id"])["used"] == 3
    # A new request (another key) is refused, and leaves no interior behind.
    other = _generate(fn, ctx, headers={"Idempotency-Key": "another"})
    assert other.status_code == 429 and other.get_json()["error"]["code"] == "QUOTA_EXCEEDED"
    assert db.collection("interiors").count_documents({"user_id": ctx["user"]["id"]}) == 1
    assert _generate(fn, ctx, headers={"Idempotency-Key": "another"}).status_code == 429  # its retry too


def test_quota_exceeded_is_429_with_retry_after(fn, ctx, env):
    env(generation_quota=1)
    assert _generate(fn, ctx).status_code == 202
    r = _generate(fn, ctx)
    assert r.status_code == 429 and r.get_json()["error"]["code"] == "QUOTA_EXCEEDED"
    assert 0 < int(r.headers["Retry-After"]) <= get_settings().generation_quota_period_seconds
    (detail,) = r.get_json()["error"]["details"]
    assert (detail["field"], detail["type"], detail["used"], detail["limit"]) == ("quota", "quota_exceeded", 1, 1)
    assert detail["resets_at"].endswith("Z")  # the same time format as every other answer


def test_one_unit_left_and_two_concurrent_requests_give_one_202_and_one_429(fn, ctx, env):
    env(generation_quota=3)
    db.collection("quota_usage").insert_one({"_id": ctx["user"]["id"], "used": 2,
                                             "resets_at": db.utcnow() + timedelta(days=1)})
    barrier, results = threading.Barrier(2), []

    def post():
        client = fn("interiors_generate")
        barrier.wait()
        results.append(_generate(lambda _name: client, ctx).status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [202, 429]
    assert quota.usage(ctx["user"]["id"])["used"] == 3


def test_enqueue_failure_fails_the_interior_refunds_and_answers_503(fn, ctx, env):
    from scripts.localstack import free_port

    env(task_queue="cloudtasks", tasks_emulator_host=f"127.0.0.1:{free_port()}")  # nothing listens there
    r = _generate(fn, ctx)
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "ENQUEUE_FAILED" and r.headers["Retry-After"]
    doc = db.collection("interiors").find_one({"user_id": ctx["user"]["id"]})
    assert doc["status"] == "failed" and doc["reason"] == "ENQUEUE_FAILED"
    assert quota.usage(ctx["user"]["id"])["used"] == 0
    # that user already got the 503: the job's sweep announces nothing for it, however old it is
    db.collection("interiors").update_one({"_id": doc["_id"]},
                                          {"$set": {"finished_at": db.utcnow() - timedelta(hours=1)}})
    assert generation.run()["announced"] == 0
    assert db.collection("notifications").count_documents({"user_id": ctx["user"]["id"]}) == 0


def test_get_validates_and_hides_other_users(fn, ctx, make_user):
    doc = queued_interior(ctx["user"], ctx["upload"])
    get = fn("interiors_get")
    assert get.get("/", headers=ctx["headers"]).status_code == 400
    assert get.get("/?id=nope", headers=ctx["headers"]).status_code == 404
    assert get.get(f"/?id={doc['_id']}", headers=make_user()["headers"]).status_code == 404
    body = get.get(f"/?id={doc['_id']}", headers=ctx["headers"]).get_json()["interior"]
    assert body["status"] == "queued" and body["variants"] == [] and body["saved"] is False


def test_list_pages_newest_first_with_a_stable_cursor_and_saved_filter(fn, ctx, env):
    env(generation_quota=50)
    ids = [queued_interior(ctx["user"], ctx["upload"])["_id"] for _ in range(5)]
    list_fn, save_fn = fn("interiors_list"), fn("interiors_save")
    page = list_fn.get("/?limit=2", headers=ctx["headers"]).get_json()
    seen = [i["id"] for i in page["interiors"]]
    queued_interior(ctx["user"], ctx["upload"])  # a new one must not shift the next pages
    while page["next_cursor"]:
        page = list_fn.get(f"/?limit=2&cursor={page['next_cursor']}", headers=ctx["headers"]).get_json()
        seen += [i["id"] for i in page["interiors"]]
    assert seen == list(reversed(ids))
    r = save_fn.post("/", json={"interior_id": ids[1], "saved": True}, headers=ctx["headers"])
    assert r.status_code == 200 and r.get_json()["interior"]["saved"] is True
    saved = list_fn.get("/?saved=true", headers=ctx["headers"]).get_json()["interiors"]
    assert [i["id"] for i in saved] == [ids[1]]
    def forged(*values) -> str:
        return "/?cursor=" + base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")

    for bad in ("/?limit=0", "/?limit=101", "/?cursor=%%%", "/?cursor=bm90LWpzb24", "/?saved=maybe", "/?x=1",
                forged("0001-01-01T00:00:00+01:00", "x"), forged("9999-12-31T23:59:59-01:00", "x"),
                forged("2026-01-01T00:00:00", "x"), forged({"$gt": ""}, "x")):
        r = list_fn.get(bad, headers=ctx["headers"])
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "VALIDATION_ERROR", bad


def test_save_and_delete_validate_and_hide_other_users(fn, ctx, make_user):
    doc = queued_interior(ctx["user"], ctx["upload"])
    other = make_user()["headers"]
    save, delete = fn("interiors_save"), fn("interiors_delete")
    assert save.post("/", json={"interior_id": doc["_id"]}, headers=other).status_code == 404
    bad = {"interior_id": doc["_id"], "saved": "yes please"}
    assert save.post("/", json=bad, headers=ctx["headers"]).status_code == 400
    assert save.post("/", json={}, headers=ctx["headers"]).status_code == 400
    assert delete.delete(f"/?id={doc['_id']}", headers=other).status_code == 404
    assert delete.delete("/", headers=ctx["headers"]).status_code == 400
    assert delete.get(f"/?id={doc['_id']}", headers=ctx["headers"]).status_code == 405
    assert db.collection("interiors").count_documents({"_id": doc["_id"]}) == 1


def test_delete_removes_the_interior_and_its_images(fn, ctx):
    from lib import storage

    doc = queued_interior(ctx["user"], ctx["upload"])
    assert generation.run([doc["_id"]])["done"] == 1
    prefix = f"interiors/{ctx['user']['id']}/{doc['_id']}/"
    bucket = get_settings().images_bucket
    assert list(storage.client().list_blobs(bucket, prefix=prefix))
    r = fn("interiors_delete").post("/", json={"interior_id": doc["_id"]}, headers=ctx["headers"])
    assert r.status_code == 204
    assert list(storage.client().list_blobs(bucket, prefix=prefix)) == []
    assert fn("interiors_get").get(f"/?id={doc['_id']}", headers=ctx["headers"]).status_code == 404
    assert quota.usage(ctx["user"]["id"])["used"] == 1  # a delivered design is not refunded


def test_a_delete_that_storage_interrupts_keeps_the_interior_and_can_be_retried(fn, ctx, monkeypatch):
    from google.api_core.exceptions import ServiceUnavailable

    from lib import storage

    doc = queued_interior(ctx["user"], ctx["upload"])
    assert generation.run([doc["_id"]])["done"] == 1
    working = storage.delete_prefix

    def outage(bucket: str, prefix: str) -> int:
        raise ServiceUnavailable("storage is down")

    monkeypatch.setattr(storage, "delete_prefix", outage)
    r = fn("interiors_delete").delete(f"/?id={doc['_id']}", headers=ctx["headers"])
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert fn("interiors_get").get(f"/?id={doc['_id']}", headers=ctx["headers"]).status_code == 200  # still there
    monkeypatch.setattr(storage, "delete_prefix", working)
    assert fn("interiors_delete").delete(f"/?id={doc['_id']}", headers=ctx["headers"]).status_code == 204
    prefix = f"interiors/{ctx['user']['id']}/{doc['_id']}/"
    assert list(storage.client().list_blobs(get_settings().images_bucket, prefix=prefix)) == []
    assert quota.usage(ctx["user"]["id"])["used"] == 1  # delivered, so not refunded by either attempt


def test_deleting_a_queued_interior_refunds_it(fn, ctx):
    doc = queued_interior(ctx["user"], ctx["upload"])
    assert fn("interiors_delete").delete(f"/?id={doc['_id']}", headers=ctx["headers"]).status_code == 204
    assert quota.usage(ctx["user"]["id"])["used"] == 0


def test_deleting_a_running_interior_whose_variants_exist_is_not_refunded(fn, ctx):
    """Variants are shown as they arrive; otherwise: download them, delete, get the unit back, repeat."""
    doc = queued_interior(ctx["user"], ctx["upload"])
    claimed = interiors.claim(doc["_id"], "worker-1")
    generation.generate_variants(claimed, "worker-1", {})
    shown = fn("interiors_get").get(f"/?id={doc['_id']}", headers=ctx["headers"]).get_json()["interior"]
    assert shown["status"] == "running" and shown["variants"][0]["image_url"]
    assert fn("interiors_delete").delete(f"/?id={doc['_id']}", headers=ctx["headers"]).status_code == 204
    assert quota.usage(ctx["user"]["id"])["used"] == 1


def test_deleting_a_running_interior_before_any_variant_refunds_it(fn, ctx):
    doc = queued_interior(ctx["user"], ctx["upload"])
    interiors.claim(doc["_id"], "worker-1")
    assert fn("interiors_delete").delete(f"/?id={doc['_id']}", headers=ctx["headers"]).status_code == 204
    assert quota.usage(ctx["user"]["id"])["used"] == 0


def _finished_event(message_id: str, payload: dict):
    import json

    from lib import events

    return events.pubsub_cloud_event("interior-finished", json.dumps(payload).encode(), {"kind": "interior.finished"},
                                     message_id)


def _deliver(event) -> int:
    """POST `event` to on_interior_finished as a push subscription does (binary CloudEvent); the status."""
    import functions_framework
    from cloudevents.conversion import to_binary

    from lib import discovery

    app = functions_framework.create_app(target="on_interior_finished",
                                         source=str(discovery.function_source("on_interior_finished")),
                                         signature_type="cloudevent")
    headers, body = to_binary(event)
    return app.test_client().post("/", headers=headers, data=body).status_code


def test_on_interior_finished_is_idempotent_and_drops_malformed_messages(fn, ctx):
    from cloudevents.http import CloudEvent

    doc = queued_interior(ctx["user"], ctx["upload"])
    payload = {"interior_id": doc["_id"], "user_id": ctx["user"]["id"], "status": "done"}
    _deliver(_finished_event("m-1", payload))
    _deliver(_finished_event("m-1", payload))  # redelivered
    assert db.collection("notifications").count_documents({"user_id": ctx["user"]["id"]}) == 1
    for bad in (CloudEvent({"type": "x", "source": "y"}, {"nothing": True}),
                CloudEvent({"type": "x", "source": "y"}, {"message": {"data": "%%%"}}),
                _finished_event("m-2", {"interior_id": 5}),
                _finished_event("m-3", {**payload, "user_id": "someone-else"}),
                _finished_event("m-4", {**payload, "status": "weird"})):
        assert _deliver(bad) == 200  # dropped, not raised (a 500 would make Pub/Sub redeliver it forever)
    assert db.collection("notifications").count_documents({}) == 1


def test_on_interior_finished_through_functions_framework(fn, ctx):
    doc = queued_interior(ctx["user"], ctx["upload"])
    assert _deliver(_finished_event("m-9", {"interior_id": doc["_id"], "user_id": ctx["user"]["id"],
                                            "status": "failed", "reason": "PROVIDER_BILLING"})) == 200
    note = db.collection("notifications").find_one({"user_id": ctx["user"]["id"]})
    assert note["status"] == "failed" and note["reason"] == "PROVIDER_BILLING"


def test_me_reports_usage_recent_saved_and_notifications(fn, ctx, env):
    env(generation_quota=20)
    me = fn("me").get("/", headers=ctx["headers"]).get_json()
    assert me["usage"] == {"used": 0, "limit": 20, "resets_at": None}
    assert me["recent_saved"] == [] and me["notifications"] == []
    ids = [queued_interior(ctx["user"], ctx["upload"])["_id"] for _ in range(8)]
    for interior_id in ids:
        fn("interiors_save").post("/", json={"interior_id": interior_id, "saved": True}, headers=ctx["headers"])
    assert generation.run([ids[0]])["done"] == 1
    me = fn("me").get("/", headers=ctx["headers"]).get_json()
    assert me["usage"]["used"] == 8 and me["usage"]["limit"] == 20 and me["usage"]["resets_at"]
    assert len(me["recent_saved"]) == 6 and me["recent_saved"][0]["id"] == ids[-1]
    assert [n["interior_id"] for n in me["notifications"]] == [ids[0]]
    assert me["unread_notifications"] == 1 and me["notifications"][0]["read"] is False
    assert me["user"]["id"] == ctx["user"]["id"]


def _notify(user_id: str, interior_id: str, status: str = "done") -> str:
    from lib import notifications

    assert notifications.record_interior_finished("m", {"interior_id": interior_id, "user_id": user_id,
                                                        "status": status}) == "recorded"
    return db.collection("notifications").find_one({"interior_id": interior_id, "status": status})["_id"]


def test_notifications_are_marked_read_by_id_or_all_and_only_the_callers(fn, ctx, make_user):
    read = fn("notifications_read")
    mine = [_notify(ctx["user"]["id"], queued_interior(ctx["user"], ctx["upload"])["_id"]) for _ in range(3)]
    other = make_user()
    theirs = _notify(other["user"]["id"], queued_interior(other["user"], ready_upload(other["user"]["id"]))["_id"])

    r = read.post("/", json={"ids": [mine[0], theirs, "0" * 32]}, headers=ctx["headers"])
    assert r.status_code == 200 and r.get_json() == {"updated": 1, "unread": 2}
    assert db.collection("notifications").find_one({"_id": theirs})["read"] is False  # not the caller's
    assert read.post("/", json={"ids": [mine[0]]}, headers=ctx["headers"]).get_json() == {"updated": 0, "unread": 2}
    assert read.post("/", json={"all": True}, headers=ctx["headers"]).get_json() == {"updated": 2, "unread": 0}
    me = fn("me").get("/", headers=ctx["headers"]).get_json()
    assert me["unread_notifications"] == 0 and all(n["read"] for n in me["notifications"])
    assert fn("me").get("/", headers=other["headers"]).get_json()["unread_notifications"] == 1


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": ["a"], "all": True}, {"all": False}, {"ids": "a"},
                                  {"ids": ["a"] * 101}, {"all": "yes"}, {"ids": [1]}, {"other": 1}])
def test_notifications_read_refuses_bad_bodies(fn, ctx, body):
    r = fn("notifications_read").post("/", json=body, headers=ctx["headers"])
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "VALIDATION_ERROR", body
    assert fn("notifications_read").post("/", json={"all": True}).status_code == 401


def test_deleting_the_account_deletes_its_photos_and_designs(fn, ctx, make_user):
    from lib import storage

    settings = get_settings()
    doc = queued_interior(ctx["user"], ctx["upload"])
    assert generation.run([doc["_id"]])["done"] == 1
    user_id = ctx["user"]["id"]
    other = make_user()
    other_upload = ready_upload(other["user"]["id"])

    def objects(bucket, prefix):
        return list(storage.client().list_blobs(bucket, prefix=prefix))

    raw = f"{settings.raw_uploads_prefix}{user_id}/{ctx['upload']}"  # the photo as the browser PUT it
    storage.upload_bytes(settings.uploads_bucket, raw, b"raw photo bytes", "image/jpeg")
    assert objects(settings.images_bucket, f"interiors/{user_id}/")
    assert objects(settings.images_bucket, f"uploads/{user_id}/")
    assert fn("me").delete("/", json={"current_password": ctx["password"]}, headers=ctx["headers"]).status_code == 204
    for bucket, prefix in ((settings.images_bucket, f"interiors/{user_id}/"),
                           (settings.images_bucket, f"uploads/{user_id}/"),
                           (settings.uploads_bucket, f"{settings.raw_uploads_prefix}{user_id}/")):
        assert objects(bucket, prefix) == [], prefix
    for name in ("uploads", "interiors", "notifications"):
        assert db.collection(name).count_documents({"user_id": user_id}) == 0, name
    # Nobody else loses anything.
    assert db.collection("uploads").count_documents({"_id": other_upload, "status": "ready"}) == 1
    assert objects(settings.images_bucket, f"uploads/{other['user']['id']}/")


@pytest.mark.parametrize("room_type", ["living_room", "Living Room", "living-room", "Living room"])
def test_room_type_and_style_accept_the_spellings_people_use(fn, ctx, room_type):
    r = _generate(fn, ctx, room_type=room_type, style="Boho")
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["interior"]["room_type"] == "living_room"


# --- a database outage ---------------------------------------------------------------------------------------

@pytest.fixture
def outage(env, make_user):
    """A SecantusDB of this test's own (pausing it disturbs nothing else), seeded like `ctx`; yields
    {pause(), resume(), user, headers, upload}. A paused server accepts connections and never answers, as a
    stalled or partitioned database does."""
    import os
    import signal

    from scripts.localstack import MongoServer

    server = MongoServer(":memory:").start()
    env(mongodb_uri=server.uri)
    db.forget_indexes()
    paused = []

    def pause() -> None:
        os.kill(server.proc.pid, signal.SIGSTOP)
        paused.append(True)

    def resume() -> None:
        if paused:
            os.kill(server.proc.pid, signal.SIGCONT)
            paused.clear()

    try:
        seed_mini_catalog()
        login = make_user()
        yield {**login, "upload": ready_upload(login["user"]["id"]), "pause": pause, "resume": resume}
    finally:
        resume()
        for execution_id in job_runner.execution_ids():
            job_runner.wait(execution_id, timeout=120)
        server.stop()
        db.forget_indexes()


def test_a_paused_database_answers_503_within_a_few_seconds(fn, outage):
    import time

    outage["pause"]()
    try:
        for name, call in (("me", lambda c: c.get("/", headers=outage["headers"])),
                           ("interiors_generate", lambda c: _generate(fn, outage, variants=1)),
                           ("interiors_list", lambda c: c.get("/", headers=outage["headers"]))):
            started = time.monotonic()
            r = call(fn(name))
            elapsed = time.monotonic() - started
            assert r.status_code == 503 and r.get_json()["error"]["code"] == "DEPENDENCY_UNAVAILABLE", (name, r.data)
            assert elapsed < 8, (name, elapsed)  # 8.5-14 s before; MONGODB_TIMEOUT_MS per operation now
    finally:
        outage["resume"]()
    assert fn("me").get("/", headers=outage["headers"]).status_code == 200  # and it recovers by itself


def test_a_generate_burst_cut_by_an_outage_leaves_no_charged_interior_behind(fn, outage, env):
    """Six generate requests at once, the database pausing in the middle: each answers 202 or 503, and once
    it is back (and the sweep ran), every interior whose request got 503 is failed and refunded; the units
    used are exactly the 202 answers."""
    import time

    env(interior_enqueue_seconds=3)
    answers: list[int] = []

    def request() -> None:
        answers.append(_generate(fn, outage, variants=1).status_code)

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
    # pause as soon as the first interior is stored: the others are mid-write, mid-enqueue or mid-confirmation
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and db.collection("interiors").count_documents({}) == 0:
        time.sleep(0.005)
    outage["pause"]()
    time.sleep(4)  # longer than any request waits for the database
    outage["resume"]()
    for thread in threads:
        thread.join(60)
    assert set(answers) <= {202, 503} and len(answers) == 6, answers
    for execution_id in job_runner.execution_ids():
        job_runner.wait(execution_id, timeout=120)
    stored = list(db.collection("interiors").find({}, {"enqueue_by": 1}))
    time.sleep(max([0.0] + [(d["enqueue_by"] - db.utcnow()).total_seconds() + 1 for d in stored]))
    generation.run()  # the sweep, once every request's time to confirm its enqueue is over
    docs = list(db.collection("interiors").find({}))
    failed = [d for d in docs if d["status"] == "failed"]
    charged = [d for d in docs if d["status"] != "failed"]
    outcome = (answers, [(d["status"], d.get("reason")) for d in docs])
    assert len(charged) == answers.count(202) and all(d["status"] == "done" for d in charged), outcome
    assert all(d["reason"] == interiors.ENQUEUE_FAILED and not d["variants"] for d in failed), outcome
    # every failed one was refunded (a unit whose take the database applied only after the request gave up,
    # with no interior stored, is the one thing that can still be lost: see the README)
    used = quota.usage(outage["user"]["id"])["used"]
    assert len(charged) <= used <= len(answers) - len(failed), (used, outcome)


def test_an_interior_whose_request_never_confirmed_its_enqueue_is_failed_and_refunded(env, ctx):
    """The request stored the interior but could not confirm the enqueue (it answered 503): a task that still
    arrives, or the sweep, fails and refunds it instead of generating it; a confirmation the database applied
    only after the request gave up counts as none."""
    env(interior_enqueue_seconds=1)
    never = queued_interior(ctx["user"], ctx["upload"], confirm=False)
    late = queued_interior(ctx["user"], ctx["upload"], confirm=False)
    db.collection("interiors").update_one({"_id": late["_id"]}, {"$set": {
        "confirm_by": late["created_at"], "enqueued_at": late["created_at"] + timedelta(seconds=5)}})
    assert quota.usage(ctx["user"]["id"])["used"] == 2
    generation.run([never["_id"], late["_id"]], retry_delay=0)
    for interior_id in (never["_id"], late["_id"]):
        doc = db.collection("interiors").find_one({"_id": interior_id})
        assert doc["status"] == "failed" and doc["reason"] == interiors.ENQUEUE_FAILED and not doc["variants"]
        assert "spent_at" not in doc
    assert quota.usage(ctx["user"]["id"])["used"] == 0
