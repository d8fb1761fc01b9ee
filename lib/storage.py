"""Cloud Storage: one lazily created client per process, private objects, V4 signed URLs for clients.

Objects are never public. Documents store references as "gs://bucket/name" strings (`ref`, `parse_ref`);
only when a reply goes to a client is a reference turned into a short-lived signed GET URL (`client_url`).
Browsers upload straight to the bucket through a signed PUT URL bound to the content type and a size range
(`signed_put_url`), so photo bytes never pass through a function.

Signing:
- production (Cloud Run, no key file): the runtime service account signs through IAM signBlob; we pass its
  email and a fresh access token to `generate_signed_url` (the service account needs
  roles/iam.serviceAccountTokenCreator on itself).
- locally: a throwaway RSA key generated once into `.local/` by the local stack (SIGNING_KEY_FILE), wrapped
  as service-account credentials. fake-gcs-server does not verify signatures; the local stack's front
  (scripts/gcs_front.py) does, with the same key, as Cloud Storage would.

Locally the same client code talks to fake-gcs-server through STORAGE_EMULATOR_HOST (the client then uses
anonymous credentials and the emulator's address as the URL base, including for signed URLs).
Signed URLs are credentials: never log them (lib.log redacts X-Goog-Signature as a second line of defence).
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lib import clients
from lib.config import get_settings

if TYPE_CHECKING:  # google-cloud-storage is imported lazily: only functions that touch objects pay for it
    from google.cloud.storage import Bucket, Client

_lock = threading.Lock()
_signing: dict[str, object] = {}

REF_SCHEME = "gs://"


# --- references --------------------------------------------------------------------------------------------

def ref(bucket: str, name: str) -> str:
    return f"{REF_SCHEME}{bucket}/{name}"


def parse_ref(value: str) -> tuple[str, str]:
    """"gs://bucket/name" -> (bucket, name); ValueError for anything else."""
    if not isinstance(value, str) or not value.startswith(REF_SCHEME):
        raise ValueError("not a gs:// reference")
    bucket, sep, name = value[len(REF_SCHEME):].partition("/")
    if not bucket or not sep or not name:
        raise ValueError("a gs:// reference needs a bucket and an object name")
    return bucket, name


# --- the client --------------------------------------------------------------------------------------------

def client() -> Client:
    """The process's storage client (keyed by emulator host so tests that switch emulators get a new one)."""
    emulator, project = os.environ.get("STORAGE_EMULATOR_HOST", ""), get_settings().gcp_project

    def create() -> Client:
        from google.cloud import storage

        return storage.Client(project=project)

    return clients.cached(("storage", emulator, project), create)


def bucket(name: str) -> Bucket:
    """A bucket handle (no request is made)."""
    return client().bucket(name)


# --- bytes in and out ---------------------------------------------------------------------------------------

def upload_bytes(
    bucket_name: str, name: str, data: bytes, content_type: str, if_generation_match: int | None = None
) -> int:
    """Write an object and return its generation. `if_generation_match=0` writes only if it does not exist
    (raises google.api_core.exceptions.PreconditionFailed otherwise), which makes retried writers safe."""
    blob = bucket(bucket_name).blob(name)
    # Only a conditional write is safe to retry (the library's own rule); bound the retrying by our deadline.
    retry = _retry() if if_generation_match is not None else None
    blob.upload_from_string(data, content_type=content_type, if_generation_match=if_generation_match,
                            retry=retry, timeout=get_settings().storage_timeout_seconds)
    return int(blob.generation)


def download_bytes(bucket_name: str, name: str, generation: int | None = None) -> bytes:
    """An object's bytes (a specific generation if given). Raises google.api_core.exceptions.NotFound."""
    blob = bucket(bucket_name).blob(name, generation=generation)
    return blob.download_as_bytes(retry=_retry(), timeout=get_settings().storage_timeout_seconds)


