"""User accounts (the `users` collection): sign-up, login, profile changes and account deletion. Tokens and
hashing live in lib.auth."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.networks import validate_email
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from lib import auth, db, errors, throttle
from lib.answers import Answer, Timestamp

USERS = db.declare("users", [IndexModel([("email", ASCENDING)], unique=True, name="email_unique")])
PASSWORD_MIN, PASSWORD_MAX = 8, 256
KNOWN_ADDRESSES = 10  # addresses (hashed) an account remembers having signed in from, newest first
# A display name: surrounding blanks dropped, then 1-100 characters (so an all-blank name is refused).
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def _valid_email(value: str) -> str:
    """pydantic's own EmailStr check, called on first use: email-validator (and the stdlib email package it
    loads) cost every function that imports this module ~30 ms at start, while only sign-up and an email
    change validate an address."""
    return validate_email(value)[1]


# What EmailStr is (same errors, same normalisation, `format: email` in the OpenAPI document), checked lazily.
Email = Annotated[str, AfterValidator(_valid_email), Field(json_schema_extra={"format": "email"})]

# Security events, by user id (never email, password or token): what an operator needs to follow an account.
audit = logging.getLogger("zipkku.audit")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _check_password(password: str, email: str) -> None:
    if password.strip().lower() == normalize_email(email):
        raise errors.ValidationFailed(
            "The password must not be your email address.",
            details=[{"field": "password", "message": "must differ from the email", "type": "password_policy"}],
        )


class SignupBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    email: Email = Field(max_length=254)
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    name: Name


class LoginBody(BaseModel):
    """JSON {email, password} or the OAuth2 password form {username, password}."""
    model_config = ConfigDict(extra="ignore")
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)

    @model_validator(mode="before")
    @classmethod
    def _username_is_email(cls, data: Any) -> Any:
        if isinstance(data, dict) and "email" not in data and "username" in data:
            data = {**data, "email": data["username"]}
        return data


class LoginForm(BaseModel):
    """The OAuth2 password form (application/x-www-form-urlencoded): what an OAuth2 client library sends."""
    model_config = ConfigDict(extra="ignore")
    username: str = Field(min_length=1, max_length=254, description="The account's email")
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class ProfileUpdate(BaseModel):
    """Send at least one of name, email, new_password; changing email or password needs current_password."""
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    email: Email | None = Field(default=None, max_length=254)
    new_password: str | None = Field(default=None, min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    current_password: str | None = Field(default=None, max_length=PASSWORD_MAX)

    @model_validator(mode="after")
    def _something_to_change(self) -> ProfileUpdate:
        if self.name is None and self.email is None and self.new_password is None:
            raise ValueError("send at least one of name, email, new_password")
        return self


class DeleteAccountBody(BaseModel):
    """DELETE /me: deleting the account needs the password, not just an access token."""
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class User(Answer):
    id: str
    email: str
    name: str
    created_at: Timestamp


class UserAnswer(Answer):
    user: User


# What signing in (login, refresh, a password change) answers. Declared here, not in lib.auth, because lib.auth
# reads users through this module: a class attribute naming lib.auth would make the two modules' import order matter.
class TokenPair(Answer):
    access_token: str = Field(description="Send as 'Authorization: Bearer <access_token>'")
    refresh_token: str = Field(description="Single use: exchange it at /auth-refresh for a new pair")
    token_type: Literal["bearer"]
    expires_in: int = Field(description="Seconds until the access token expires")


class ProfileAnswer(Answer):
    user: User
    tokens: TokenPair | None = Field(default=None, description=(
        "Only after a password change: a fresh pair for this session (every other session is signed out)"))


def public_user(user: dict[str, Any]) -> User:
    return User(id=user["_id"], email=user["email"], name=user["name"], created_at=user["created_at"])


def find_user(user_id: str, *, active: bool = False) -> dict[str, Any] | None:
    """The user with this id (only while the account is active, with `active`); None when there is none."""
    query: dict[str, Any] = {"_id": user_id}
    if active:
        query["active"] = True
    return db.collection(USERS).find_one(query)


def _address_tag(address: str) -> str:
    """What the account keeps of an address it signed in from: a hash of its throttle unit (not the address)."""
    return hashlib.sha256(throttle.address_key(address).encode()).hexdigest()[:24]


def known_address(user: dict[str, Any] | None, address: str) -> bool:
    """Did this account sign up or log in from `address` (its IPv6 /64) recently?"""
    return user is not None and _address_tag(address) in user.get("known_addresses", [])


def _remember_address(user: dict[str, Any], address: str) -> None:
    tag = _address_tag(address)
    known = [tag, *(t for t in user.get("known_addresses", []) if t != tag)][:KNOWN_ADDRESSES]
    if known != user.get("known_addresses"):
        db.collection(USERS).update_one({"_id": user["_id"]}, {"$set": {"known_addresses": known}})


# --- sessions: what the access-token check refuses -------------------------------------------------------------

ENDED_SESSIONS = 100  # the newest ended sessions a user document keeps (each only matters for minutes)


def end_session(user_id: str, session_id: str, access_token_ttl_seconds: int) -> None:
    """Refuse the access tokens of session `session_id` from now on. They live at most the access token TTL,
    so the entry is needed that long only, and the list keeps the newest ENDED_SESSIONS."""
    until = db.utcnow() + timedelta(seconds=access_token_ttl_seconds)
    db.collection(USERS).update_one(
        {"_id": user_id},
        {"$push": {"ended_sessions": {"$each": [{"sid": session_id, "until": until}], "$slice": -ENDED_SESSIONS}}},
    )


def session_ended(user: dict[str, Any], session_id: str | None) -> bool:
    """Was the session an access token names ended (by logout or a leaked refresh token) while it can live?"""
    if session_id is None:
        return False
    now = db.utcnow()
    return any(e["sid"] == session_id and e["until"] > now for e in user.get("ended_sessions", ()))


def signup(body: SignupBody, address: str) -> dict[str, Any]:
    """A new account; sign-ups are counted per client address before the password is hashed (429)."""
    email = normalize_email(body.email)
    _check_password(body.password, email)
    throttle.reserve_signup(address)
    now = db.utcnow()
    user = {
        "_id": db.new_id(), "email": email, "name": body.name, "password_hash": auth.hash_password(body.password),
        "active": True, "session_epoch": 0, "created_at": now, "updated_at": now,
        "known_addresses": [_address_tag(address)],
    }
    try:
        db.collection(USERS).insert_one(user)
    except DuplicateKeyError:
        raise errors.Conflict("An account with this email already exists.", code="EMAIL_TAKEN") from None
    audit.info("user %s signed up", user["_id"])
    return user


_BAD_LOGIN = "The email or password is incorrect."


def login(body: LoginBody, address: str) -> dict[str, Any]:
    """A token pair for the right email and password; one answer for every wrong combination. The attempt is
    counted (per address, per email from this address, per email from everywhere: lib.throttle) before the
    password is checked, so parallel guesses cannot outrun the throttle. When the email's failures from
    everywhere reached the limit, only an address the account knows may still try: guessing stays as slow as
    one address's, and the owner is not locked out by it. Unknown emails are counted and refused alike."""
    email = normalize_email(body.email)
    throttle.reserve_login_attempt(email, address)
    users = db.collection(USERS)
    user = users.find_one({"email": email, "active": True})
    account_wait = throttle.reserve_account_login(email)
    if account_wait is not None and not known_address(user, address):
        throttle.refuse_login(account_wait)
    if user is None:
        auth.burn_password_check(body.password)
        raise errors.Unauthorized(_BAD_LOGIN, code="INVALID_CREDENTIALS", headers={})
    if not auth.verify_password(user["password_hash"], body.password):
        audit.warning("user %s: login with a wrong password", user["_id"])
        raise errors.Unauthorized(_BAD_LOGIN, code="INVALID_CREDENTIALS", headers={})
    throttle.clear_login_attempts(email, address)
    _remember_address(user, address)
    audit.info("user %s logged in", user["_id"])
    if auth.needs_rehash(user["password_hash"]):
        users.update_one({"_id": user["_id"]}, {"$set": {"password_hash": auth.hash_password(body.password)}})
    return auth.issue_token_pair(user)


