"""Photo uploads through the functions, on the real local components: SecantusDB, fake-gcs-server (signed
PUTs and GETs with `requests`), and on_upload_finalized receiving binary CloudEvents as Eventarc sends them."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
import requests
from PIL import Image

from scripts.storage_events import cloud_event_request
from tests import photos


@pytest.fixture
def user(make_user):
    return make_user()


def create(fn, user, content_type="image/jpeg", size_bytes=1000, **extra):
    return fn("uploads_create").post("/", json={"content_type": content_type, "size_bytes": size_bytes, **extra},
                                     headers=user["headers"])


def get(fn, user, upload_id):
    return fn("uploads_get").get("/", query_string={"id": upload_id}, headers=user["headers"])


def raw_object(upload_id: str) -> tuple[str, str]:
    """(bucket, name) of an upload's raw object, read from its document (never from the client)."""
    from lib import db, storage

    return storage.parse_ref(db.collection("uploads").find_one({"_id": upload_id})["raw"])


def object_resource(bucket: str, name: str) -> dict:
    from lib import storage

    blob = storage.bucket(bucket).get_blob(name)
    assert blob is not None, f"{bucket}/{name} was not uploaded"
    return dict(blob._properties)


def deliver(fn, obj: dict, event_id: str = "evt-1"):
    headers, body = cloud_event_request(obj, event_id)
    response = fn("on_upload_finalized").post("/", data=body, headers=headers)
    assert response.status_code == 200, response.data
    return response


def put_photo(fn, user, data: bytes, content_type="image/jpeg", size_bytes=None) -> tuple[str, dict]:
    """create -> PUT to the signed URL -> deliver the finalize event; returns (upload id, object resource)."""
    created = create(fn, user, content_type, size_bytes if size_bytes is not None else max(len(data), 1))
    assert created.status_code == 201, created.get_json()
    reply = created.get_json()
    put = requests.put(reply["put_url"], data=data, headers=reply["headers"], timeout=30)
    assert put.status_code == 200, put.text
    upload_id = reply["upload"]["id"]
    obj = object_resource(*raw_object(upload_id))
    deliver(fn, obj)
    return upload_id, obj


def image_objects(user_id: str) -> list:
    from lib import storage
    from lib.config import get_settings

    return list(storage.client().list_blobs(get_settings().images_bucket, prefix=f"uploads/{user_id}/"))


# --- uploads_create ---------------------------------------------------------------------------------------

def test_an_upload_reads_back_as_it_was_created(fn, user):
    """Times are stored to the millisecond, so the create answer must not show more than a later read."""
    created = create(fn, user).get_json()["upload"]
    assert get(fn, user, created["id"]).get_json()["upload"] == created


def test_create_returns_a_pending_upload_and_a_signed_put(fn, user):
    response = create(fn, user, "image/jpeg", 123456)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "private, no-store"
    body = response.get_json()
    assert body["upload"]["status"] == "pending" and len(body["upload"]["id"]) == 32
    assert "X-Goog-Signature=" in body["put_url"] and "X-Goog-Algorithm=GOOG4-RSA-SHA256" in body["put_url"]
    assert body["headers"] == {"Content-Type": "image/jpeg", "x-goog-content-length-range": "0,123456",
                               "x-goog-if-generation-match": "0"}  # single use
    assert body["expires_at"].endswith("Z")
    # The object name is ours (user and upload ids), whatever the client might call its file.
    bucket, name = raw_object(body["upload"]["id"])
    assert name == f"raw/{user['user']['id']}/{body['upload']['id']}"
    assert get(fn, user, body["upload"]["id"]).get_json()["upload"]["status"] == "pending"


@pytest.mark.parametrize("content_type", ["image/gif", "text/plain", "application/octet-stream", "image/svg+xml"])
def test_create_refuses_other_types_with_415(fn, user, content_type):
    response = create(fn, user, content_type)
    assert response.status_code == 415
    error = response.get_json()["error"]
    assert error["code"] == "UNSUPPORTED_MEDIA_TYPE" and "image/heic" in error["message"]


@pytest.mark.parametrize("content_type", ["image/png", "image/webp", "image/heic", "IMAGE/JPEG; charset=binary"])
def test_create_accepts_each_photo_type(fn, user, content_type):
    assert create(fn, user, content_type).status_code == 201


