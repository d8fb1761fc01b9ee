"""The local trigger chain over real HTTP: a signed-URL upload becomes `ready` with no manual step.

Pub/Sub route: fake-gcs-server finalize notification -> Pub/Sub emulator -> bridge -> binary CloudEvent
POSTed to the dev server's /on-upload-finalized (skipped where the emulator is not installed).
Polling route: bridge lists the buckets and POSTs the same CloudEvent (what machines without it use).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid

import pytest
import requests

from scripts.localstack import GcsServer, PubSubEmulator
from scripts.storage_events import StorageEventBridge, default_routes
from tests import photos


def start_dev_server(port: int = 0):
    """The dev server's app (scripts/devserver.py, every function mounted) on 127.0.0.1 in a thread of this
    process (so it shares the test's database settings). Returns (url, stop)."""
    from werkzeug.serving import make_server

    from scripts import devserver

    app, _ = devserver.build_app()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=10)

    return f"http://127.0.0.1:{server.server_port}", stop


@pytest.fixture
def dev_server(stack):
    url, stop = start_dev_server()
    yield url
    stop()


def upload_and_wait(base_url: str, user: dict, data: bytes, timeout: float = 20.0) -> dict:
    created = requests.post(f"{base_url}/uploads-create", json={"content_type": "image/jpeg", "size_bytes": len(data)},
                            headers=user["headers"], timeout=30)
    assert created.status_code == 201, created.text
    reply = created.json()
    assert requests.put(reply["put_url"], data=data, headers=reply["headers"], timeout=30).status_code == 200
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        upload = requests.get(f"{base_url}/uploads-get", params={"id": reply["upload"]["id"]},
                              headers=user["headers"], timeout=30).json()["upload"]
        if upload["status"] != "pending":
            return upload
        time.sleep(0.1)
    raise AssertionError(f"upload still pending after {timeout}s")


def test_routes_follow_the_functions_that_exist(stack, tmp_path):
    from lib.config import get_settings

    settings = get_settings()
    assert default_routes()[settings.uploads_bucket] == "/on-upload-finalized"
    (tmp_path / "functions" / "on_upload_finalized").mkdir(parents=True)
    (tmp_path / "functions" / "on_upload_finalized" / "main.py").write_text("")
    assert default_routes(tmp_path) == {settings.uploads_bucket: "/on-upload-finalized"}


def test_chain_through_the_pubsub_emulator(stack, dev_server, make_user):
    emulator = next((c for c in stack.components if isinstance(c, PubSubEmulator)), None)
    if emulator is None:
        pytest.skip("the Pub/Sub emulator is not installed on this machine")
    # A subscription of this test's own, so earlier tests' notifications are not replayed into it.
    subscription = emulator.create_subscription(f"bridge-{uuid.uuid4().hex[:12]}", GcsServer.notification_topic)
    # A notification already waiting when the bridge starts (an object of before, e.g. the demo seed's images)
    # is not announced: only objects finalized from the start on are.
    from lib.config import get_settings

    earlier = {"bucket": get_settings().uploads_bucket, "name": "raw/written-before-the-bridge", "generation": "1"}
    requests.post(f"http://{emulator.host}/v1/projects/{emulator.project}/topics/{GcsServer.notification_topic}"
                  ":publish", json={"messages": [{"data": base64.b64encode(json.dumps(earlier).encode()).decode(),
                                                  "attributes": {"eventType": "OBJECT_FINALIZE"}}]},
                  timeout=10).raise_for_status()
    delivered = []
    bridge = StorageEventBridge(dev_server, default_routes(), pubsub_host=emulator.host, subscription=subscription,
                                poll_interval=0.05, on_delivered=lambda obj, status: delivered.append(obj["name"]))
    assert bridge.mode == "pubsub"
    bridge.start()
    try:
        user = make_user()
        upload = upload_and_wait(dev_server, user, photos.phone_jpeg(1600, 1200, orientation=6))
        assert (upload["status"], upload["width"], upload["height"]) == ("ready", 1200, 1600)
        assert requests.get(upload["image_url"], timeout=30).status_code == 200
        rejected = upload_and_wait(dev_server, user, b"this is not a photo at all" * 10)
        assert (rejected["status"], rejected["reason"]) == ("rejected", "not_an_image")
        # Our outputs in the images bucket were announced too, and not routed anywhere.
        assert all(name.startswith("raw/") for name in delivered) and len(delivered) == 2
        assert earlier["name"] not in delivered
    finally:
        bridge.stop()


