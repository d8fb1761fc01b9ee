"""Signed upload links attacked over real HTTP, on the local stack: the front (scripts/gcs_front.py) must
refuse what Cloud Storage refuses, with its status and XML error, and the upload must stay as it was."""

from __future__ import annotations

import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
import requests

from scripts.localstack import ROOT
from tests import photos
from tests.test_uploads import create, deliver, get, image_objects, object_resource, raw_object

ORIGIN = "http://localhost:5173"


@pytest.fixture
def user(make_user):
    return make_user()


def new_link(fn, user, data: bytes, content_type="image/jpeg") -> dict:
    created = create(fn, user, content_type, len(data))
    assert created.status_code == 201, created.get_json()
    return created.get_json()


def stored(upload_id: str):
    from lib import storage

    bucket, name = raw_object(upload_id)
    return storage.bucket(bucket).get_blob(name)


def assert_refused(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/xml")
    assert ET.fromstring(response.content).findtext("Code") == code, response.text  # noqa: S314 - our own front


def assert_untouched(fn, user, upload_id: str) -> None:
    assert stored(upload_id) is None
    assert get(fn, user, upload_id).get_json()["upload"]["status"] == "pending"
    assert image_objects(user["user"]["id"]) == []


def with_query(url: str, **changes: str) -> str:
    split = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
    query.update(changes)
    return urllib.parse.urlunsplit(split._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


# --- what still works -----------------------------------------------------------------------------------------

def test_a_correct_put_is_stored_and_processed_once(fn, user):
    data = photos.image_bytes("JPEG", 400, 300)  # 256 px on each edge at least, or it is too small to redesign
    link = new_link(fn, user, data)
    assert link["headers"]["x-goog-if-generation-match"] == "0"
    put = requests.put(link["put_url"], data=data, headers=link["headers"], timeout=30)
    assert put.status_code == 200, put.text
    blob = stored(link["upload"]["id"])
    assert (blob.size, blob.content_type) == (len(data), "image/jpeg")
    deliver(fn, object_resource(*raw_object(link["upload"]["id"])))
    assert get(fn, user, link["upload"]["id"]).get_json()["upload"]["status"] == "ready"


# --- attacks ------------------------------------------------------------------------------------------------

def test_a_tampered_signature_is_refused(fn, user):
    data = photos.image_bytes("JPEG")
    link = new_link(fn, user, data)
    signature = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link["put_url"]).query))["X-Goog-Signature"]
    tampered = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    put = requests.put(with_query(link["put_url"], **{"X-Goog-Signature": tampered}), data=data,
                       headers=link["headers"], timeout=30)
    assert_refused(put, 403, "SignatureDoesNotMatch")
    assert_untouched(fn, user, link["upload"]["id"])


def test_an_expired_link_is_refused(fn, user):

    from lib import storage

    data = photos.image_bytes("JPEG")
    link = new_link(fn, user, data)
    # The same link as uploads-create signs, with a lifetime of one second (the setting allows 60 at least).
    bucket, name = raw_object(link["upload"]["id"])
    signed = {k: v for k, v in link["headers"].items() if k != "Content-Type"}
    expiring = storage.v4_signed_url(bucket, name, "PUT", 1, {"Content-Type": "image/jpeg", **signed})
    time.sleep(2.2)  # X-Goog-Date has a resolution of one second
    put = requests.put(expiring, data=data, headers=link["headers"], timeout=30)
    assert_refused(put, 400, "ExpiredToken")
    assert_untouched(fn, user, link["upload"]["id"])


def test_a_link_cannot_write_another_users_object(fn, user, make_user):
    victim = make_user()
    data = photos.image_bytes("JPEG")
    mine, theirs = new_link(fn, user, data), new_link(fn, victim, data)
    my_path = urllib.parse.urlsplit(mine["put_url"]).path
    their_path = urllib.parse.urlsplit(theirs["put_url"]).path
    forged = mine["put_url"].replace(my_path, their_path, 1)
    assert forged != mine["put_url"]
    put = requests.put(forged, data=photos.image_bytes("PNG"), headers=mine["headers"], timeout=30)
    assert_refused(put, 403, "SignatureDoesNotMatch")
    assert_untouched(fn, victim, theirs["upload"]["id"])


def test_another_content_type_is_refused(fn, user):
    data = photos.image_bytes("JPEG")
    link = new_link(fn, user, data)
    png = photos.image_bytes("PNG")
    put = requests.put(link["put_url"], data=png, headers={**link["headers"], "Content-Type": "image/png"},
                       timeout=30)
    assert_refused(put, 403, "SignatureDoesNotMatch")
    assert_untouched(fn, user, link["upload"]["id"])


def test_a_body_larger_than_the_signed_range_is_refused(fn, user):
    data = photos.image_bytes("JPEG", 320, 240)
    link = new_link(fn, user, data)
    put = requests.put(link["put_url"], data=data + b"\0" * 1024, headers=link["headers"], timeout=30)
    assert_refused(put, 400, "EntityTooLarge")
    assert_untouched(fn, user, link["upload"]["id"])


def test_a_refused_put_leaves_the_connection_usable(fn, user):
    """A browser reuses its connection: after a refusal (whose body was never stored) the next PUT works."""
    data = photos.image_bytes("JPEG", 320, 240)
    link = new_link(fn, user, data)
    with requests.Session() as session:
        too_big = session.put(link["put_url"], data=data + b"\0" * 4096, headers=link["headers"], timeout=30)
        assert_refused(too_big, 400, "EntityTooLarge")
        assert session.put(link["put_url"], data=data, headers=link["headers"], timeout=30).status_code == 200
    assert stored(link["upload"]["id"]).size == len(data)