def test_create_refuses_over_the_limit_with_413_naming_it(fn, user):
    response = create(fn, user, size_bytes=20 * 1024 * 1024 + 1)
    assert response.status_code == 413
    assert str(20 * 1024 * 1024) in response.get_json()["error"]["message"]


@pytest.mark.parametrize("body", [
    {"content_type": "image/jpeg", "size_bytes": 0},
    {"content_type": "image/jpeg", "size_bytes": -5},
    {"content_type": "image/jpeg", "size_bytes": "100"},
    {"content_type": "image/jpeg", "size_bytes": 1.5},
    {"content_type": "image/jpeg"},
    {"size_bytes": 100},
    {"content_type": 5, "size_bytes": 100},
    {"content_type": "image/jpeg", "size_bytes": 100, "name": "../../etc/passwd"},
])
def test_create_validates_the_body(fn, user, body):
    response = fn("uploads_create").post("/", json=body, headers=user["headers"])
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "VALIDATION_ERROR"


def test_uploads_need_a_token(fn):
    assert fn("uploads_create").post("/", json={"content_type": "image/jpeg", "size_bytes": 1}).status_code == 401
    assert fn("uploads_get").get("/", query_string={"id": "0" * 32}).status_code == 401
    assert fn("uploads_direct").post("/").status_code == 401


# --- the full signed path ---------------------------------------------------------------------------------

def test_full_path_signed_put_event_ready_and_signed_gets(fn, user):
    source = photos.phone_jpeg(4032, 3024, orientation=6)
    upload_id, _ = put_photo(fn, user, source)

    reply = get(fn, user, upload_id)
    assert reply.status_code == 200 and reply.headers["Cache-Control"] == "private, no-store"
    upload = reply.get_json()["upload"]
    assert upload["status"] == "ready", upload
    assert upload["height"] > upload["width"] and max(upload["width"], upload["height"]) <= 2048

    image = requests.get(upload["image_url"], timeout=30)
    thumbnail = requests.get(upload["thumbnail_url"], timeout=30)
    assert image.status_code == 200 and thumbnail.status_code == 200
    for data, edge in ((image.content, max(upload["width"], upload["height"])), (thumbnail.content, 384)):
        img = Image.open(io.BytesIO(data))
        assert img.format == "JPEG" and max(img.size) == edge
        assert len(img.getexif()) == 0  # EXIF (and with it GPS) is gone
        header = photos.jpeg_metadata(data)
        assert b"ZipkkuTestCam" not in header and b"GPS" not in header
    assert Image.open(io.BytesIO(image.content)).size == (upload["width"], upload["height"])
    assert "X-Goog-Signature=" in upload["image_url"]


def test_each_photo_type_becomes_ready(fn, user):
    for fmt, content_type in (("PNG", "image/png"), ("WEBP", "image/webp"), ("HEIF", "image/heic")):
        upload_id, _ = put_photo(fn, user, photos.image_bytes(fmt), content_type)
        upload = get(fn, user, upload_id).get_json()["upload"]
        assert (upload["status"], upload["width"], upload["height"]) == ("ready", 640, 480), (fmt, upload)


# --- bad input: each rejected with a clear reason, nothing else lost -------------------------------------

@pytest.mark.parametrize(("data", "content_type", "declared", "reason"), [
    (b"I am a text file renamed to room.jpg\n" * 20, "image/jpeg", None, "not_an_image"),
    (photos.truncated_jpeg(), "image/jpeg", None, "truncated"),
    (b"", "image/jpeg", 1, "empty"),
    (photos.png_bomb(20000, 20000), "image/png", None, "too_many_pixels"),
    (photos.jpeg_with_header_size(30000, 30000), "image/jpeg", None, "too_many_pixels"),
    (photos.image_bytes("JPEG"), "image/png", None, "content_type_mismatch"),
])
def test_bad_uploads_are_rejected_with_a_reason(fn, user, data, content_type, declared, reason):
    good_id, _ = put_photo(fn, user, photos.image_bytes("JPEG"))
    good_objects = sorted(b.name for b in image_objects(user["user"]["id"]))

    bad_id, _ = put_photo(fn, user, data, content_type, declared)

    upload = get(fn, user, bad_id).get_json()["upload"]
    assert upload["status"] == "rejected" and upload["reason"] == reason, upload
    assert upload["reason_message"]
    assert "image_url" not in upload and "thumbnail_url" not in upload
    # Nothing was written for the bad one; the earlier photo is untouched.
    assert sorted(b.name for b in image_objects(user["user"]["id"])) == good_objects
    assert get(fn, user, good_id).get_json()["upload"]["status"] == "ready"


