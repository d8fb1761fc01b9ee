"""Passwords, access tokens and refresh tokens.

- Passwords: argon2id (argon2-cffi), parameters from settings; a hash made with older parameters is
  replaced on the next successful login.
- Access tokens: HS256 JWTs with `sub`, `iat`, `exp`, `jti`, `typ="access"`, `iss`, `ep` (the user's
  session epoch: bumping it on password change or deactivation invalidates every token issued before) and
  `sid` (the session: the refresh token family it was issued with; ending the session refuses it).
  Only HS256 is accepted, so `alg: none` and algorithm-confusion tokens are refused.
- Sessions: a login starts one (a refresh token family). Logging out, or a leaked refresh token, ends it: its
  refresh tokens are revoked, and its access tokens are refused by the check that already reads the user
  (lib.accounts.end_session keeps the ended session on the user document for as long as such a token lives).
- Refresh tokens: 256 random bits, stored only as a SHA-256 hash, single use. Each use rotates it for a new
  one in the same family; presenting a used token again means it leaked, so the whole family is revoked,
  except within REFRESH_REUSE_GRACE_SECONDS of its first use (two tabs refreshing at once, a retry after a
  lost answer): that answers with another new pair of the same session (Auth0's "reuse interval"), and every
  pair handed out keeps working.
  Each token also records the session epoch (`ep`) of the user it was issued for: a token whose epoch is no
  longer the user's (issued by a login or refresh that raced with a password change) is refused and its
  family revoked, so a password change signs out every other session even when the token was written after
  the change revoked the others.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, IndexModel, ReturnDocument

from lib import accounts, db, errors
from lib.config import get_settings

REFRESH_TOKENS = db.declare("refresh_tokens", [
    IndexModel([("token_hash", ASCENDING)], unique=True, name="token_hash_unique"),
    IndexModel([("family_id", ASCENDING)], name="family"),
    IndexModel([("user_id", ASCENDING)], name="user"),
    # Expired refresh tokens delete themselves.
    IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
])

audit = logging.getLogger("zipkku.audit")

# --- passwords -------------------------------------------------------------------------------------------

def _hasher() -> PasswordHasher:
    s = get_settings()
    return PasswordHasher(
        time_cost=s.argon2_time_cost, memory_cost=s.argon2_memory_kib, parallelism=s.argon2_parallelism,
        type=Type.ID,
    )


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


# What an unknown email's login is checked against, so it costs what a wrong password costs: the hash of a
# random string nobody knows (not a secret), made with the configured defaults (lib/config.py) and precomputed so
# that no login pays for making it. A test fails when the defaults change without it.
DUMMY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$9lj5nWTLd9V2zDCGFPnomQ$hx6XsJUL6TMfKCHzG6CpPwrCH34QphjIpANRfcPDl5Y"


@functools.cache
def _dummy_hash_for(time_cost: int, memory_kib: int, parallelism: int) -> str:
    return hash_password(secrets.token_urlsafe(16))


def dummy_hash() -> str:
    """DUMMY_HASH, or when other argon2 parameters are configured (e.g. the cheap ones in tests), one made with
    those, once per process (a verification's cost follows the hash's own parameters)."""
    if not needs_rehash(DUMMY_HASH):
        return DUMMY_HASH
    s = get_settings()
    return _dummy_hash_for(s.argon2_time_cost, s.argon2_memory_kib, s.argon2_parallelism)


def burn_password_check(password: str) -> None:
    """Spend the time of one verification so an unknown email answers as slowly as a wrong password."""
    verify_password(dummy_hash(), password)


# --- access tokens ---------------------------------------------------------------------------------------

def _epoch(user: dict[str, Any]) -> int:
    """The user's session epoch: tokens issued under an earlier one are no longer valid."""
    return user.get("session_epoch", 0)


ALGORITHM = "HS256"


def issue_access_token(user: dict[str, Any], session_id: str) -> tuple[str, int]:
    s = get_settings()
    now = db.utcnow()
    claims = {
        "sub": user["_id"],
        "iat": now,
        "exp": now + timedelta(seconds=s.access_token_ttl_seconds),
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "iss": s.jwt_issuer,
        "ep": _epoch(user),
        "sid": session_id,
    }
    token = jwt.encode(claims, _signing_key(), algorithm=ALGORITHM)
    return token, s.access_token_ttl_seconds


def _signing_key() -> str:
    secret = get_settings().jwt_secret
    if secret is None:  # a deployment mistake, not bad input: fail loudly (a logged 500), never sign with nothing
        raise RuntimeError("JWT_SECRET is not set, but this function signs or checks access tokens")
    return secret.get_secret_value()


def decode_access_token(token: str) -> dict[str, Any]:
    s = get_settings()
    try:
        claims = jwt.decode(
            token, _signing_key(), algorithms=[ALGORITHM], issuer=s.jwt_issuer,
            options={"require": ["sub", "iat", "exp", "jti", "typ"]},
        )
    except jwt.ExpiredSignatureError:
        raise errors.Unauthorized("The access token has expired; refresh it.", code="TOKEN_EXPIRED") from None
    except jwt.PyJWTError:
        raise errors.Unauthorized("The access token is not valid.", code="INVALID_TOKEN") from None
    if claims.get("typ") != "access" or not isinstance(claims.get("sub"), str):
        raise errors.Unauthorized("The access token is not valid.", code="INVALID_TOKEN")
    return claims


