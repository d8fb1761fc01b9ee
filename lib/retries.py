"""Retrying a call to an outside API: how long to wait, and when to give up (shared by every HTTP provider)."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("zipkku.retries")

MAX_WAIT_SECONDS = 30.0


def retry_after_seconds(response: Any, default: float) -> float:
    """The wait a 429/503 answer asks for (`Retry-After` in seconds, at most 30 s); `default` when it is absent or
    unreadable."""
    try:
        return max(0.0, min(MAX_WAIT_SECONDS, float(response.headers.get("Retry-After", default))))
    except ValueError:
        return default


def next_attempt(attempt: int, error: Exception, wait: float, *, retries: int, what: str, reason: str,
                 deadline: float | None = None) -> int:
    """After failed attempt number `attempt` (0-based): raise `error` when no retry is left, or when waiting would
    pass `deadline` (time.monotonic()); else log, wait and return the next attempt's number."""
    attempt += 1
    if attempt > retries or (deadline is not None and time.monotonic() + wait >= deadline):
        raise error
    log.warning("%s answered %s; retry %d in %.1fs", what, reason, attempt, wait)
    time.sleep(wait)
    return attempt
