"""Throttles: fixed windows that count attempts per key and refuse more once a limit is reached.

Password guessing (OWASP: throttle per account AND per client, so that a guesser cannot lock the owner out):
- per (email, client address): after LOGIN_MAX_FAILURES unsuccessful logins within LOGIN_LOCKOUT_SECONDS, that
  address may not try that email again until the window closes; a success clears it;
- per email, from every address together: the same limit, so spreading guesses over many addresses is no
  faster than today. When it is reached, only addresses the account has signed in from before
  (lib.accounts.known_address) may still try, each within its own limit above. A guesser keeps the account
  closed to new addresses, never to its owner's.
- the current_password that PATCH and DELETE /me ask for, per user id, with the same limits (a stolen access
  token must not allow unlimited guessing of the password).

Cost per client address (the one Google's front end reports, lib.http.client_address; IPv6 by /64, the block
one subscriber gets): sign-ups, login attempts, new uploads and generation requests per hour, whatever the
account, so that making accounts does not multiply what one client may spend.

Photo uploads: at most UPLOADS_PER_HOUR new uploads per user (signed or direct), so one account cannot fill the
buckets or keep the image processing busy.

One document per key: {_id: "<scope>:<key>", attempts, expires_at}. Each attempt is counted BEFORE the work it
guards (one atomic increment), so parallel requests cannot all pass a read-then-count gate: the (N+1)th
reservation in a window is refused however many arrive at once. The window opens at the first attempt and
the TTL index deletes the document when it closes.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
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
ADDRESS_WINDOW_SECONDS = 3600  # the window of every per-address limit (their settings say "per hour")


def address_key(address: str) -> str:
    """The unit a per-address limit counts: an IPv4 address, or the /64 of an IPv6 one (one subscriber usually
    holds a whole /64, so counting single IPv6 addresses would let one client rotate through billions)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "other-" + hashlib.sha256(address.encode()).hexdigest()[:16]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is that IPv4 address
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _reserve(key: str, limit: int, window_seconds: int) -> int | None:
    """Count one attempt for `key`; None when it is allowed, else the seconds until the window closes.

    The count is one atomic $inc on a live window's document. Opening a window is a separate insert that a
    concurrent opener may win (DuplicateKeyError: the window exists, count in it). An upsert doing both at once
    lost races on SecantusDB by answering no document after counting, so parallel attempts counted twice and
    refused the owner before the limit."""
    throttle = db.collection(COLLECTION)
    for _ in range(5):
        now = db.utcnow()
        state = throttle.find_one_and_update({"_id": key, "expires_at": {"$gt": now}}, {"$inc": {"attempts": 1}},
                                             return_document=ReturnDocument.AFTER)
        if state is None:  # no live window: remove a stale one (expired, not yet swept by the TTL index), open one
            throttle.delete_one({"_id": key, "expires_at": {"$lte": now}})
            with contextlib.suppress(DuplicateKeyError):
                throttle.insert_one({"_id": key, "attempts": 0, "expires_at": now + timedelta(seconds=window_seconds)})
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


def _per_address(kind: str, address: str, limit: int, *, code: str, what: str) -> None:
    """Count one `kind` request from `address` per hour; 429 `code` over `limit`."""
    _count_or_refuse(f"{kind}-address:{address_key(address)}", limit, ADDRESS_WINDOW_SECONDS, code=code,
                     refusal=f"Too many {what} from your network in the last hour",
                     audited=f"{what} from one address (hourly limit)")


def reserve_signup(address: str) -> None:
    """Count a sign-up from `address`; 429 SIGNUP_RATE_LIMITED over SIGNUPS_PER_ADDRESS_PER_HOUR."""
    _per_address("signup", address, get_settings().signups_per_address_per_hour, code="SIGNUP_RATE_LIMITED",
                 what="sign-ups")