def authenticate(token: str) -> dict[str, Any]:
    """The active user an access token belongs to, or 401."""
    claims = decode_access_token(token)
    user = accounts.find_user(claims["sub"])
    if (user is None or not user.get("active", False) or claims.get("ep", 0) != _epoch(user)
            or accounts.session_ended(user, claims.get("sid"))):
        raise errors.Unauthorized("The access token is no longer valid; log in again.", code="INVALID_TOKEN")
    return user


# --- refresh tokens --------------------------------------------------------------------------------------

class RefreshTokenBody(BaseModel):
    """The body of /auth-refresh and /auth-logout."""

    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=200)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_refresh_token(user: dict[str, Any], family_id: str) -> str:
    token = secrets.token_urlsafe(32)
    now = db.utcnow()
    db.collection(REFRESH_TOKENS).insert_one({
        "_id": db.new_id(),
        "token_hash": _token_hash(token),
        "user_id": user["_id"],
        "ep": _epoch(user),
        "family_id": family_id,
        "created_at": now,
        "expires_at": now + timedelta(seconds=get_settings().refresh_token_ttl_seconds),
        "used_at": None,
        "revoked": False,
    })
    return token


def issue_token_pair(user: dict[str, Any], family_id: str | None = None) -> dict[str, Any]:
    """An access and a refresh token of the session `family_id` (None: a new session, as at login)."""
    family_id = family_id or db.new_id()
    access, expires_in = issue_access_token(user, family_id)
    return {
        "access_token": access,
        "refresh_token": issue_refresh_token(user, family_id),
        "token_type": "bearer",
        "expires_in": expires_in,
    }


_INVALID_REFRESH = "The refresh token is not valid; log in again."


def rotate_refresh_token(token: str) -> dict[str, Any]:
    """Spend a refresh token for a new pair in the same family. Reuse of a spent token revokes the family, unless
    it comes within the grace window of the first use: then it gets another new pair of the same family."""
    tokens = db.collection(REFRESH_TOKENS)
    now = db.utcnow()
    spent = tokens.find_one_and_update(
        {"token_hash": _token_hash(token), "used_at": None, "revoked": False, "expires_at": {"$gt": now}},
        {"$set": {"used_at": now}},
        return_document=ReturnDocument.AFTER,
    )
    if spent is None:
        spent = tokens.find_one({"token_hash": _token_hash(token)})
        if spent is None or spent["revoked"] or spent["expires_at"] <= now or spent.get("used_at") is None:
            raise errors.Unauthorized(_INVALID_REFRESH, code="INVALID_REFRESH_TOKEN")
        grace = timedelta(seconds=get_settings().refresh_reuse_grace_seconds)
        if now - spent["used_at"] > grace:
            revoke_family(spent["family_id"], spent["user_id"])
            audit.warning("user %s: a spent refresh token was presented again; its session is ended",
                          spent["user_id"])
            raise errors.Unauthorized(
                "This refresh token was already used; every session it belongs to is now signed out.",
                code="REFRESH_TOKEN_REUSED",
            )
        audit.info("user %s: a refresh token was presented again within %ss of its use; another pair of the "
                   "same session", spent["user_id"], grace.seconds)
    user = accounts.find_user(spent["user_id"], active=True)
    # A token from before the user's last password change (or from before tokens recorded `ep`, for a user
    # who has changed it since) belongs to a signed-out session.
    if user is None or spent.get("ep", 0) != _epoch(user):
        revoke_family(spent["family_id"], spent["user_id"])
        if user is not None:
            audit.warning("user %s: a refresh token from an earlier session epoch was refused; its family is "
                          "revoked", user["_id"])
        raise errors.Unauthorized(_INVALID_REFRESH, code="INVALID_REFRESH_TOKEN")
    pair = issue_token_pair(user, spent["family_id"])  # carries the epoch just read
    # A logout of this session that ran while we rotated may have revoked the family before our new token was
    # written: look again now that it is, and hand out nothing from an ended session.
    if tokens.count_documents({"family_id": spent["family_id"], "revoked": True}, limit=1):
        revoke_family(spent["family_id"], spent["user_id"])
        raise errors.Unauthorized(_INVALID_REFRESH, code="INVALID_REFRESH_TOKEN")
    return pair


def revoke_family(family_id: str, user_id: str) -> None:
    """End a session: its refresh tokens are revoked and its access tokens refused (see lib.accounts)."""
    db.collection(REFRESH_TOKENS).update_many({"family_id": family_id}, {"$set": {"revoked": True}})
    accounts.end_session(user_id, family_id, get_settings().access_token_ttl_seconds)


def revoke_by_token(token: str) -> None:
    """Log out: end the session of a (valid or spent) refresh token; an unknown token changes nothing."""
    known = db.collection(REFRESH_TOKENS).find_one({"token_hash": _token_hash(token)})
    if known is not None:
        revoke_family(known["family_id"], known["user_id"])


def revoke_all_for_user(user_id: str) -> None:
    db.collection(REFRESH_TOKENS).update_many({"user_id": user_id}, {"$set": {"revoked": True}})