def test_more_bytes_than_declared_are_rejected_even_past_the_link(fn, user):
    """Storage refuses a PUT outside the signed length range (tests/test_gcs_front.py); should an oversize
    object reach the raw path anyway, processing still refuses it before reading it."""
    from lib import storage

    created = create(fn, user, "image/png", 1000).get_json()
    bucket, name = raw_object(created["upload"]["id"])
    storage.upload_bytes(bucket, name, photos.image_bytes("PNG", 800, 600), "image/png")
    deliver(fn, object_resource(bucket, name))
    upload = get(fn, user, created["upload"]["id"]).get_json()["upload"]
    assert (upload["status"], upload["reason"]) == ("rejected", "too_large")
    assert image_objects(user["user"]["id"]) == []


# Photos under the pixel limit that decode to hundreds of MiB (a lossless WebP of ~40 bytes took an instance
# from 370 MB to 1.4 GB), and photos too small to redesign: refused at upload, before any decoding.
MEMORY_BOMBS = [
    pytest.param(photos.webp_lossless_bomb(7745, 7745), "image/webp", id="lossless-webp-7745"),
    pytest.param(photos.png_of(7745, 7745, "RGBA"), "image/png", id="rgba-png-7745"),
    pytest.param(photos.png_of(6000, 6000, "RGBA;16", complete=False), "image/png", id="16bit-png-6000"),
]
TOO_SMALL = [pytest.param(photos.image_bytes("PNG", *size), id=f"{size[0]}x{size[1]}") for size in ((1, 1), (2048, 1))]


@pytest.mark.parametrize(("data", "content_type"), MEMORY_BOMBS)
def test_photos_that_decode_too_large_are_rejected_quickly_without_memory(fn, user, data, content_type):
    started = time.perf_counter()
    with photos.peak_rss_growth() as growth:
        upload_id, _ = put_photo(fn, user, data, content_type)
    assert time.perf_counter() - started < 3
    assert growth.mib < 60  # decoding would take 137 MiB and more
    upload = get(fn, user, upload_id).get_json()["upload"]
    assert (upload["status"], upload["reason"]) == ("rejected", "decoded_too_large"), upload
    assert "MiB" in upload["reason_message"]
    assert image_objects(user["user"]["id"]) == []


@pytest.mark.parametrize("data", TOO_SMALL)
def test_photos_too_small_to_redesign_are_rejected(fn, user, data):
    upload_id, _ = put_photo(fn, user, data, "image/png")
    upload = get(fn, user, upload_id).get_json()["upload"]
    assert (upload["status"], upload["reason"]) == ("rejected", "too_small"), upload
    assert "256" in upload["reason_message"]


def test_redelivered_events_change_nothing_and_write_nothing_twice(fn, user):
    from lib import db

    upload_id, obj = put_photo(fn, user, photos.image_bytes("JPEG"))
    before_doc = db.collection("uploads").find_one({"_id": upload_id})
    before_objects = {b.name: b.generation for b in image_objects(user["user"]["id"])}
    assert len(before_objects) == 2

    deliver(fn, obj, "evt-1")  # same event id again
    deliver(fn, obj, "evt-2")  # and as a different delivery of the same generation

    assert db.collection("uploads").find_one({"_id": upload_id}) == before_doc
    assert {b.name: b.generation for b in image_objects(user["user"]["id"])} == before_objects