def reserve_login_attempt(email: str, address: str) -> None:
    """Count a login attempt from `address` before its password is checked: one per address per hour (429
    LOGIN_RATE_LIMITED over LOGINS_PER_ADDRESS_PER_HOUR, whatever the email) and one for this email from this
    address (429 LOGIN_THROTTLED over LOGIN_MAX_FAILURES unsuccessful ones)."""
    settings = get_settings()
    _per_address(_LOGIN, address, settings.logins_per_address_per_hour, code="LOGIN_RATE_LIMITED",
                 what="login attempts")
    _count_or_refuse(_login_key(email, address), settings.login_max_failures, settings.login_lockout_seconds,
                     code="LOGIN_THROTTLED", refusal="Too many failed logins for this account",
                     audited="login (too many failed attempts from one address)")


def reserve_account_login(email: str) -> int | None:
    """Count a login attempt for `email` from any address; None while under LOGIN_MAX_FAILURES, else the
    seconds until the window closes (the caller refuses it unless the address is one the account knows)."""
    settings = get_settings()
    return _reserve(f"{_LOGIN}:{email}", settings.login_max_failures, settings.login_lockout_seconds)


def refuse_login(wait: int) -> None:
    """429 LOGIN_THROTTLED: the account's failures from everywhere reached the limit and this address is new."""
    audit.warning("login refused for %ss (too many failed attempts for the account; an unknown address)", wait)
    raise errors.TooManyRequests(f"Too many failed logins for this account; try again in {wait} seconds.",
                                 code="LOGIN_THROTTLED", retry_after_seconds=wait)


def clear_login_attempts(email: str, address: str) -> None:
    """A successful login clears this address's count for the email and takes back its own count from the
    account-wide one, whose failures stay until their window closes (a guesser elsewhere must not get fresh
    tries whenever the owner signs in)."""
    throttles = db.collection(COLLECTION)
    throttles.delete_one({"_id": _login_key(email, address)})
    throttles.update_one({"_id": f"{_LOGIN}:{email}", "attempts": {"$gt": 0}}, {"$inc": {"attempts": -1}})


def _login_key(email: str, address: str) -> str:
    return f"{_LOGIN}:{address_key(address)}:{email}"


def reserve_password_check(user_id: str) -> None:
    """Count a current_password check for `user_id` before it is verified; 429 PASSWORD_THROTTLED over the
    limit."""
    settings = get_settings()
    _count_or_refuse(f"{_CURRENT_PASSWORD}:{user_id}", settings.login_max_failures, settings.login_lockout_seconds,
                     code="PASSWORD_THROTTLED", refusal="Too many wrong current_password attempts",
                     audited=f"user {user_id}: current_password check")


def clear_password_checks(user_id: str) -> None:
    db.collection(COLLECTION).delete_one({"_id": f"{_CURRENT_PASSWORD}:{user_id}"})


def reserve_upload(user_id: str, address: str | None) -> None:
    """Count a new photo upload for `user_id` and from `address` (None: not a client's request); 429
    UPLOAD_RATE_LIMITED over UPLOADS_PER_HOUR or UPLOADS_PER_ADDRESS_PER_HOUR."""
    settings = get_settings()
    if address is not None:
        _per_address(_UPLOADS, address, settings.uploads_per_address_per_hour, code="UPLOAD_RATE_LIMITED",
                     what="photo uploads")
    _count_or_refuse(f"{_UPLOADS}:{user_id}", settings.uploads_per_hour, UPLOAD_WINDOW_SECONDS,
                     code="UPLOAD_RATE_LIMITED", refusal="Too many photo uploads in the last hour",
                     audited=f"user {user_id}: upload (hourly limit)")


def reserve_generation(address: str | None) -> None:
    """Count a generation request from `address` (None: not a client's request); 429 GENERATION_RATE_LIMITED
    over GENERATIONS_PER_ADDRESS_PER_HOUR (each account also has its own quota, lib.quota)."""
    if address is not None:
        _per_address("generations", address, get_settings().generations_per_address_per_hour,
                     code="GENERATION_RATE_LIMITED", what="generation requests")
