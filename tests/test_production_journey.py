"""The production configuration end to end, every production adapter at once, with ENVIRONMENT=production (the
settings guard on): photo in, notification out, products and AR models attached.

    functions       the dev server's app (every function loaded through functions-framework) in a thread
    documents       SecantusDB; vectors the Qdrant stand-in over its REST API; objects fake-gcs-server behind
                    the local storage front, which verifies every V4 signature as Cloud Storage does
    signing         IAM signBlob double (no key file; tokens from its token endpoint through ADC)
    upload trigger  fake-gcs-server notifications -> Pub/Sub emulator -> the Eventarc stand-in (storage_events)
    TASK_QUEUE      cloudtasks: gcloud-tasks-emulator, dispatching jobs:run (no overrides) to ...
    JOB_RUNNER      cloudrun: a double of the Cloud Run Admin API that starts the job with the overrides given
                    (the import's --source), or as deployed
    EVENTS          pubsub: the Pub/Sub emulator, pushing interior-finished to on_interior_finished
    GENERATOR       replicate (its double); DETECTOR vision and EMBEDDER vertex (their doubles), the catalog
                    imported by the import job (started by on_catalog_uploaded) with the same embedder

Every endpoint on this machine is named in EMULATOR_HOSTS, the only way ENVIRONMENT=production accepts one.
Skipped where the Pub/Sub emulator is not installed (EVENTS=pubsub needs it).
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests

from lib import db, storage
from lib.config import get_settings
from scripts.iam_double import IamDouble
from scripts.journey import room_photo
from scripts.localstack import GcsServer, PubSubEmulator, TasksEmulator
from tests.doubles import CloudRunJobsDouble, ReplicateDouble, VertexEmbeddingDouble, VisionDouble
from tests.generation_helpers import product_picture

pytestmark = pytest.mark.e2e

SIGNER = "zipkku-runtime@zipkku-local.iam.gserviceaccount.com"
CATALOG = {"sofa": 3, "lamp": 3, "table": 3}  # label -> products (pictures from tests/generation_helpers.py)


def _host(url: str) -> str:
    return urlsplit(url if "//" in url else f"//{url}").netloc


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout}s")


@pytest.fixture
def production(stack, settings_env, tmp_path):
    emulator = next((c for c in stack.components if isinstance(c, PubSubEmulator)), None)
    if emulator is None:
        pytest.skip("the Pub/Sub emulator is not installed on this machine (EVENTS=pubsub needs it)")
    from tests.test_uploads_chain import start_dev_server

    settings = get_settings()
    project, region = settings.gcp_project, settings.gcp_region
    iam = IamDouble(stack.env["SIGNING_KEY_FILE"], SIGNER).start()
    replicate = ReplicateDouble().start()
    vision = VisionDouble(iam.accepts_token, latency=0.05).start()
    vertex = VertexEmbeddingDouble(iam.accepts_token, project, region, latency=0.03).start()
    cloud_run = CloudRunJobsDouble(project, region).start()
    tasks = TasksEmulator(project, region, settings.tasks_queue_name, log_path=tmp_path / "tasks.log").start()
    topic = f"interior-finished-{uuid.uuid4().hex[:8]}"
    emulator.create_topic(topic)
    url, stop_server = start_dev_server()
    started = [iam, replicate, vision, vertex, cloud_run]
    try:
        # the push subscription terraform creates for on_interior_finished (modules/function)
        requests.put(f"http://{emulator.host}/v1/projects/{project}/subscriptions/{topic}-push", json={
            "topic": f"projects/{project}/topics/{topic}", "ackDeadlineSeconds": 10,
            "pushConfig": {"pushEndpoint": f"{url}/on-interior-finished"}}, timeout=10).raise_for_status()
        endpoints = [settings.mongodb_uri.get_secret_value(), stack.env["QDRANT_URL"],
                     stack.env["STORAGE_EMULATOR_HOST"], emulator.host, tasks.host,
                     *(double.url for double in started)]
        hosts = sorted({h for endpoint in endpoints for h in _host(endpoint).split(",")})
        settings_env(
            environment="production", emulator_hosts=",".join(hosts), signing_key_file="",
            iam_credentials_url=iam.url, signing_service_account=SIGNER,
            google_application_credentials=iam.write_adc(tmp_path / "adc.json"),
            task_queue="cloudtasks", tasks_emulator_host=tasks.host, cloud_run_api_url=cloud_run.url,
            tasks_service_account="", job_runner="cloudrun",  # production: the queue's routing holds the token
            events="pubsub", interior_finished_topic=topic, pubsub_emulator_host=emulator.host,
            generator="replicate", replicate_api_url=f"{replicate.url}/v1", replicate_api_token=replicate.token,
            replicate_poll_seconds=0.05, detector="vision", vision_api_url=vision.url, embedder="vertex",
            vertex_api_url=vertex.url, vertex_location=region)
        assert get_settings().environment == "production"  # the guard accepted this configuration
        storage.forget_signing_state()
        yield type("Production", (), {"url": url, "iam": iam, "replicate": replicate, "vision": vision,
                                      "vertex": vertex, "cloud_run": cloud_run, "pubsub": emulator})
    finally:
        stop_server()
        tasks.stop()
        for double in started:
            double.stop()
        storage.forget_signing_state()


def _seed_styles_and_ar_models() -> None:
    """What an operator seeds besides products (scripts/seed.py in `make run`): styles, room types, AR models."""
    settings = get_settings()
    db.collection("room_types").insert_one({"_id": "living_room", "name": "Living room"})
    db.collection("styles").insert_one({"_id": "japandi", "name": "Japandi", "description": "calm oak",
                                        "room_types": ["living_room"]})
    for label in CATALOG:
        storage.upload_bytes(settings.catalog_bucket, f"ar/{label}.glb", b"glTF" + bytes(60), "model/gltf-binary")
    db.collection("ar_models").insert_many([
        {"_id": f"ar-{label}", "label": label, "name": label,
         "model_url": storage.ref(settings.catalog_bucket, f"ar/{label}.glb"), "image_url": None,
         "dimensions": {"width_cm": 90.0, "depth_cm": 45.0, "height_cm": 75.0}} for label in CATALOG])


def _drop_catalog() -> None:
    """The operator's catalog file and its pictures, dropped into the catalog bucket (that starts the import)."""
    settings = get_settings()
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["name", "product_url", "image_url", "width", "depth", "height", "price", "label"])
    for label, count in CATALOG.items():
        for i in range(count):
            picture = f"catalog/pictures/{label}-{i}.jpg"
            storage.upload_bytes(settings.catalog_bucket, picture, product_picture(label, i), "image/jpeg")
            writer.writerow([f"{label.title()} {i}", f"https://shop.example/{label}-{i}",
                             f"gs://{settings.catalog_bucket}/{picture}", 100, 50, 80, 199 + i, label])
    storage.upload_bytes(settings.catalog_bucket, "catalog/acme.csv", rows.getvalue().encode(), "text/csv")


