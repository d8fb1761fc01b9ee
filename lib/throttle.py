"""Throttles: fixed windows that count attempts per key and refuse more once a limit is reached.

Password guessing: after N unsuccessful password checks for one key within a window, more checks for that key
are refused until the window closes. Two kinds of checks are throttled, with the same limits: logins per email,
and the current_password that PATCH and DELETE /me ask for, per user id (a stolen access token must not allow
unlimited guessing of the password). A successful check deletes its window at once (so only unsuccessful
attempts accumulate).

Photo uploads: at most UPLOADS_PER_HOUR new uploads per user (signed or direct), so one account cannot fill the
buckets or keep the image processing busy.

One document per key: {_id: "<scope>:<key>", attempts, expires_at}. Each attempt is counted BEFORE the work it
guards (one atomic increment), so parallel requests cannot all pass a read-then-count gate: the (N+1)th
reservation in a window is refused however many arrive at once. The window opens at the first attempt and
the TTL index deletes the document when it closes.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from lib import db, errors
from lib.config import get_settings

audit = logging.getLogger("zipkku.audit")

COLLECTION = db.declare("throttles", [  # logins, current_password checks and uploads
    IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
])
_LOGIN, _CURRENT_PASSWORD, _UPLOADS = "login", "current_password", "uploads"
UPLOAD_WINDOW_SECONDS = 3600


def _reserve(key: str, limit: int, window_seconds: int) -> int | None:
    """Count one attempt for `key`; None when it is allowed, else the seconds until the window closes."""
    throttle = db.collection(COLLECTION)
    for _ in range(5):
        now = db.utcnow()
        try:
            state = throttle.find_one_and_update(
                {"_id": key, "expires_at": {"$gt": now}},
                {"$inc": {"attempts": 1},
                 "$setOnInsert": {"expires_at": now + timedelta(seconds=window_seconds)}},
                upsert=True, return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            # A stale window (expired, not yet swept by the TTL index) is in the way: remove it and count again.
            # A concurrent first attempt also lands here (its window is live, so nothing is removed).
            throttle.delete_one({"_id": key, "expires_at": {"$lte": now}})
            continue
        # SecantusDB may answer an upsert that lost a race with no document (a 500 before): count again; at
        # worst this attempt counts twice, which errs on the refusing side
        if state is None:
            continue
        if state["attempts"] <= limit:
            return None
        return max(1, math.ceil((state["expires_at"] - now).total_seconds()))
    return window_seconds  # never reached in practice; when in doubt, refuse


def _count_or_refuse(key: str, limit: int, window_seconds: int, *, code: str, refusal: str, audited: str) -> None:
    """Count one attempt for `key`, or refuse it: 429 `code` with Retry-After, and an audit line."""
    wait = _reserve(key, limit, window_seconds)
    if wait is not None:
        audit.warning("%s refused for %ss (throttled)", audited, wait)
        raise errors.TooManyRequests(f"{refusal}; try again in {wait} seconds.", code=code,
                                     retry_after_seconds=wait)


def reserve_login_attempt(email: str) -> None:
    """Count a login attempt for `email` before its password is checked; 429 LOGIN_THROTTLED over the limit."""
    settings = get_settings()
    _count_or_refuse(f"{_LOGIN}:{email}", settings.login_max_failures, settings.login_lockout_seconds,
                     code="LOGIN_THROTTLED", refusal="Too many failed logins for this account",
                     audited="login (too many failed attempts)")


def clear_login_attempts(email: str) -> None:
    db.collection(COLLECTION).delete_one({"_id": f"{_LOGIN}:{email}"})


def reserve_password_check(user_id: str) -> None:
    """Count a current_password check for `user_id` before it is verified; 429 PASSWORD_THROTTLED over the
    limit."""
    settings = get_settings()
    _count_or_refuse(f"{_CURRENT_PASSWORD}:{user_id}", settings.login_max_failures, settings.login_lockout_seconds,
                     code="PASSWORD_THROTTLED", refusal="Too many wrong current_password attempts",
                     audited=f"user {user_id}: current_password check")


def clear_password_checks(user_id: str) -> None:
    db.collection(COLLECTION).delete_one({"_id": f"{_CURRENT_PASSWORD}:{user_id}"})


def reserve_upload(user_id: str) -> None:
    """Count a new photo upload for `user_id`; 429 UPLOAD_RATE_LIMITED over UPLOADS_PER_HOUR."""
    _count_or_refuse(f"{_UPLOADS}:{user_id}", get_settings().uploads_per_hour, UPLOAD_WINDOW_SECONDS,
                     code="UPLOAD_RATE_LIMITED", refusal="Too many photo uploads in the last hour",
                     audited=f"user {user_id}: upload (hourly limit)")
