"""The production signing path (no key file: IAM signBlob) against a local double of the IAM Credentials API
(scripts/iam_double.py) that holds the local stack's signing key, on the real stack (fake-gcs-server,
SecantusDB). Tokens come from Application Default Credentials (the double's token endpoint). The local
storage front (scripts/gcs_front.py) verifies every signed URL as Cloud Storage does."""

from __future__ import annotations

import io
import time
import urllib.parse
from types import SimpleNamespace

import pytest
import requests

from lib import catalog, storage
from lib.config import get_settings
from scripts.iam_double import IamDouble
from tests.doubles import jpeg

SIGNER = "zipkku-signer@zipkku-local.iam.gserviceaccount.com"


@pytest.fixture
def iam(stack, settings_env, tmp_path):
    """The production signing configuration pointed at the double; every test starts as a fresh instance."""
    double = IamDouble(stack.env["SIGNING_KEY_FILE"], SIGNER).start()
    settings_env(signing_key_file="", iam_credentials_url=double.url, signing_service_account=SIGNER,
                 google_application_credentials=double.write_adc(tmp_path / "adc.json"))
    storage.forget_signing_state()
    yield double
    storage.forget_signing_state()
    double.stop()


def put_object(name: str, data: bytes = b"bytes") -> str:
    bucket = get_settings().images_bucket
    storage.upload_bytes(bucket, name, data, "image/jpeg")
    return storage.ref(bucket, name)


# --- the production path works end to end ------------------------------------------------------------------

def test_a_link_signed_through_iam_fetches_the_object_and_verifies(iam):
    ref = put_object("users/u1/interiors/i1/v0.jpg", b"the picture")
    url = storage.client_url(ref)
    assert iam.sign_calls == 1 and iam.token_calls == 1
    credential = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["X-Goog-Credential"]
    assert credential.startswith(f"{SIGNER}/")
    # the local storage front checks V4 signatures as Cloud Storage does, with the local key the double holds
    assert requests.get(url, timeout=10).content == b"the picture"
    tampered = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    assert requests.get(tampered, timeout=10).status_code == 403


def test_an_upload_link_signed_through_iam_stores_the_photo_and_verifies(iam):
    bucket = get_settings().uploads_bucket
    url, headers = storage.signed_put_url(bucket, "raw/u1/up1", "image/jpeg", 1000)
    assert requests.put(url, data=b"photo", headers=headers, timeout=10).status_code == 200
    assert storage.download_bytes(bucket, "raw/u1/up1") == b"photo"
    assert iam.sign_calls == 1  # an upload link is single use: never cached
    storage.signed_put_url(bucket, "raw/u1/up1", "image/jpeg", 1000)
    assert iam.sign_calls == 2


def test_an_expired_token_is_renewed_once(iam):
    storage.client_url(put_object("users/u1/a.jpg"))
    iam.expire_tokens()
    storage.client_url(put_object("users/u1/b.jpg"))
    assert iam.sign_calls == 2 and iam.token_calls == 2


# --- IAM refusing or out of quota: a clear 503 -------------------------------------------------------------

def seed_product(image_ref: str) -> None:
    catalog.upsert_products([{  # as the import writes it (with the fields a search walks)
        "_id": "p1", "label": "sofa", "name": "Sofa", "price": 100, "currency": "EUR",
        "product_url": "https://shop.example/p1", "image_urls": [image_ref],
        "dimensions": {"width_cm": 200, "depth_cm": 90, "height_cm": 80}, "styles": []}])


@pytest.mark.parametrize("status", [429, 503])
def test_quota_or_outage_at_iam_is_a_503_after_bounded_retries(iam, fn, settings_env, status):
    seed_product(put_object("catalog/p1.jpg"))
    # long enough for a retry even when the first call (with the token fetch) is slow on a loaded machine
    settings_env(signing_retry_seconds=1.5)
    iam.plan = [status] * 50
    r = fn("products_search").get("/")
    assert r.status_code == 503, r.get_json()
    assert r.get_json()["error"]["code"] == "DEPENDENCY_UNAVAILABLE" and r.headers["Retry-After"]
    assert 1 < 50 - len(iam.plan) < 50  # retried, within the bound
    iam.plan = []
    assert fn("products_search").get("/").status_code == 200


def test_a_transient_iam_error_is_retried_and_the_answer_succeeds(iam, fn):
    seed_product(put_object("catalog/p1.jpg"))
    iam.plan = [503, 429]
    r = fn("products_search").get("/")
    assert r.status_code == 200 and r.get_json()["products"][0]["image_url"].startswith("http://127.0.0.1")
    assert iam.sign_calls == 1 and iam.plan == []


def test_permission_denied_is_a_503_at_once(iam, fn):
    """A missing roles/iam.serviceAccountTokenCreator: no retry can help, so no retry is made."""
    seed_product(put_object("catalog/p1.jpg"))
    iam.deny = True
    r = fn("products_search").get("/")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "DEPENDENCY_UNAVAILABLE"
    assert "sign" in r.get_json()["error"]["message"]


# --- the cache -----------------------------------------------------------------------------------------------