def test_an_unsigned_extension_header_is_refused(fn, user):
    data = photos.image_bytes("JPEG")
    link = new_link(fn, user, data)
    put = requests.put(link["put_url"], data=data, timeout=30,
                       headers={**link["headers"], "x-goog-meta-owner": "someone-else"})
    assert_refused(put, 400, "MalformedSecurityHeader")
    assert_untouched(fn, user, link["upload"]["id"])


def test_dropping_a_signed_header_is_refused(fn, user):
    """The obvious workaround for a failing preflight (drop the length range) must not work either."""
    data = photos.image_bytes("JPEG")
    link = new_link(fn, user, data)
    for dropped in ("x-goog-content-length-range", "x-goog-if-generation-match"):
        headers = {k: v for k, v in link["headers"].items() if k != dropped}
        put = requests.put(link["put_url"], data=data, headers=headers, timeout=30)
        assert_refused(put, 400, "MalformedSecurityHeader")
    assert_untouched(fn, user, link["upload"]["id"])


def test_an_unsigned_put_is_refused(fn, user):
    data = photos.image_bytes("JPEG")
    link = new_link(fn, user, data)
    bare = link["put_url"].split("?", 1)[0]
    put = requests.put(bare, data=data, headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert_refused(put, 403, "AccessDenied")
    assert_untouched(fn, user, link["upload"]["id"])


def test_a_second_put_on_the_same_link_is_refused_and_changes_nothing(fn, user):
    from lib import db

    first = photos.image_bytes("JPEG", 320, 240)
    link = new_link(fn, user, first)
    assert requests.put(link["put_url"], data=first, headers=link["headers"], timeout=30).status_code == 200
    upload_id = link["upload"]["id"]
    obj = object_resource(*raw_object(upload_id))
    deliver(fn, obj)
    before_doc = db.collection("uploads").find_one({"_id": upload_id})
    before_images = {b.name: b.generation for b in image_objects(user["user"]["id"])}

    replay = requests.put(link["put_url"], data=photos.image_bytes("JPEG", 64, 64), headers=link["headers"],
                          timeout=30)
    assert_refused(replay, 412, "PreconditionFailed")
    blob = stored(upload_id)
    assert (blob.generation, blob.size) == (int(obj["generation"]), len(first))
    deliver(fn, object_resource(*raw_object(upload_id)), "evt-after-replay")
    assert db.collection("uploads").find_one({"_id": upload_id}) == before_doc
    assert {b.name: b.generation for b in image_objects(user["user"]["id"])} == before_images


def test_two_simultaneous_puts_on_one_link_write_once(fn, user):
    from concurrent.futures import ThreadPoolExecutor

    bodies = [photos.image_bytes("JPEG", 320, 240), photos.image_bytes("JPEG", 240, 320)]
    link = new_link(fn, user, max(bodies, key=len))
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda body: requests.put(link["put_url"], data=body, headers=link["headers"],
                                                          timeout=30), bodies))
    assert sorted(a.status_code for a in answers) == [200, 412]
    winner = bodies[[a.status_code for a in answers].index(200)]
    assert stored(link["upload"]["id"]).download_as_bytes() == winner


@pytest.mark.parametrize("changes", [
    {"X-Goog-Signature": "not-hex"}, {"X-Goog-Expires": "soon"}, {"X-Goog-Expires": "604801"},
    {"X-Goog-Date": "yesterday"}, {"X-Goog-Algorithm": "GOOG4-HMAC-SHA256"}, {"X-Goog-Credential": "me"},
])
def test_a_malformed_link_is_a_clear_400(fn, user, changes):
    data = photos.image_bytes("JPEG")
    link = new_link(fn, user, data)
    put = requests.put(with_query(link["put_url"], **changes), data=data, headers=link["headers"], timeout=30)
    assert_refused(put, 400, "MalformedSecurityHeader")
    assert_untouched(fn, user, link["upload"]["id"])


# --- CORS as the production buckets answer it -----------------------------------------------------------------

def test_a_browser_preflight_for_the_signed_put_passes_for_configured_origins_only(fn, user):
    data = photos.image_bytes("JPEG")
    link = new_link(fn, user, data)
    asked = {"Access-Control-Request-Method": "PUT",
             "Access-Control-Request-Headers": ",".join(k.lower() for k in link["headers"])}
    preflight = requests.options(link["put_url"], headers={"Origin": ORIGIN, **asked}, timeout=30)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {k.lower() for k in link["headers"]} <= allowed
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]

    elsewhere = requests.options(link["put_url"], headers={"Origin": "https://evil.example", **asked}, timeout=30)
    assert "Access-Control-Allow-Origin" not in elsewhere.headers

    put = requests.put(link["put_url"], data=data, headers={**link["headers"], "Origin": ORIGIN}, timeout=30)
    assert put.status_code == 200, put.text
    assert put.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_the_fronts_cors_rule_is_the_production_buckets_rule():
    import hcl2

    from scripts import gcs_front

    with open(ROOT / "terraform" / "storage.tf") as handle:
        parsed = hcl2.load(handle)
    buckets = next(r['"google_storage_bucket"']['"this"'] for r in parsed["resource"]
                   if '"google_storage_bucket"' in r)
    rule = next(block['"cors"']["content"][0] for block in buckets["dynamic"] if '"cors"' in block)
    assert [h.strip('"') for h in rule["response_header"]] == list(gcs_front.CORS_RESPONSE_HEADERS)
    assert int(rule["max_age_seconds"]) == gcs_front.CORS_MAX_AGE_SECONDS
    assert rule["method"] == '${each.key == "uploads" ? ["PUT", "GET", "HEAD"] : ["GET", "HEAD"]}'
