"""Cloud Storage: one lazily created client per process, private objects, V4 signed URLs for clients.

Objects are never public. Documents store references as "gs://bucket/name" strings (`ref`, `parse_ref`);
only when a reply goes to a client is a reference turned into a short-lived signed GET URL (`client_url`).
Browsers upload straight to the bucket through a signed PUT URL bound to the content type and a size range
(`signed_put_url`), so photo bytes never pass through a function.

Signing (`v4_signed_url`: Cloud Storage's V4 signing process, with one of two signers):
- production (Cloud Run, no key file): `IamSigner`, the IAM Credentials API signBlob at IAM_CREDENTIALS_URL
  with the runtime identity's token (the signing account needs roles/iam.serviceAccountTokenCreator on
  itself). Each signature is a round trip, so links a client may fetch are cached per signing epoch and the
  missing ones of an answer are signed concurrently (`client_url`, `signed_links`). Tests and the signing
  benchmark point IAM_CREDENTIALS_URL at a local double of signBlob (scripts/iam_double.py).
- locally: a throwaway RSA key generated once into `.local/` by the local stack (SIGNING_KEY_FILE), wrapped
  as service-account credentials. fake-gcs-server does not verify signatures; the local stack's front
  (scripts/gcs_front.py) does, with the same key, as Cloud Storage would.

Locally the same client code talks to fake-gcs-server through STORAGE_EMULATOR_HOST (the client then uses
anonymous credentials and the emulator's address as the URL base, including for signed URLs).
Signed URLs are credentials: never log them (lib.log redacts X-Goog-Signature as a second line of defence).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.auth import crypt

from lib import clients, errors
from lib.config import get_settings

if TYPE_CHECKING:  # google-cloud-storage is imported lazily: only functions that touch objects pay for it
    from google.cloud.storage import Bucket, Client

T = TypeVar("T")
log = logging.getLogger("zipkku.storage")

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
    from google.api_core.exceptions import NotFound  # google-api-core loads grpc: only on first use

    if not prefix:
        raise ValueError("refusing to delete a whole bucket: give a non-empty prefix")
    deleted = 0
    for blob in client().list_blobs(bucket_name, prefix=prefix):
        try:
            blob.delete()
            deleted += 1
        except NotFound:  # deleted concurrently: the goal is reached either way
            pass
    return deleted


# --- signed URLs --------------------------------------------------------------------------------------------

class Signer(Protocol):
    def sign(self, message: bytes) -> bytes: ...


def _signing_identity() -> tuple[Signer, str]:
    """(signer, signing account email): the local PEM key (SIGNING_KEY_FILE) or, in production, IAM signBlob at
    IAM_CREDENTIALS_URL for the signing account."""
    settings = get_settings()

    def create() -> tuple[Signer, str]:
        if settings.signing_key_file:
            with open(settings.signing_key_file, encoding="utf-8") as handle:
                key_signer = crypt.RSASigner.from_string(handle.read())
            return key_signer, (settings.signing_service_account
                                or f"zipkku-local@{settings.gcp_project}.iam.gserviceaccount.com")
        iam_signer = IamSigner(settings.iam_credentials_url, settings.signing_service_account or None)
        return iam_signer, iam_signer.email()

    return clients.cached(("signing", settings.signing_key_file, settings.iam_credentials_url,
                           settings.signing_service_account), create)


STORAGE_ENDPOINT = "https://storage.googleapis.com"
MAX_SIGNED_SECONDS = 7 * 24 * 3600  # Cloud Storage refuses a V4 signature valid longer


def v4_signed_url(bucket_name: str, name: str, method: str, ttl_seconds: int,
                  headers: dict[str, str] | None = None, now: datetime | None = None,
                  endpoint: str | None = None) -> str:
    """A V4 signed URL (path style) for one object: Cloud Storage's documented signing process
    (cloud.google.com/storage/docs/access-control/signing-urls-manually), building the same canonical request
    as google-cloud-storage's `Blob.generate_signed_url(version="v4")` (tests/test_signing.py holds the two
    byte for byte), without importing that library: its import costs every function that signs a link about as
    much as functions-framework's own at the first request. `headers` are signed too (with Host), so a request
    must send them exactly; the payload is unsigned, as browsers' PUTs cannot sign a body."""
    if not 0 < ttl_seconds <= MAX_SIGNED_SECONDS:
        raise ValueError(f"a V4 signed URL lives 1 s to 7 days, not {ttl_seconds} s")
    signer, email = _signing_identity()
    # The client library's own endpoint rule: the emulator's address when STORAGE_EMULATOR_HOST is set
    endpoint = endpoint or os.environ.get("STORAGE_EMULATOR_HOST") or STORAGE_ENDPOINT
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    timestamp, scope = moment.strftime("%Y%m%dT%H%M%SZ"), f"{moment:%Y%m%d}/auto/storage/goog4_request"
    signed = {"host": urlsplit(endpoint).netloc}
    signed.update({key.lower().strip(): " ".join(value.split()) for key, value in (headers or {}).items()})
    ordered = sorted(signed.items())
    signed_headers = ";".join(key for key, _ in ordered)
    query = {"X-Goog-Algorithm": "GOOG4-RSA-SHA256", "X-Goog-Credential": f"{email}/{scope}",
             "X-Goog-Date": timestamp, "X-Goog-Expires": str(ttl_seconds), "X-Goog-SignedHeaders": signed_headers}
    canonical_query = "&".join(sorted(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in query.items()))
    resource = f"/{bucket_name}/{quote(name, safe='/~')}"
    canonical_request = "\n".join([method, resource, canonical_query,
                                   "".join(f"{key}:{value}\n" for key, value in ordered), signed_headers,
                                   "UNSIGNED-PAYLOAD"])
    string_to_sign = "\n".join(["GOOG4-RSA-SHA256", timestamp, scope,
                                hashlib.sha256(canonical_request.encode("ascii")).hexdigest()])
    signature = signer.sign(string_to_sign.encode("ascii")).hex()
    return f"{endpoint}{resource}?{canonical_query}&X-Goog-Signature={signature}"