def test_a_link_is_signed_once_per_epoch_and_never_served_past_half_its_lifetime(iam, monkeypatch):
    ref = put_object("users/u1/interiors/i1/v0.jpg")
    half = get_settings().signed_get_ttl_seconds / 2
    start = (time.time() // half + 1) * half
    clock = SimpleNamespace(now=start + 3, time=lambda: clock.now, monotonic=time.monotonic, sleep=time.sleep)
    monkeypatch.setattr(storage, "time", clock)
    signed_at = None
    calls = iam.sign_calls
    for step in range(60):  # three half lifetimes, in uneven steps
        clock.now = start + 3 + step * half * 3 / 60 + (step % 7)
        storage.client_url(ref)
        if iam.sign_calls != calls:
            calls, signed_at = iam.sign_calls, clock.now
        assert clock.now - signed_at < half
    assert 3 <= iam.sign_calls <= 4  # once per epoch, not once per call


def test_cached_links_are_never_shared_across_objects(iam):
    refs = [put_object(f"users/{user}/interiors/i/v{i}.jpg", f"{user}{i}".encode())
            for user in ("alice", "bob") for i in range(3)]
    build = lambda: [storage.client_url(r) for r in refs + refs[::-1]]  # noqa: E731 - each ref twice
    links = storage.signed_links(build)
    assert iam.sign_calls == len(refs)  # each object once, however often the answer links to it
    for ref, link in zip(refs + refs[::-1], links, strict=True):
        assert urllib.parse.urlsplit(link).path.endswith(ref.split("/", 3)[3])
        assert requests.get(link, timeout=10).content == ref.split("/")[4].encode() + ref[-5:-4].encode()
    assert storage.signed_links(build) == links and iam.sign_calls == len(refs)  # warm: nothing signed


def test_two_people_with_the_same_photo_get_their_own_links(iam, fn, make_user):
    photo = jpeg(640, 480)
    got = []
    for person in (make_user(), make_user()):
        r = fn("uploads_direct").post("/", data={"file": (io.BytesIO(photo), "room.jpg", "image/jpeg")},
                                      headers=person["headers"], content_type="multipart/form-data")
        assert r.status_code == 201, r.get_json()
        upload = r.get_json()["upload"]
        again = fn("uploads_get").get("/", query_string={"id": upload["id"]}, headers=person["headers"])
        assert again.get_json()["upload"]["image_url"] == upload["image_url"]  # cached for this person
        got.append((person["user"]["id"], upload["image_url"], upload["thumbnail_url"]))
    (alice, alice_image, alice_thumb), (bob, bob_image, bob_thumb) = got
    assert len({alice_image, alice_thumb, bob_image, bob_thumb}) == 4
    assert f"/{alice}/" in alice_image and f"/{bob}/" in bob_image


def test_no_identity_to_sign_with_is_a_503(iam, fn, settings_env, tmp_path):
    seed_product(put_object("catalog/p1.jpg"))
    settings_env(google_application_credentials=tmp_path / "missing.json")
    storage.forget_signing_state()
    r = fn("products_search").get("/")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "DEPENDENCY_UNAVAILABLE"


# --- our V4 signer builds what Google's client library builds -------------------------------------------------

@pytest.mark.parametrize("endpoint", ["", "http://127.0.0.1:4443"])
@pytest.mark.parametrize(("method", "name", "headers"), [
    ("GET", "users/u1/interiors/i1/variant-0.jpg", None),
    ("GET", "catalog/products/Sofa Ö & co+1/€ image~v2 (1).jpg", None),
    ("PUT", "raw/u1/up1", {"Content-Type": "image/jpeg", "x-goog-content-length-range": "0,20971520",
                           "x-goog-if-generation-match": "0"}),
    ("PUT", "raw/u1/up 2", {"Content-Type": " image/png ", "X-Goog-If-Generation-Match": "0"}),
])
def test_v4_links_are_byte_for_byte_the_client_librarys(stack, monkeypatch, endpoint, method, name, headers):
    """lib.storage signs without importing google-cloud-storage (a cold start's cost); the library is the oracle:
    for the same key, object, headers, lifetime and moment both give the same URL, signature included (RSA
    PKCS#1 v1.5 is deterministic), in production's endpoint and the emulator's."""
    from datetime import UTC, datetime, timedelta

    from google.cloud.storage._signing import generate_signed_url_v4
    from google.oauth2 import service_account

    if endpoint:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    else:
        monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    storage.forget_signing_state()
    moment = datetime(2026, 12, 1, 3, 4, 5, tzinfo=UTC)
    ours = storage.v4_signed_url("zipkku-images", name, method, 900, headers, now=moment)

    signer, email = storage._signing_identity()
    credentials = service_account.Credentials(signer, email, token_uri="https://oauth2.googleapis.com/token")  # noqa: S106
    resource = "/zipkku-images/" + urllib.parse.quote(name, safe="/~")
    theirs = generate_signed_url_v4(credentials, resource, timedelta(seconds=900),
                                    api_access_endpoint=endpoint or storage.STORAGE_ENDPOINT, method=method,
                                    headers=dict(headers or {}), _request_timestamp=moment.strftime("%Y%m%dT%H%M%SZ"))
    storage.forget_signing_state()
    assert ours == theirs


def test_a_v4_link_cannot_outlive_seven_days(stack):
    with pytest.raises(ValueError):
        storage.v4_signed_url("zipkku-images", "a.jpg", "GET", 7 * 24 * 3600 + 1)
