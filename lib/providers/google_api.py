"""Calls to Google's managed AI APIs (Cloud Vision, Vertex AI) over REST, without their SDKs.

    api = google_api.session()                       # one per process: an AuthorizedSession and a pool
    answer = google_api.post_json(api, url, body)     # a dict, or GoogleApiError

The token is the runtime identity's, from Application Default Credentials (the metadata server on Cloud Run);
google-auth's AuthorizedSession refreshes it before it expires and once more on a 401. 429
(RESOURCE_EXHAUSTED: a quota) and 5xx are retried GOOGLE_API_RETRIES times with backoff (honouring
Retry-After); anything else is returned at once as a GoogleApiError carrying Google's error status, so each
provider maps it onto its own failure (lib.providers.vision, lib.embed).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import google.auth
import google.auth.exceptions
import requests
from google.auth.transport.requests import AuthorizedSession

from lib import clients
from lib.config import get_settings
from lib.retries import next_attempt, retry_after_seconds

log = logging.getLogger("zipkku.providers.google")

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass
class GoogleApiError(Exception):
    """A call that did not succeed. status is the HTTP status (0: no answer, or no credentials), reason
    Google's canonical error status (INVALID_ARGUMENT, PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...)."""

    status: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.reason}: {self.message}"

    @property
    def retryable(self) -> bool:
        """Another attempt later may succeed: a quota, an outage, no answer."""
        return self.status in (0, 429) or self.status >= 500


def session():
    """The process's authorized session (created on first use; the pool fits the embedder's concurrency)."""

    def create():
        try:
            credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        except google.auth.exceptions.DefaultCredentialsError:
            return None  # no identity here: every call fails with a clear error, the process still starts
        api = AuthorizedSession(credentials)
        pool = max(4, get_settings().vertex_concurrency)
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=pool, max_retries=0)
        api.mount("https://", adapter)
        api.mount("http://", adapter)
        return api

    # keyed by the credentials in use, so a process (or a test) that changes them gets a fresh session
    return clients.cached(("google-api", os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")), create)


def post_json(api, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` as JSON; the decoded JSON object answered, or GoogleApiError (after the retries)."""
    s = get_settings()
    if api is None:
        raise GoogleApiError(0, "UNAUTHENTICATED", "no Google credentials (Application Default Credentials)")
    attempt = 0
    while True:
        try:
            response = api.post(url, json=body, timeout=s.google_api_timeout_seconds)
        except (requests.RequestException, google.auth.exceptions.GoogleAuthError) as exc:
            error = GoogleApiError(0, "UNAVAILABLE", f"no answer ({type(exc).__name__})")
            wait = s.google_api_retry_backoff_seconds * 2**attempt
        else:
            if response.status_code == 200:
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                if not isinstance(answer, dict):
                    raise GoogleApiError(200, "MALFORMED", "the answer is not a JSON object")
                return answer
            error = _error(response)
            if not error.retryable:
                raise error
            wait = retry_after_seconds(response, s.google_api_retry_backoff_seconds * 2**attempt)
        attempt = next_attempt(attempt, error, wait, retries=s.google_api_retries, what=url.split("?")[0],
                               reason=error.reason)


def _error(response) -> GoogleApiError:
    """Google's JSON error shape: {"error": {"code", "message", "status"}} (anything else still gets a status)."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    status, text = error.get("status"), error.get("message")
    reason = status if isinstance(status, str) else f"HTTP_{response.status_code}"
    message = text if isinstance(text, str) else response.reason or ""
    return GoogleApiError(response.status_code, reason, message[:300])