class IamSigner:
    """A google.auth signer that signs through the IAM Credentials API `signBlob` at a configured base URL
    (the library's own signers hard-code https://iamcredentials.googleapis.com, so a local double could not
    stand in for it). The caller's token comes from Application Default Credentials (the metadata server on
    Cloud Run); the account needs roles/iam.serviceAccountTokenCreator on the signing account.

    Transient answers (429 quota, 5xx, no connection) are retried with backoff for SIGNING_RETRY_SECONDS;
    then, and at once for a refusal (403: a missing role), the request ends in a 503, never a 500."""

    key_id = None  # IAM picks the key; google.auth's Signer interface asks for this

    def __init__(self, base_url: str, email: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._email = email
        self._credentials: google.auth.credentials.Credentials | None = None
        self._token_lock = threading.Lock()
        self.session = requests.Session()
        pool = max(1, get_settings().signing_concurrency)
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def _token(self, *, renew: bool = False) -> str:
        """A valid access token of the runtime identity, refreshed once for all signing threads."""
        with self._token_lock:
            try:
                if self._credentials is None:
                    self._credentials, _ = google.auth.default(
                        scopes=["https://www.googleapis.com/auth/cloud-platform"])
                if renew or not self._credentials.valid:
                    self._credentials.refresh(google.auth.transport.requests.Request())
                token = self._credentials.token
                if not token:
                    raise google.auth.exceptions.RefreshError("the credentials gave no token")
            except google.auth.exceptions.GoogleAuthError as exc:  # no identity, or its token source is down
                log.error("no access token to sign links with: %s", type(exc).__name__)
                raise errors.DependencyUnavailable("Links to your images could not be signed right now; "
                                                   "try again shortly.") from None
            return token

    def email(self) -> str:
        """The signing account: SIGNING_SERVICE_ACCOUNT, else the runtime account (compute credentials learn
        their email on refresh)."""
        if not self._email:
            self._token()
            self._email = getattr(self._credentials, "service_account_email", None)
            if not self._email or self._email == "default":
                raise errors.DependencyUnavailable(
                    "Links cannot be signed: no signing service account (set SIGNING_SERVICE_ACCOUNT).")
        return self._email

    def sign(self, message: bytes | str) -> bytes:
        settings = get_settings()
        data = message.encode() if isinstance(message, str) else message
        url = f"{self.base_url}/v1/projects/-/serviceAccounts/{self.email()}:signBlob"
        body = {"payload": base64.b64encode(data).decode("ascii")}
        deadline = time.monotonic() + settings.signing_retry_seconds
        delay, renewed = 0.05, False
        while True:
            answer: requests.Response | requests.RequestException
            try:
                answer = self.session.post(url, json=body, timeout=settings.signing_timeout_seconds,
                                           headers={"Authorization": f"Bearer {self._token()}"})
                status = answer.status_code
            except requests.RequestException as exc:
                answer, status = exc, 0
            if status == 200 and isinstance(answer, requests.Response):
                try:
                    return base64.b64decode(answer.json()["signedBlob"], validate=True)
                except (ValueError, KeyError, TypeError):
                    status = 502  # a malformed answer: treated like a server error
            if status == 401 and not renewed:  # the token expired in flight: one fresh token, once
                self._token(renew=True)
                renewed = True
                continue
            transient = status == 0 or status == 429 or status >= 500
            if not transient or time.monotonic() + delay > deadline:
                _log_signing_failure(status, answer)
                raise errors.DependencyUnavailable("Links to your images could not be signed right now; "
                                                   "try again shortly.")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _log_signing_failure(status: int, answer: object) -> None:
    reason = getattr(answer, "text", None) or repr(answer)
    hint = " (does the runtime account have roles/iam.serviceAccountTokenCreator?)" if status == 403 else ""
    log.error("IAM signBlob failed with status %s%s: %s", status or "no answer", hint,
                                   str(reason)[:300])


def signed_put_url(bucket_name: str, name: str, content_type: str, max_bytes: int) -> tuple[str, dict[str, str]]:
    """A single-use V4 signed PUT URL bound to `content_type` and a body of at most `max_bytes`.

    Returns (url, headers): the client must send exactly these headers with the PUT, since they are part
    of the signature (Cloud Storage refuses the request otherwise, or a body outside the length range).
    `x-goog-if-generation-match: 0` makes the link single use: Cloud Storage writes only if the object does
    not exist yet and answers 412 to any later PUT, so a leaked or replayed link cannot overwrite the photo.
    """
    settings = get_settings()
    headers = {"Content-Type": content_type, "x-goog-content-length-range": f"0,{int(max_bytes)}",
               "x-goog-if-generation-match": "0"}
    return v4_signed_url(bucket_name, name, "PUT", settings.signed_put_ttl_seconds, headers), headers


def signed_put_expiry() -> datetime:
    """When a signed PUT URL made now stops working (reported to clients next to the URL)."""
    return datetime.now(UTC) + timedelta(seconds=get_settings().signed_put_ttl_seconds)


def signed_get_url(bucket_name: str, name: str, ttl_seconds: int | None = None) -> str:
    """A short-lived V4 signed GET URL for one object, signed now (uncached: see `client_url`)."""
    ttl = ttl_seconds or get_settings().signed_get_ttl_seconds
    return v4_signed_url(bucket_name, name, "GET", ttl)


# --- links a client may fetch: the one helper, cached per signing epoch ---------------------------------------
#
# Signing in production is an IAM round trip (tens of ms), and one answer can link to a hundred objects. So a
# GET link is signed once per object per signing epoch (half the link lifetime) and kept by this instance: a
# link is never served when it is older than half its lifetime, and every answer built in one epoch carries
# the same link for an object (catalog ETags include the epoch, so a revalidated answer never holds expiring
# links). The links an answer lacks are signed together, SIGNING_CONCURRENCY at a time (`signed_links`).
# Keys are (bucket, object name): people's objects are named under their own id, so a link is never shared
# across objects or people.

def signing_epoch() -> int:
    """Changes every half signed-URL lifetime: links are cached within one epoch, and catalog ETags include it."""
    return int(time.time() // _epoch_seconds())


def _epoch_seconds() -> int:
    return max(1, get_settings().signed_get_ttl_seconds // 2)


class _LinkCache:
    """Signed GET links of the current signing epoch, least recently used dropped first beyond `size`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch = -1
        self.links: OrderedDict[tuple[str, str], str] = OrderedDict()

    def get(self, key: tuple[str, str], epoch: int) -> str | None:
        with self.lock:
            if epoch != self.epoch:
                return None
            link = self.links.get(key)
            if link is not None:
                self.links.move_to_end(key)
            return link

    def put(self, key: tuple[str, str], link: str, epoch: int) -> None:
        size = get_settings().signed_url_cache_size
        with self.lock:
            if epoch != self.epoch:
                if epoch < self.epoch:
                    return  # signed across an epoch turn: already too old for this cache
                self.epoch, self.links = epoch, OrderedDict()
            self.links[key] = link
            self.links.move_to_end(key)
            while len(self.links) > size:
                self.links.popitem(last=False)


_links = _LinkCache()
# Inside `signed_links`: the objects the first pass found unsigned (None outside), and the links signed for
# the second pass (so it never depends on the cache still holding them).
_wanted: ContextVar[set[tuple[str, str]] | None] = ContextVar("wanted_links", default=None)
_batch: ContextVar[dict[tuple[str, str], str] | None] = ContextVar("signed_batch", default=None)


def client_url(value: str | None) -> str | None:
    """What a client may fetch, for every link in every answer: a gs:// reference becomes a signed GET URL
    (cached for this signing epoch), an http(s) URL (catalog images hosted elsewhere) passes through, None
    or "" is None."""
    if not value:
        return None
    if value.startswith(("http://", "https://")):
        return value
    key = parse_ref(value)
    batch = _batch.get()
    if batch is not None and key in batch:
        return batch[key]
    epoch = signing_epoch()
    link = _links.get(key, epoch)
    if link is not None:
        return link
    wanted = _wanted.get()
    if wanted is not None:  # first pass of `signed_links`: note it; this answer is built again
        wanted.add(key)
        return value
    return _sign_link(key, epoch)


def _sign_link(key: tuple[str, str], epoch: int) -> str:
    link = signed_get_url(*key)
    _links.put(key, link, epoch)
    return link


def signed_links(build: Callable[[], T]) -> T:
    """`build()`'s answer with every link signed, the missing ones concurrently.

    `build` (a pure view builder that calls `client_url`) runs once to learn which objects it links to that
    this instance has no link for yet; those are signed together, SIGNING_CONCURRENCY at a time, and `build`
    runs again. With every link cached (a warm instance), the first run is the answer and nothing is signed."""
    wanted: set[tuple[str, str]] = set()
    token = _wanted.set(wanted)
    try:
        first = build()
    finally:
        _wanted.reset(token)
    if not wanted:
        return first
    batch_token = _batch.set(_sign_links(wanted))
    try:
        return build()
    finally:
        _batch.reset(batch_token)


def _sign_links(keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    epoch = signing_epoch()
    ordered = sorted(keys)
    if len(ordered) == 1 or get_settings().signing_concurrency == 1:
        return {key: _sign_link(key, epoch) for key in ordered}
    _signing_identity()  # created (and its token fetched) once, before the threads start
    links = _signing_pool().map(lambda key: _sign_link(key, epoch), ordered)
    return dict(zip(ordered, links, strict=True))


def _signing_pool() -> ThreadPoolExecutor:
    workers = get_settings().signing_concurrency
    return clients.cached(("signing-pool", workers),
                          lambda: ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sign"))


def forget_signing_state() -> None:
    """Back to a fresh instance: no cached links, signing credentials, tokens or IAM connections (tests and
    the signing benchmark)."""
    clients.forget("signing")
    with _links.lock:
        _links.epoch, _links.links = -1, OrderedDict()


# --- events ---------------------------------------------------------------------------------------------------

FINALIZED_EVENT = "google.cloud.storage.object.v1.finalized"


def finalized_object(cloud_event) -> dict | None:
    """The object resource (Cloud Storage JSON) of a `google.cloud.storage.object.v1.finalized` CloudEvent,
    or None for any other or malformed event (CloudEvent functions log and return: never raise on bad input,
    since a raise makes Eventarc redeliver it forever)."""
    if cloud_event["type"] != FINALIZED_EVENT:
        return None
    data = cloud_event.data
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    return data if isinstance(data, dict) else None