def test_an_outage_mid_processing_releases_the_claim_and_the_retry_finishes(fn, user, monkeypatch):
    """A dependency failure raises (so Eventarc redelivers) after releasing the claim; the retry reuses the
    outputs the failed attempt already wrote (if_generation_match=0 -> PreconditionFailed is success)."""
    from google.api_core.exceptions import ServiceUnavailable

    from lib import db, uploads

    created = create(fn, user, size_bytes=100_000).get_json()
    upload_id = created["upload"]["id"]
    data = photos.image_bytes("JPEG", 400, 300)
    assert requests.put(created["put_url"], data=data, headers=created["headers"], timeout=30).ok
    obj = object_resource(*raw_object(upload_id))

    real_store = uploads._store_outputs

    def store_then_fail(*args):
        real_store(*args)
        raise ServiceUnavailable("database went away after the outputs were written")

    monkeypatch.setattr(uploads, "_store_outputs", store_then_fail)
    with pytest.raises(ServiceUnavailable):
        uploads.handle_finalized(obj)
    doc = db.collection("uploads").find_one({"_id": upload_id})
    assert doc["status"] == "pending" and "claim_generation" not in doc and "claim_expires_at" not in doc
    written = {b.name: b.generation for b in image_objects(user["user"]["id"])}
    assert len(written) == 2

    monkeypatch.undo()
    deliver(fn, obj, "evt-retry")
    upload = get(fn, user, upload_id).get_json()["upload"]
    assert (upload["status"], upload["width"], upload["height"]) == ("ready", 400, 300)
    assert {b.name: b.generation for b in image_objects(user["user"]["id"])} == written  # not rewritten


def test_a_crashed_attempt_is_retried_after_its_lease(fn, user):
    from datetime import timedelta

    from lib import db, uploads

    created = create(fn, user, size_bytes=1_000_000).get_json()
    upload_id = created["upload"]["id"]
    assert requests.put(created["put_url"], data=photos.image_bytes("JPEG"), headers=created["headers"],
                        timeout=30).ok
    obj = object_resource(*raw_object(upload_id))
    # An attempt that claimed this generation and died without releasing it.
    claim = {"claim_generation": int(obj["generation"]), "claim_expires_at": db.utcnow() + timedelta(seconds=60)}
    db.collection("uploads").update_one({"_id": upload_id}, {"$set": claim})
    assert uploads.handle_finalized(obj) == "duplicate"  # still leased: another attempt may be running
    db.collection("uploads").update_one({"_id": upload_id},
                                        {"$set": {"claim_expires_at": db.utcnow() - timedelta(seconds=1)}})
    assert uploads.handle_finalized(obj) == "ready"
    assert uploads.handle_finalized(obj) == "duplicate"


def test_a_later_generation_of_a_processed_upload_changes_nothing(fn, user):
    """Upload links are single use: only the first object of an upload is processed. A later generation of
    the same raw object (written by anything that got past the link's precondition) is not even read."""
    from lib import db, storage, uploads

    upload_id, _ = put_photo(fn, user, photos.image_bytes("JPEG", 640, 480))
    before_doc = db.collection("uploads").find_one({"_id": upload_id})
    before_images = {b.name: b.generation for b in image_objects(user["user"]["id"])}
    bucket, name = raw_object(upload_id)
    storage.upload_bytes(bucket, name, photos.image_bytes("JPEG", 320, 200), "image/jpeg")  # overwrite
    later = object_resource(bucket, name)
    assert uploads.handle_finalized(later) == "duplicate"
    deliver(fn, later, "evt-later")
    assert db.collection("uploads").find_one({"_id": upload_id}) == before_doc
    assert {b.name: b.generation for b in image_objects(user["user"]["id"])} == before_images


def test_a_later_generation_cannot_take_over_a_running_claim(fn, user):
    """Two objects of one upload arriving together: the one being processed keeps its claim."""
    from lib import db, storage, uploads

    created = create(fn, user, size_bytes=1_000_000).get_json()
    upload_id = created["upload"]["id"]
    bucket, name = raw_object(upload_id)
    storage.upload_bytes(bucket, name, photos.image_bytes("JPEG", 64, 64), "image/jpeg")
    first = object_resource(bucket, name)
    claim = {"claim_generation": int(first["generation"]), "claim_expires_at": db.utcnow() + timedelta(seconds=60)}
    db.collection("uploads").update_one({"_id": upload_id}, {"$set": claim})
    storage.upload_bytes(bucket, name, photos.image_bytes("JPEG", 96, 96), "image/jpeg")
    assert uploads.handle_finalized(object_resource(bucket, name)) == "duplicate"
    assert db.collection("uploads").find_one({"_id": upload_id})["claim_generation"] == int(first["generation"])


def test_a_stale_generation_is_skipped(fn, user):
    from lib import storage

    created = create(fn, user, size_bytes=10_000).get_json()
    bucket, name = raw_object(created["upload"]["id"])
    storage.upload_bytes(bucket, name, photos.image_bytes("JPEG", 64, 64), "image/jpeg")
    old = object_resource(bucket, name)
    storage.upload_bytes(bucket, name, photos.image_bytes("JPEG", 64, 64), "image/jpeg")
    deliver(fn, old)  # its generation no longer exists: the newer one brings its own event
    assert get(fn, user, created["upload"]["id"]).get_json()["upload"]["status"] == "pending"