def require_current_password(user: dict[str, Any], password: str | None, action: str) -> None:
    """403 CURRENT_PASSWORD_REQUIRED unless `password` is the user's. Each check is counted before it is made
    and wrong ones are throttled per user (429 PASSWORD_THROTTLED), as logins are per email."""
    if password is not None:
        throttle.reserve_password_check(user["_id"])
        if auth.verify_password(user["password_hash"], password):
            throttle.clear_password_checks(user["_id"])
            return
        audit.warning("user %s: wrong current_password", user["_id"])
    raise errors.Forbidden(f"{action} needs the correct current_password.", code="CURRENT_PASSWORD_REQUIRED")


def update_profile(user: dict[str, Any], body: ProfileUpdate) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Apply a profile change. Email and password changes need the current password; a password change
    signs out every other session and returns a fresh token pair for this one."""
    changes: dict[str, Any] = {}
    if body.email is not None or body.new_password is not None:
        require_current_password(user, body.current_password, "Changing the email or password")
    if body.name is not None:
        changes["name"] = body.name
    if body.email is not None:
        changes["email"] = normalize_email(body.email)
    if body.new_password is not None:
        _check_password(body.new_password, changes.get("email", user["email"]))
        changes["password_hash"] = auth.hash_password(body.new_password)
    changes["updated_at"] = db.utcnow()
    update: dict[str, Any] = {"$set": changes}
    if body.new_password is not None:
        update["$inc"] = {"session_epoch": 1}
    try:
        updated = db.collection(USERS).find_one_and_update(
            {"_id": user["_id"], "active": True}, update, return_document=True
        )
    except DuplicateKeyError:
        raise errors.Conflict("An account with this email already exists.", code="EMAIL_TAKEN") from None
    if updated is None:
        raise errors.Unauthorized("The account no longer exists.", code="INVALID_TOKEN")
    tokens = None
    if body.new_password is not None:
        auth.revoke_all_for_user(user["_id"])
        tokens = auth.issue_token_pair(updated)
    changed = sorted(k.removesuffix("_hash") for k in changes if k != "updated_at")
    audit.info("user %s changed %s", user["_id"], ", ".join(changed))
    return updated, tokens


def deactivate(user: dict[str, Any]) -> None:
    """The account's end (lib.me deletes its data around this): every token stops working and login is refused
    from now on. The record stays, so the email stays reserved, but keeps only what that and refusing the
    account need: its name, password hash, known addresses and ended sessions are removed."""
    now = db.utcnow()
    db.collection(USERS).update_one(
        {"_id": user["_id"]},
        {"$set": {"active": False, "deactivated_at": now, "updated_at": now},
         "$unset": {"name": "", "password_hash": "", "known_addresses": "", "ended_sessions": ""},
         "$inc": {"session_epoch": 1}},
    )
    auth.revoke_all_for_user(user["_id"])