def test_photo_in_notification_out_with_every_production_adapter(production, stack, make_user):
    from scripts.storage_events import StorageEventBridge, default_routes

    url = production.url
    subscription = production.pubsub.create_subscription(f"eventarc-{uuid.uuid4().hex[:12]}",
                                                         GcsServer.notification_topic)
    bridge = StorageEventBridge(url, default_routes(), pubsub_host=production.pubsub.host,
                                subscription=subscription, poll_interval=0.05).start()
    try:
        _seed_styles_and_ar_models()
        _drop_catalog()
        # on_catalog_uploaded -> Cloud Run Admin API (JOB_RUNNER=cloudrun) -> the import job, embedding every
        # product picture with Vertex AI, the embedder the generation job uses
        imported = _wait(lambda: db.collection("imports").find_one({"status": "done"}), 120, "the catalog import")
        assert imported["counts"]["imported"] == sum(CATALOG.values()), imported
        assert production.cloud_run.runs[0]["job"] == "import-catalog"
        embedded = len(production.vertex.calls)
        assert embedded == sum(CATALOG.values())

        user = make_user()
        headers = user["headers"]
        created = requests.post(f"{url}/uploads-create", headers=headers, timeout=30,
                                json={"content_type": "image/jpeg", "size_bytes": len(photo := room_photo())})
        assert created.status_code == 201, created.text
        link = created.json()
        # the upload link was signed through signBlob; the storage front verifies it like Cloud Storage
        assert requests.put(link["put_url"], data=photo, headers=link["headers"], timeout=30).status_code == 200
        upload_id = link["upload"]["id"]
        _wait(lambda: requests.get(f"{url}/uploads-get", params={"id": upload_id}, headers=headers, timeout=30)
              .json()["upload"]["status"] == "ready", 60, "the upload becoming ready")

        answer = requests.post(f"{url}/interiors-generate", headers=headers, timeout=30, json={
            "upload_id": upload_id, "room_type": "living_room", "style": "japandi", "variants": 2})
        assert answer.status_code == 202, answer.text
        interior_id = answer.json()["interior"]["id"]

        def finished():
            body = requests.get(f"{url}/interiors-get", params={"id": interior_id}, headers=headers,
                                timeout=30).json()["interior"]
            return body if body["status"] in ("done", "failed") else None

        interior = _wait(finished, 180, "the generation")
        assert interior["status"] == "done", interior
        # Cloud Tasks -> jobs:run without overrides (the job runs as deployed and claims the queued interior)
        run = next(r for r in production.cloud_run.runs if r["job"] == "generate-interior")
        assert (run["args"], run["env"]) == ([], {})
        # Replicate made each variant from a signed link to the photo
        assert [c["body"]["input"]["image"].startswith("http") for c in production.replicate.creates] == [True, True]
        assert len(production.vision.calls) == 2  # one object localization per variant
        for variant in interior["variants"]:
            assert requests.get(variant["image_url"], timeout=30).content[:3] == b"\xff\xd8\xff"
            labels = [part["label"] for part in variant["detected_parts"]]
            assert labels == ["sofa", "lamp", "table"]
            for part in variant["detected_parts"]:
                assert part["products"] and all(p["label"] == part["label"] for p in part["products"])
                model = part["ar_objects"][0]
                assert requests.get(model["model_url"], timeout=30).content[:4] == b"glTF"
        assert len(production.vertex.calls) == embedded + 6  # each variant's three crops

        # interior.finished -> Pub/Sub emulator -> push -> on_interior_finished -> the user's notification
        def notified():
            me = requests.get(f"{url}/me", headers=headers, timeout=30).json()
            return me["notifications"] or None

        notes = _wait(notified, 60, "the notification")
        assert notes[0]["interior_id"] == interior_id
        assert production.iam.sign_calls > 0  # every link above was signed through signBlob
    finally:
        bridge.stop()