def test_events_outside_the_raw_prefix_or_bucket_are_ignored(fn, user):
    from lib import db, storage
    from lib.config import get_settings

    settings = get_settings()
    created = create(fn, user).get_json()
    upload_id = created["upload"]["id"]
    user_id = user["user"]["id"]
    data = photos.image_bytes("JPEG")
    outsiders = [
        (settings.uploads_bucket, f"other/{user_id}/{upload_id}"),
        (settings.uploads_bucket, f"raw/{user_id}/{upload_id}/extra"),
        (settings.uploads_bucket, f"raw/{user_id}/not-an-id"),
        (settings.images_bucket, f"raw/{user_id}/{upload_id}"),  # our outputs' bucket: never reprocessed
    ]
    for bucket, name in outsiders:
        storage.upload_bytes(bucket, name, data, "image/jpeg")
        deliver(fn, object_resource(bucket, name))
    # A well-formed name for an upload that does not exist, and another user's id in the path.
    other = storage.ref(settings.uploads_bucket, f"raw/{'a' * 32}/{upload_id}")
    storage.upload_bytes(*storage.parse_ref(other), data, "image/jpeg")
    deliver(fn, object_resource(*storage.parse_ref(other)))

    doc = db.collection("uploads").find_one({"_id": upload_id})
    assert doc["status"] == "pending" and "claim_generation" not in doc
    assert image_objects(user_id) == []


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b"{}", b'{"bucket": "zipkku-uploads"}',
                                  b'{"bucket": "zipkku-uploads", "name": 5}'])
def test_malformed_events_are_acknowledged_not_raised(fn, user, data):
    headers, _ = cloud_event_request({"bucket": "zipkku-uploads", "name": "raw/x/y"}, "evt-bad")
    assert fn("on_upload_finalized").post("/", data=data, headers=headers).status_code == 200


def test_other_event_types_are_ignored(fn, user):
    created = create(fn, user).get_json()
    bucket, name = raw_object(created["upload"]["id"])
    headers, body = cloud_event_request({"bucket": bucket, "name": name, "generation": "1", "size": "5"}, "e")
    headers["ce-type"] = "google.cloud.storage.object.v1.deleted"
    assert fn("on_upload_finalized").post("/", data=body, headers=headers).status_code == 200
    assert get(fn, user, created["upload"]["id"]).get_json()["upload"]["status"] == "pending"


# --- uploads_get ------------------------------------------------------------------------------------------

def test_someone_elses_upload_is_404(fn, make_user):
    owner, stranger = make_user(), make_user()
    upload_id = create(fn, owner).get_json()["upload"]["id"]
    response = get(fn, stranger, upload_id)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "UPLOAD_NOT_FOUND"
    assert get(fn, owner, upload_id).status_code == 200


@pytest.mark.parametrize("upload_id", ["0" * 32, "nope", "../../x", "A" * 32, "{'$ne': 1}"])
def test_unknown_or_malformed_ids_are_404(fn, user, upload_id):
    assert get(fn, user, upload_id).status_code == 404


def test_a_photo_put_after_its_account_was_deleted_is_not_kept(fn, user):
    """Upload links handed out before DELETE /me still work for minutes; what arrives through them goes too."""
    from lib import storage, uploads

    data = photos.phone_jpeg(400, 300)
    reply = create(fn, user, size_bytes=len(data)).get_json()
    bucket, name = raw_object(reply["upload"]["id"])
    uploads.delete_all_for_user(user["user"]["id"])  # what account deletion does with the person's photos
    assert requests.put(reply["put_url"], data=data, headers=reply["headers"], timeout=30).status_code == 200
    obj = object_resource(bucket, name)
    deliver(fn, obj)
    assert storage.bucket(bucket).get_blob(name) is None
    assert image_objects(user["user"]["id"]) == []


def link_expired_long_ago(upload_id: str) -> None:
    """Move the upload's PUT window (and its arrival grace) into the past, as if the user walked away."""
    from datetime import timedelta

    from lib import db, uploads

    past = db.utcnow() - uploads.ARRIVAL_GRACE - timedelta(seconds=1)
    db.collection("uploads").update_one({"_id": upload_id}, {"$set": {"put_expires_at": past}})


