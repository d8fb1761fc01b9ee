"""Login throttling: after N failed logins for one email, refuse logins for that email for a while.

One document per email: {_id: email, failures, expires_at}. The window opens at the first failure and the
TTL index deletes the document when it closes; a success deletes it at once.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from pymongo.errors import DuplicateKeyError

from lib import db, errors
from lib.config import get_settings

audit = logging.getLogger("zipkku.audit")


def check_login_allowed(email: str) -> None:
    settings = get_settings()
    now = db.utcnow()
    state = db.collection("login_throttle").find_one({"_id": email, "expires_at": {"$gt": now}})
    if state is not None and state["failures"] >= settings.login_max_failures:
        wait = math.ceil((state["expires_at"] - now).total_seconds())
        audit.warning("login refused for %ss after %s failures (throttled)", wait, state["failures"])
        raise errors.TooManyRequests(
            f"Too many failed logins for this account; try again in {wait} seconds.",
            code="LOGIN_THROTTLED", retry_after_seconds=wait,
        )


def record_login_failure(email: str) -> None:
    settings = get_settings()
    throttle = db.collection("login_throttle")
    now = db.utcnow()
    counted = throttle.update_one({"_id": email, "expires_at": {"$gt": now}}, {"$inc": {"failures": 1}})
    if counted.matched_count:
        return
    window = {"failures": 1, "expires_at": now + timedelta(seconds=settings.login_lockout_seconds)}
    try:  # a stale (expired, not yet swept) window restarts; a concurrent first failure just counts
        throttle.update_one({"_id": email}, {"$set": window}, upsert=True)
    except DuplicateKeyError:
        throttle.update_one({"_id": email}, {"$inc": {"failures": 1}})


def clear_login_failures(email: str) -> None:
    db.collection("login_throttle").delete_one({"_id": email})