def _retry():
    """The library's default retry, bounded by STORAGE_RETRY_SECONDS instead of 120 s, so an outage becomes
    a prompt 503 for a waiting user rather than a hung request."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(get_settings().storage_retry_seconds)


def delete_prefix(bucket_name: str, prefix: str) -> int:
    """Delete every object under `prefix` (e.g. a deleted user's folder); returns how many were deleted."""
    if not prefix:
        raise ValueError("refusing to delete a whole bucket: give a non-empty prefix")
    from google.api_core.exceptions import NotFound

    deleted = 0
    for blob in client().list_blobs(bucket_name, prefix=prefix):
        try:
            blob.delete()
            deleted += 1
        except NotFound:  # deleted concurrently: the goal is reached either way
            pass
    return deleted


# --- signed URLs --------------------------------------------------------------------------------------------

def _signing_kwargs() -> dict:
    """Credentials arguments for generate_signed_url: a local key, or IAM signBlob on Cloud Run."""
    settings = get_settings()
    if settings.signing_key_file:
        with _lock:
            creds = _signing.get(settings.signing_key_file)
            if creds is None:
                from google.auth import crypt
                from google.oauth2 import service_account

                with open(settings.signing_key_file, encoding="utf-8") as handle:
                    signer = crypt.RSASigner.from_string(handle.read())
                email = (settings.signing_service_account
                         or f"zipkku-local@{settings.gcp_project}.iam.gserviceaccount.com")
                creds = service_account.Credentials(
                    signer, email, token_uri="https://oauth2.googleapis.com/token"  # noqa: S106 - a URL
                )
                _signing[settings.signing_key_file] = creds
        return {"credentials": creds}

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        raise RuntimeError("SIGNING_KEY_FILE must be set when using the storage emulator (the local stack sets it)")
    with _lock:
        import google.auth
        import google.auth.transport.requests

        creds = _signing.get("adc")
        if creds is None:
            creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            _signing["adc"] = creds
        if not creds.valid:  # compute credentials learn their email and a token on refresh
            creds.refresh(google.auth.transport.requests.Request())
        email = settings.signing_service_account or getattr(creds, "service_account_email", None)
        return {"service_account_email": email, "access_token": creds.token}


def signed_put_url(bucket_name: str, name: str, content_type: str, max_bytes: int) -> tuple[str, dict[str, str]]:
    """A single-use V4 signed PUT URL bound to `content_type` and a body of at most `max_bytes`.

    Returns (url, headers): the client must send exactly these headers with the PUT, since they are part
    of the signature (Cloud Storage refuses the request otherwise, or a body outside the length range).
    `x-goog-if-generation-match: 0` makes the link single use: Cloud Storage writes only if the object does
    not exist yet and answers 412 to any later PUT, so a leaked or replayed link cannot overwrite the photo.
    """
    settings = get_settings()
    headers = {"x-goog-content-length-range": f"0,{int(max_bytes)}", "x-goog-if-generation-match": "0"}
    url = bucket(bucket_name).blob(name).generate_signed_url(
        version="v4",
        method="PUT",
        expiration=timedelta(seconds=settings.signed_put_ttl_seconds),
        content_type=content_type,
        headers=dict(headers),  # the library adds Content-Type and Host to the dict it is given
        **_signing_kwargs(),
    )
    return url, {"Content-Type": content_type, **headers}


def signed_put_expiry() -> datetime:
    """When a signed PUT URL made now stops working (reported to clients next to the URL)."""
    return datetime.now(UTC) + timedelta(seconds=get_settings().signed_put_ttl_seconds)


def signed_get_url(bucket_name: str, name: str, ttl_seconds: int | None = None) -> str:
    """A short-lived V4 signed GET URL for one object."""
    ttl = ttl_seconds or get_settings().signed_get_ttl_seconds
    return bucket(bucket_name).blob(name).generate_signed_url(
        version="v4", method="GET", expiration=timedelta(seconds=ttl), **_signing_kwargs()
    )


def client_url(value: str | None) -> str | None:
    """What a client may fetch: gs:// refs become signed GET URLs, http(s) URLs (catalog images hosted
    elsewhere) pass through, None stays None."""
    if value is None:
        return None
    if value.startswith(("http://", "https://")):
        return value
    return signed_get_url(*parse_ref(value))


# --- events ---------------------------------------------------------------------------------------------------

FINALIZED_EVENT = "google.cloud.storage.object.v1.finalized"


def finalized_object(cloud_event) -> dict | None:
    """The object resource (Cloud Storage JSON) of a `google.cloud.storage.object.v1.finalized` CloudEvent,
    or None for any other or malformed event (CloudEvent functions log and return: never raise on bad input,
    since a raise makes Eventarc redeliver it forever)."""
    import json

    if cloud_event["type"] != FINALIZED_EVENT:
        return None
    data = cloud_event.data
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    return data if isinstance(data, dict) else None