def test_a_photo_that_never_arrived_ends_rejected_instead_of_pending_forever(fn, user):
    upload_id = create(fn, user).get_json()["upload"]["id"]
    assert get(fn, user, upload_id).get_json()["upload"]["status"] == "pending"  # still inside its window
    link_expired_long_ago(upload_id)
    upload = get(fn, user, upload_id).get_json()["upload"]
    assert (upload["status"], upload["reason"]) == ("rejected", "not_received")
    assert "create a new upload" in upload["reason_message"]
    assert get(fn, user, upload_id).get_json()["upload"] == upload  # settled once, then just read


def test_a_photo_that_arrived_but_whose_event_is_late_stays_pending(fn, user):
    data = photos.phone_jpeg(400, 300, gps=False)
    reply = create(fn, user, size_bytes=len(data)).get_json()
    assert requests.put(reply["put_url"], data=data, headers=reply["headers"], timeout=30).status_code == 200
    upload_id = reply["upload"]["id"]
    link_expired_long_ago(upload_id)
    assert get(fn, user, upload_id).get_json()["upload"]["status"] == "pending"
    deliver(fn, object_resource(*raw_object(upload_id)))
    assert get(fn, user, upload_id).get_json()["upload"]["status"] == "ready"


def test_get_without_an_id_is_400(fn, user):
    response = fn("uploads_get").get("/", headers=user["headers"])
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "VALIDATION_ERROR"


def test_lib_get_for_user_is_what_generation_reads(fn, make_user):
    from lib import errors, uploads

    owner, stranger = make_user(), make_user()
    upload_id, _ = put_photo(fn, owner, photos.image_bytes("JPEG"))
    doc = uploads.get_for_user(owner["user"]["id"], upload_id)
    assert doc["status"] == "ready" and doc["image"].startswith("gs://")
    with pytest.raises(errors.NotFound):
        uploads.get_for_user(stranger["user"]["id"], upload_id)
    public = uploads.public_upload(doc).to_json()
    assert public["image_url"].startswith("http") and "user_id" not in public and "raw" not in public


# --- uploads_direct ---------------------------------------------------------------------------------------

def direct(fn, user, data, filename="room.jpg", content_type="image/jpeg"):
    return fn("uploads_direct").post(
        "/", data={"file": (io.BytesIO(data), filename, content_type)}, headers=user["headers"],
        content_type="multipart/form-data",
    )


def test_direct_upload_is_processed_synchronously(fn, user):
    started = time.perf_counter()
    response = direct(fn, user, photos.phone_jpeg(2000, 1500, orientation=8))
    assert response.status_code == 201, response.get_json()
    upload = response.get_json()["upload"]
    assert upload["status"] == "ready" and (upload["width"], upload["height"]) == (1500, 2000)
    image = requests.get(upload["image_url"], timeout=30).content
    assert len(Image.open(io.BytesIO(image)).getexif()) == 0 and b"ZipkkuTestCam" not in image
    assert get(fn, user, upload["id"]).get_json()["upload"]["status"] == "ready"
    assert time.perf_counter() - started < 5


def test_direct_upload_sniffs_the_bytes_not_the_name(fn, user):
    response = direct(fn, user, photos.image_bytes("PNG"), filename="photo.jpg",
                      content_type="application/octet-stream")
    assert response.status_code == 201
    assert response.get_json()["upload"]["content_type"] == "image/png"