def test_chain_by_polling_without_the_emulator(stack, dev_server, make_user):
    bridge = StorageEventBridge(dev_server, default_routes(), poll_interval=0.05)
    assert bridge.mode == "polling"
    bridge.start()
    try:
        upload = upload_and_wait(dev_server, make_user(), photos.phone_jpeg(1024, 768))
        assert (upload["status"], upload["width"], upload["height"]) == ("ready", 1024, 768)
    finally:
        bridge.stop()


def test_bridge_retries_until_the_function_answers(stack, make_user):
    """An object finalized while the dev server is down is delivered once it is up (at-least-once)."""
    from lib import storage
    from lib.config import get_settings
    from scripts.localstack import free_port

    port = free_port()
    bridge = StorageEventBridge(f"http://127.0.0.1:{port}", default_routes(), poll_interval=0.05).start()
    try:
        unrouted = {"bucket": get_settings().images_bucket, "name": "x", "generation": "1"}
        assert bridge.deliver(unrouted, "evt") is True  # nobody listens to that bucket: done, not retried
        user = make_user()
        from lib import uploads

        created = uploads.create_pending(user["user"]["id"], uploads.CreateBody(content_type="image/jpeg",
                                                                                size_bytes=100_000))
        upload_id = created.upload.id
        data = photos.image_bytes("JPEG", 400, 300)
        assert requests.put(created.put_url, data=data, headers=created.headers, timeout=30).ok
        time.sleep(0.5)  # the bridge has seen the object and failed to deliver it a few times
        assert uploads.get_for_user(user["user"]["id"], upload_id)["status"] == "pending"
        url, stop = start_dev_server(port)
        try:
            deadline = time.monotonic() + 20
            while uploads.get_for_user(user["user"]["id"], upload_id)["status"] == "pending":
                assert time.monotonic() < deadline, "never delivered after the server came up"
                time.sleep(0.1)
            assert uploads.get_for_user(user["user"]["id"], upload_id)["status"] == "ready"
        finally:
            stop()
    finally:
        bridge.stop()
    assert storage.parse_ref(uploads.get_for_user(user["user"]["id"], upload_id)["image"])[0] == \
        get_settings().images_bucket


@pytest.mark.parametrize(("status", "done", "delivered"), [(204, True, True), (503, False, False),
                                                          (429, False, False), (400, True, False)])
def test_bridge_retries_5xx_and_429_and_drops_other_4xx(status, done, delivered):
    """What Eventarc does with a function's answer: 2xx delivered, 5xx/429 redelivered, other 4xx dropped."""
    from tests.doubles import DetectorDouble  # any HTTP peer answering one status and recording requests

    peer = DetectorDouble(reply=status).start()
    seen = []
    try:
        bridge = StorageEventBridge(peer.url, {"uploads": "/on-upload-finalized"},
                                    on_delivered=lambda obj, code: seen.append((obj["name"], code)))
        obj = {"bucket": "uploads", "name": "raw/u/1", "generation": "7"}
        assert bridge.deliver(obj, "evt-1") is done
        assert [r["path"] for r in peer.received] == ["/on-upload-finalized"]
        assert peer.received[0]["headers"]["ce-type"] == "google.cloud.storage.object.v1.finalized"
        assert seen == ([("raw/u/1", status)] if delivered else [])
    finally:
        peer.stop()


def test_a_photo_that_arrived_while_the_stack_was_down_is_processed_at_the_next_start(stack, make_user):
    """`make run` stopped between the PUT and its event: the next start delivers the pending upload's object."""
    from lib import uploads
    from scripts.storage_events import pending_upload_objects

    user = make_user()
    arrived, never_sent = (uploads.create_pending(user["user"]["id"], uploads.CreateBody(
        content_type="image/jpeg", size_bytes=100_000)) for _ in range(2))
    data = photos.image_bytes("JPEG", 400, 300)
    assert requests.put(arrived.put_url, data=data, headers=arrived.headers, timeout=30).ok
    backlog = pending_upload_objects()
    assert [obj["name"].rsplit("/", 1)[1] for obj in backlog] == [arrived.upload.id]

    url, stop = start_dev_server()
    bridge = StorageEventBridge(url, default_routes(), poll_interval=0.05).start(backlog=backlog)
    try:
        deadline = time.monotonic() + 20
        while uploads.get_for_user(user["user"]["id"], arrived.upload.id)["status"] == "pending":
            assert time.monotonic() < deadline, "the backlog was never delivered"
            time.sleep(0.1)
        assert uploads.get_for_user(user["user"]["id"], arrived.upload.id)["status"] == "ready"
        assert uploads.get_for_user(user["user"]["id"], never_sent.upload.id)["status"] == "pending"
        assert pending_upload_objects() == []
    finally:
        bridge.stop()
        stop()
