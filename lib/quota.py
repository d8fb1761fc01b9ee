"""Generation quota: N generations per user per period, taken and refunded atomically.

One document per user in `quota_usage`: {_id: user_id, used, resets_at}. A period starts at the user's first
generation after the previous one ended (so it does not need a scheduler) and lasts
GENERATION_QUOTA_PERIOD_SECONDS. Taking a unit is one conditional update (`used < limit` in the filter), so
two concurrent requests for the last unit cannot both win. A refund is tied to the period the unit came from:
a failed generation after a reset gives nothing back twice.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from lib import db, errors
from lib.config import get_settings

COLLECTION = db.declare("quota_usage")


def take(user_id: str) -> datetime:
    """Take one unit; returns the period it came from (its resets_at), or raises 429 QUOTA_EXCEEDED."""
    settings = get_settings()
    usage = db.collection(COLLECTION)
    limit = settings.generation_quota
    for _ in range(5):  # a lost race on a period change is simply tried again
        now = db.utcnow()
        taken = usage.find_one_and_update(
            {"_id": user_id, "resets_at": {"$gt": now}, "used": {"$lt": limit}},
            {"$inc": {"used": 1}}, projection={"resets_at": 1}, return_document=True,
        )
        if taken is not None:
            return taken["resets_at"]
        current = usage.find_one({"_id": user_id})
        if current is not None and current["resets_at"] > now:
            if current["used"] < limit:
                continue  # the period began (or a unit came back) between our two reads: take again
            wait = math.ceil((current["resets_at"] - now).total_seconds())
            raise errors.TooManyRequests(
                f"You have used all {limit} generations of this period; more are available in {wait} seconds.",
                code="QUOTA_EXCEEDED", retry_after_seconds=wait,
                details=[{"field": "quota", "message": f"{current['used']} of {limit} used", "type": "quota_exceeded",
                          "used": current["used"], "limit": limit, "resets_at": current["resets_at"]}],
            )
        if limit < 1:
            raise errors.TooManyRequests("Generation is not available for this account.", code="QUOTA_EXCEEDED",
                                         retry_after_seconds=settings.generation_quota_period_seconds)
        # db.utcnow() is already in milliseconds, as Mongo stores it: the value handed out for a refund matches
        resets_at = now + timedelta(seconds=settings.generation_quota_period_seconds)
        period = {"used": 1, "resets_at": resets_at}
        try:
            if current is None:
                usage.insert_one({"_id": user_id, **period})
                return resets_at
            # the old period is over: start a new one, unless a concurrent request already did
            started = usage.update_one({"_id": user_id, "resets_at": current["resets_at"]}, {"$set": period})
            if started.modified_count:
                return resets_at
        except DuplicateKeyError:
            pass
    raise errors.DependencyUnavailable("The quota could not be updated; try again shortly.")


def refund(user_id: str, period: datetime | None) -> bool:
    """Give back one unit taken in `period` (a no-op once that period is over or nothing is used)."""
    if period is None:
        return False
    result = db.collection(COLLECTION).update_one(
        {"_id": user_id, "resets_at": period, "used": {"$gt": 0}}, {"$inc": {"used": -1}}
    )
    return bool(result.modified_count)


def usage(user_id: str) -> dict[str, Any]:
    """{used, limit, resets_at} for the `me` endpoint (resets_at None before the first generation)."""
    settings = get_settings()
    current = db.collection(COLLECTION).find_one({"_id": user_id})
    now = db.utcnow()
    if current is None or current["resets_at"] <= now:
        return {"used": 0, "limit": settings.generation_quota, "resets_at": None}
    return {"used": current["used"], "limit": settings.generation_quota, "resets_at": current["resets_at"]}