@pytest.mark.parametrize(("data", "content_type", "status", "code"), [
    (b"", "image/jpeg", 400, "BAD_REQUEST"),
    (b"plain text\n" * 50, "image/jpeg", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (photos.image_bytes("JPEG"), "image/png", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (photos.truncated_jpeg(), "image/jpeg", 422, "IMAGE_REJECTED"),
    (photos.png_bomb(), "image/png", 422, "IMAGE_REJECTED"),
    (photos.jpeg_with_header_size(), "image/jpeg", 422, "IMAGE_REJECTED"),
])
def test_direct_upload_refuses_bad_files(fn, user, data, content_type, status, code):
    from lib import db

    response = direct(fn, user, data, content_type=content_type)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and error["details"][0]["field"] == "file"
    assert db.collection("uploads").count_documents({}) == 0
    assert image_objects(user["user"]["id"]) == []


@pytest.mark.parametrize(("data", "content_type"), MEMORY_BOMBS)
def test_direct_photos_that_decode_too_large_are_refused_quickly_without_memory(fn, user, data, content_type):
    from lib import db

    started = time.perf_counter()
    with photos.peak_rss_growth() as growth:
        response = direct(fn, user, data, content_type=content_type)
    assert time.perf_counter() - started < 3
    assert growth.mib < 60
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "IMAGE_REJECTED" and error["details"][0]["type"] == "decoded_too_large"
    assert "MiB" in error["message"]
    assert db.collection("uploads").count_documents({}) == 0


@pytest.mark.parametrize("data", TOO_SMALL)
def test_direct_photos_too_small_to_redesign_are_refused(fn, user, data):
    response = direct(fn, user, data, content_type="image/png")
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "IMAGE_REJECTED" and error["details"][0]["type"] == "too_small"
    assert "256" in error["message"]


def test_direct_upload_needs_a_multipart_file(fn, user):
    as_json = fn("uploads_direct").post("/", json={"file": "x"}, headers=user["headers"])
    assert as_json.status_code == 415
    no_file = fn("uploads_direct").post("/", data={"other": "x"}, headers=user["headers"],
                                        content_type="multipart/form-data")
    assert no_file.status_code == 400 and no_file.get_json()["error"]["details"][0]["field"] == "file"


def test_direct_upload_body_limit_is_413(fn, user):
    too_big = b"\xff\xd8\xff" + b"\x00" * (20 * 1024 * 1024 + 64 * 1024)
    response = direct(fn, user, too_big)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_storage_outage_is_503_and_records_nothing(fn, user, settings_env):
    from lib import db
    from scripts.localstack import free_port

    # Nothing listens there; the retry deadline is 1 s.
    settings_env(storage_emulator_host=f"http://127.0.0.1:{free_port()}", storage_retry_seconds=1)
    started = time.perf_counter()
    response = direct(fn, user, photos.image_bytes("JPEG"))
    assert time.perf_counter() - started < 8  # bounded by the retry deadline, not the library's 120 s
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "DEPENDENCY_UNAVAILABLE" and "Retry-After" in response.headers
    assert db.collection("uploads").count_documents({"user_id": user["user"]["id"], "status": "ready"}) == 0


def test_a_deleted_account_takes_its_photos_with_it(fn, make_user):
    from lib import db, storage
    from lib.config import get_settings

    owner, other = make_user(), make_user()
    signed_id, _ = put_photo(fn, owner, photos.image_bytes("JPEG"))
    assert direct(fn, owner, photos.image_bytes("PNG"), content_type="image/png").status_code == 201
    kept_id, _ = put_photo(fn, other, photos.image_bytes("JPEG"))
    raw_bucket, raw_name = raw_object(signed_id)
    assert len(image_objects(owner["user"]["id"])) == 4

    r = fn("me").delete("/", json={"current_password": owner["password"]}, headers=owner["headers"])
    assert r.status_code == 204

    assert db.collection("uploads").count_documents({"user_id": owner["user"]["id"]}) == 0
    assert image_objects(owner["user"]["id"]) == []
    assert storage.bucket(raw_bucket).get_blob(raw_name) is None
    # Someone else's photos are untouched.
    assert get(fn, other, kept_id).get_json()["upload"]["status"] == "ready"
    assert len(image_objects(other["user"]["id"])) == 2
    assert storage.bucket(get_settings().uploads_bucket).get_blob(raw_object(kept_id)[1]) is not None


def test_uploads_per_user_are_limited_per_hour(fn, make_user, settings_env):
    settings_env(uploads_per_hour=3)
    user, other = make_user(), make_user()
    assert create(fn, user, "image/gif").status_code == 415  # refused before it counts
    assert create(fn, user).status_code == 201
    assert direct(fn, user, photos.image_bytes("JPEG", 400, 300)).status_code == 201  # both kinds count
    assert create(fn, user).status_code == 201
    refused = create(fn, user)
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "UPLOAD_RATE_LIMITED"
    assert 3000 < int(refused.headers["Retry-After"]) <= 3600
    assert direct(fn, user, photos.image_bytes("JPEG", 400, 300)).status_code == 429
    assert create(fn, other).status_code == 201  # per user
