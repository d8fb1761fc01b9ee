"""Accounts and auth through the real functions (functions-framework test clients) against SecantusDB."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from lib import auth, db, throttle
from lib.config import Settings, get_settings


def _error(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


# --- signup ----------------------------------------------------------------------------------------------

def test_signup_creates_user_with_normalized_email_and_argon2id_hash(fn):
    r = fn("auth_signup").post("/", json={"email": "  Ada@Example.COM ", "password": "a long secret", "name": " Ada "})
    assert r.status_code == 201
    user = r.get_json()["user"]
    assert user["email"] == "ada@example.com" and user["name"] == "Ada"
    assert set(user) == {"id", "email", "name", "created_at"}  # never the hash
    stored = db.collection("users").find_one({"_id": user["id"]})
    assert stored["password_hash"].startswith("$argon2id$")
    assert "a long secret" not in json.dumps(stored, default=str)


def test_signup_duplicate_email_is_409_whatever_the_case(fn):
    body = {"email": "dup@example.com", "password": "a long secret", "name": "A"}
    assert fn("auth_signup").post("/", json=body).status_code == 201
    r = fn("auth_signup").post("/", json={**body, "email": "DUP@example.com"})
    assert r.status_code == 409 and _error(r)["code"] == "EMAIL_TAKEN"
    assert db.collection("users").count_documents({}) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "x@example.com", "password": "short", "name": "A"}, "password"),
        ({"email": "not-an-email", "password": "a long secret", "name": "A"}, "email"),
        ({"email": "x@example.com", "password": "a long secret"}, "name"),
        ({"email": "x@example.com", "password": 12345678, "name": "A"}, "password"),
        ({"email": "x@example.com", "password": "a long secret", "name": "   "}, "name"),
        ({"email": "x@example.com", "password": "a long secret", "name": "A", "admin": True}, "admin"),
    ],
)
def test_signup_invalid_fields_give_400_with_field_details(fn, body, field):
    r = fn("auth_signup").post("/", json=body)
    assert r.status_code == 400
    error = _error(r)
    assert error["code"] == "VALIDATION_ERROR"
    assert field in [d["field"] for d in error["details"]]
    assert db.collection("users").count_documents({}) == 0


def test_password_equal_to_email_is_refused(fn):
    r = fn("auth_signup").post("/", json={"email": "same@example.com", "password": "Same@Example.com", "name": "A"})
    assert r.status_code == 400 and _error(r)["details"][0]["field"] == "password"


def test_malformed_json_wrong_type_and_non_object_bodies(fn):
    client = fn("auth_signup")
    r = client.post("/", data="{not json", content_type="application/json")
    assert r.status_code == 400 and _error(r)["code"] == "INVALID_JSON"
    r = client.post("/", data="[1, 2]", content_type="application/json")
    assert r.status_code == 400 and _error(r)["code"] == "INVALID_JSON"
    r = client.post("/", data="email=a", content_type="text/plain")
    assert r.status_code == 415 and _error(r)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    r = client.post("/", data=b"\xff\xfe\x00", content_type="application/json")
    assert r.status_code == 400


def test_oversize_body_is_413(fn):
    big = {"email": "x@example.com", "password": "a long secret", "name": "x" * (get_settings().max_json_body_bytes)}
    r = fn("auth_signup").post("/", json=big)
    assert r.status_code == 413 and _error(r)["code"] == "PAYLOAD_TOO_LARGE"


def test_wrong_method_is_405_with_allow(fn):
    r = fn("auth_signup").get("/")
    assert r.status_code == 405
    assert _error(r)["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in r.headers["Allow"]


def test_cors_preflight_and_origin_checks(fn):
    client = fn("auth_login")
    r = client.options("/", headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    r = client.options("/", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = client.post("/", json={"email": "a@b.co", "password": "x"}, headers={"Origin": "http://localhost:5173"})
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"  # also on errors


# --- login -----------------------------------------------------------------------------------------------

def test_login_json_and_oauth2_form(fn, make_user):
    u = make_user(email="form@example.com")
    assert u["tokens"]["token_type"] == "bearer"
    assert u["tokens"]["expires_in"] == get_settings().access_token_ttl_seconds
    r = fn("auth_login").post("/", data={"username": "FORM@example.com", "password": u["password"]})
    assert r.status_code == 200
    claims = jwt.decode(r.get_json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == u["user"]["id"] and claims["typ"] == "access"
    assert {"exp", "iat", "jti"} <= set(claims)


def test_wrong_email_and_wrong_password_are_the_same_401(fn, make_user):
    u = make_user()
    wrong_password = fn("auth_login").post("/", json={"email": u["email"], "password": "not the password"})
    wrong_email = fn("auth_login").post("/", json={"email": "nobody@example.com", "password": "not the password"})
    assert wrong_password.status_code == wrong_email.status_code == 401
    assert _error(wrong_password) == _error(wrong_email)


def test_the_unknown_email_hash_is_precomputed_with_the_current_parameters(monkeypatch, settings_env):
    for name in ("argon2_time_cost", "argon2_memory_kib", "argon2_parallelism"):
        monkeypatch.delenv(name.upper(), raising=False)
    settings_env(jwt_secret="x" * 32)  # otherwise the configured defaults, as deployed
    assert auth.DUMMY_HASH.startswith("$argon2id$") and not auth.needs_rehash(auth.DUMMY_HASH)
    assert auth.dummy_hash() == auth.DUMMY_HASH  # nothing is hashed on the first unknown-email login
    settings_env(argon2_memory_kib=1024, argon2_time_cost=1)  # other parameters: a hash made with those
    assert not auth.needs_rehash(auth.dummy_hash()) and auth.dummy_hash() != auth.DUMMY_HASH


def test_repeated_failures_are_throttled_with_retry_after(fn, make_user):
    u = make_user()
    limit = get_settings().login_max_failures
    for _ in range(limit):
        assert fn("auth_login").post("/", json={"email": u["email"], "password": "wrong wrong"}).status_code == 401
    r = fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]})
    assert r.status_code == 429 and _error(r)["code"] == "LOGIN_THROTTLED"
    assert 0 < int(r.headers["Retry-After"]) <= get_settings().login_lockout_seconds
    # Other accounts are unaffected.
    other = make_user()
    assert fn("auth_login").post("/", json={"email": other["email"], "password": other["password"]}).status_code == 200


def test_success_resets_the_failure_count(fn, make_user):
    u = make_user()
    limit = get_settings().login_max_failures
    for _ in range(limit - 1):
        fn("auth_login").post("/", json={"email": u["email"], "password": "wrong wrong"})
    assert fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).status_code == 200
    for _ in range(limit - 1):
        fn("auth_login").post("/", json={"email": u["email"], "password": "wrong wrong"})
    assert fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).status_code == 200


def test_parallel_wrong_logins_cannot_outrun_the_throttle(fn, make_user, settings_env):
    # The production argon2 cost: each check takes long enough for every request to be in flight at once.
    settings_env(argon2_memory_kib=Settings.model_fields["argon2_memory_kib"].default,
                 argon2_time_cost=Settings.model_fields["argon2_time_cost"].default)
    u = make_user()
    limit, attempts = get_settings().login_max_failures, 20
    start = threading.Barrier(attempts)

    def wrong_login(i: int):
        client = fn("auth_login")
        start.wait()
        return client.post("/", json={"email": u["email"], "password": f"wrong guess {i}"})

    with ThreadPoolExecutor(attempts) as pool:
        answers = list(pool.map(wrong_login, range(attempts)))
    statuses = [r.status_code for r in answers]
    assert statuses.count(401) == limit and statuses.count(429) == attempts - limit, sorted(
        (r.status_code, (r.get_json() or {}).get("error", {}).get("code")) for r in answers)
    assert all(int(r.headers["Retry-After"]) > 0 for r in answers if r.status_code == 429)
    r = fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]})
    assert r.status_code == 429 and _error(r)["code"] == "LOGIN_THROTTLED"


def test_a_closed_throttle_window_not_yet_swept_counts_afresh(fn, make_user):
    u = make_user()
    for _ in range(get_settings().login_max_failures):
        fn("auth_login").post("/", json={"email": u["email"], "password": "wrong wrong"})
    assert fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).status_code == 429
    # The window closed, but the TTL index has not deleted its document yet.
    closed = datetime.now(UTC) - timedelta(seconds=1)
    db.collection(throttle.COLLECTION).update_many({}, {"$set": {"expires_at": closed}})
    assert fn("auth_login").post("/", json={"email": u["email"], "password": "wrong wrong"}).status_code == 401
    assert fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).status_code == 200


def test_login_rehashes_passwords_made_with_old_parameters(fn, make_user, settings_env):
    u = make_user()
    before = db.collection("users").find_one({"_id": u["user"]["id"]})["password_hash"]
    settings_env(argon2_time_cost=get_settings().argon2_time_cost + 1)
    assert fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).status_code == 200
    after = db.collection("users").find_one({"_id": u["user"]["id"]})["password_hash"]
    assert after != before and f"t={get_settings().argon2_time_cost}" in after


# --- access tokens ---------------------------------------------------------------------------------------

def _token(sub: str, **overrides) -> str:
    now = datetime.now(UTC)
    claims = {"sub": sub, "iat": now, "exp": now + timedelta(minutes=5), "jti": "j", "typ": "access",
              "iss": "zipkku", "ep": 0, **overrides}
    return jwt.encode(claims, get_settings().jwt_secret.get_secret_value(), algorithm="HS256")


def test_me_requires_a_valid_token(fn, make_user):
    u = make_user()
    me = fn("me")
    assert me.get("/", headers=u["headers"]).get_json()["user"]["email"] == u["email"]
    cases = {
        "missing": {},
        "not bearer": {"Authorization": "Basic abc"},
        "empty": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "expired": {"Authorization": "Bearer " + _token(u["user"]["id"], exp=datetime.now(UTC) - timedelta(seconds=5))},
        "wrong secret": {"Authorization": "Bearer " + jwt.encode(
            {"sub": u["user"]["id"], "typ": "access", "iat": int(time.time()), "exp": int(time.time()) + 60,
             "jti": "x", "iss": "zipkku"}, "another secret that is long enough!!", algorithm="HS256")},
        "refresh used as access": {"Authorization": "Bearer " + u["tokens"]["refresh_token"]},
        "wrong typ": {"Authorization": "Bearer " + _token(u["user"]["id"], typ="refresh")},
        "unknown user": {"Authorization": "Bearer " + _token("nobody")},
    }
    for name, headers in cases.items():
        r = me.get("/", headers=headers)
        assert r.status_code == 401, name
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), name
        _error(r)
    expired = me.get("/", headers=cases["expired"])
    assert _error(expired)["code"] == "TOKEN_EXPIRED"


def test_tampered_and_alg_none_tokens_are_refused(fn, make_user):
    u = make_user()
    header, payload, signature = u["tokens"]["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = make_user()["user"]["id"]  # try to become someone else
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert fn("me").get("/", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"}).status_code == 401
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    assert fn("me").get("/", headers={"Authorization": f"Bearer {none_header}.{payload}."}).status_code == 401


# --- refresh and logout ----------------------------------------------------------------------------------

def test_refresh_rotates_and_reuse_revokes_the_family(fn, make_user):
    u = make_user()
    first = u["tokens"]["refresh_token"]
    r = fn("auth_refresh").post("/", json={"refresh_token": first})
    assert r.status_code == 200
    second = r.get_json()["refresh_token"]
    assert second != first
    assert fn("me").get("/", headers={"Authorization": "Bearer " + r.get_json()["access_token"]}).status_code == 200
    # The first token leaked and is replayed after the grace window: refused, and the successor dies with it.
    db.collection("refresh_tokens").update_one(
        {"token_hash": hashlib.sha256(first.encode()).hexdigest()},
        {"$set": {"used_at": datetime.now(UTC) - timedelta(seconds=get_settings().refresh_reuse_grace_seconds + 1)}})
    replay = fn("auth_refresh").post("/", json={"refresh_token": first})
    assert replay.status_code == 401 and _error(replay)["code"] == "REFRESH_TOKEN_REUSED"
    assert fn("auth_refresh").post("/", json={"refresh_token": second}).status_code == 401
    # Other sessions (another family) of the same user survive.
    other = fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).get_json()
    assert fn("auth_refresh").post("/", json={"refresh_token": other["refresh_token"]}).status_code == 200


@pytest.mark.parametrize("race", ["login", "refresh"])
def test_a_refresh_token_issued_across_a_password_change_is_refused(fn, make_user, race):
    """A login or refresh that read the user before a password change writes its refresh token after the change
    revoked every other one: that token is not revoked, but its session epoch is stale."""
    u = make_user()
    before_change = db.collection("users").find_one({"_id": u["user"]["id"]})
    original = db.collection("refresh_tokens").find_one({"user_id": u["user"]["id"]})
    r = fn("me").patch("/", json={"new_password": "another long one", "current_password": u["password"]},
                       headers=u["headers"])
    assert r.status_code == 200
    fresh = r.get_json()["tokens"]
    # What the racing request does next, with the user document it read before the change.
    family = original["family_id"] if race == "refresh" else None
    raced = auth.issue_token_pair(before_change, family)["refresh_token"]
    raced_doc = db.collection("refresh_tokens").find_one({"token_hash": hashlib.sha256(raced.encode()).hexdigest()})
    assert raced_doc["revoked"] is False

    r = fn("auth_refresh").post("/", json={"refresh_token": raced})
    unknown = fn("auth_refresh").post("/", json={"refresh_token": "never issued"})
    assert r.status_code == 401 and _error(r) == _error(unknown)  # the same answer as an invalid token
    assert db.collection("refresh_tokens").count_documents({"family_id": raced_doc["family_id"], "revoked": False}) == 0
    # The session that made the change keeps working, and what it rotates into carries the current epoch.
    r = fn("auth_refresh").post("/", json={"refresh_token": fresh["refresh_token"]})
    assert r.status_code == 200
    epoch = db.collection("users").find_one({"_id": u["user"]["id"]})["session_epoch"]
    assert epoch == before_change["session_epoch"] + 1
    assert jwt.decode(r.get_json()["access_token"], options={"verify_signature": False})["ep"] == epoch
    rotated = hashlib.sha256(r.get_json()["refresh_token"].encode()).hexdigest()
    assert db.collection("refresh_tokens").find_one({"token_hash": rotated})["ep"] == epoch
    assert fn("auth_refresh").post("/", json={"refresh_token": r.get_json()["refresh_token"]}).status_code == 200


def test_refresh_tokens_are_stored_only_as_hashes(fn, make_user):
    u = make_user()
    stored = list(db.collection("refresh_tokens").find({"user_id": u["user"]["id"]}))
    assert stored and all(u["tokens"]["refresh_token"] not in json.dumps(t, default=str) for t in stored)


def test_refresh_bad_input(fn):
    client = fn("auth_refresh")
    assert client.post("/", json={"refresh_token": "unknown"}).status_code == 401
    assert client.post("/", json={}).status_code == 400
    assert client.post("/", json={"refresh_token": 5}).status_code == 400
    assert client.get("/").status_code == 405


def test_expired_refresh_token_is_refused(fn, make_user):
    u = make_user()
    db.collection("refresh_tokens").update_many(
        {"user_id": u["user"]["id"]}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    r = fn("auth_refresh").post("/", json={"refresh_token": u["tokens"]["refresh_token"]})
    assert r.status_code == 401 and _error(r)["code"] == "INVALID_REFRESH_TOKEN"


def test_logout_revokes_the_family(fn, make_user):
    u = make_user()
    assert fn("auth_logout").post("/", json={"refresh_token": u["tokens"]["refresh_token"]}).status_code == 204
    assert fn("auth_refresh").post("/", json={"refresh_token": u["tokens"]["refresh_token"]}).status_code == 401
    # Unknown tokens answer the same, revealing nothing.
    assert fn("auth_logout").post("/", json={"refresh_token": "unknown"}).status_code == 204
    assert fn("auth_logout").post("/", json={}).status_code == 400


# --- me: update and delete -------------------------------------------------------------------------------

def test_update_name_and_email(fn, make_user):
    u = make_user()
    r = fn("me").patch("/", json={"name": " New Name "}, headers=u["headers"])
    assert r.status_code == 200 and r.get_json()["user"]["name"] == "New Name"
    r = fn("me").patch("/", json={"name": "   "}, headers=u["headers"])
    assert r.status_code == 400 and _error(r)["details"][0]["field"] == "name"
    assert fn("me").get("/", headers=u["headers"]).get_json()["user"]["name"] == "New Name"
    r = fn("me").patch("/", json={"email": "new@example.com"}, headers=u["headers"])
    assert r.status_code == 403 and _error(r)["code"] == "CURRENT_PASSWORD_REQUIRED"
    r = fn("me").patch("/", json={"email": "New@Example.com", "current_password": u["password"]}, headers=u["headers"])
    assert r.status_code == 200 and r.get_json()["user"]["email"] == "new@example.com"
    taken = make_user()
    r = fn("me").patch("/", json={"email": taken["email"], "current_password": u["password"]}, headers=u["headers"])
    assert r.status_code == 409 and _error(r)["code"] == "EMAIL_TAKEN"
    assert fn("me").patch("/", json={}, headers=u["headers"]).status_code == 400
    assert fn("me").patch("/", json={"role": "admin"}, headers=u["headers"]).status_code == 400


def test_password_change_signs_out_other_sessions(fn, make_user):
    u = make_user()
    wrong = fn("me").patch("/", json={"new_password": "another long one", "current_password": "nope nope"},
                           headers=u["headers"])
    assert wrong.status_code == 403
    r = fn("me").patch("/", json={"new_password": "another long one", "current_password": u["password"]},
                       headers=u["headers"])
    assert r.status_code == 200
    fresh = r.get_json()["tokens"]
    assert fn("me").get("/", headers=u["headers"]).status_code == 401  # the old access token
    assert fn("auth_refresh").post("/", json={"refresh_token": u["tokens"]["refresh_token"]}).status_code == 401
    assert fn("me").get("/", headers={"Authorization": "Bearer " + fresh["access_token"]}).status_code == 200
    assert fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).status_code == 401
    assert fn("auth_login").post("/", json={"email": u["email"], "password": "another long one"}).status_code == 200


def test_delete_deactivates_the_account(fn, make_user):
    u = make_user()
    assert fn("me").delete("/", json={"current_password": u["password"]}, headers=u["headers"]).status_code == 204
    assert fn("me").get("/", headers=u["headers"]).status_code == 401
    assert fn("auth_refresh").post("/", json={"refresh_token": u["tokens"]["refresh_token"]}).status_code == 401
    r = fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]})
    assert r.status_code == 401
    stored = db.collection("users").find_one({"_id": u["user"]["id"]})
    assert stored["active"] is False and stored["deactivated_at"] is not None


def test_delete_needs_the_current_password(fn, make_user):
    u = make_user()
    me = fn("me")
    for missing in (me.delete("/", headers=u["headers"]), me.delete("/", json={}, headers=u["headers"])):
        assert missing.status_code == 400 and _error(missing)["code"] == "VALIDATION_ERROR"
        assert [d["field"] for d in _error(missing)["details"]] == ["current_password"]
    wrong = me.delete("/", json={"current_password": "not my password"}, headers=u["headers"])
    assert wrong.status_code == 403 and _error(wrong)["code"] == "CURRENT_PASSWORD_REQUIRED"  # as PATCH answers
    assert me.get("/", headers=u["headers"]).status_code == 200  # nothing was deleted
    extra = me.delete("/", json={"current_password": u["password"], "force": True}, headers=u["headers"])
    assert extra.status_code == 400
    assert me.delete("/", json={"current_password": u["password"]}, headers=u["headers"]).status_code == 204


def test_wrong_current_passwords_are_throttled_per_user(fn, make_user):
    """A stolen access token must not allow unlimited guessing of the password through /me."""
    u, other = make_user(), make_user()
    limit = get_settings().login_max_failures
    for i in range(limit):
        r = fn("me").patch("/", json={"email": f"new{i}@example.com", "current_password": f"guess {i}"},
                           headers=u["headers"])
        assert r.status_code == 403
    # Over the limit even the right password is refused, for PATCH and DELETE alike, until the window closes.
    for r in (fn("me").patch("/", json={"new_password": "another long one", "current_password": u["password"]},
                             headers=u["headers"]),
              fn("me").delete("/", json={"current_password": u["password"]}, headers=u["headers"])):
        assert r.status_code == 429 and _error(r)["code"] == "PASSWORD_THROTTLED"
        assert 0 < int(r.headers["Retry-After"]) <= get_settings().login_lockout_seconds
    assert fn("me").get("/", headers=u["headers"]).status_code == 200
    # Only this user's current_password checks: another user, a name change and logging in are unaffected.
    r = fn("me").delete("/", json={"current_password": other["password"]}, headers=other["headers"])
    assert r.status_code == 204
    assert fn("me").patch("/", json={"name": "Still Me"}, headers=u["headers"]).status_code == 200
    assert fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).status_code == 200


def test_a_right_current_password_resets_the_count(fn, make_user):
    u = make_user()
    for _ in range(2):
        for _ in range(get_settings().login_max_failures - 1):
            r = fn("me").patch("/", json={"email": "x@example.com", "current_password": "guess"}, headers=u["headers"])
            assert r.status_code == 403
        r = fn("me").patch("/", json={"email": u["email"], "current_password": u["password"]}, headers=u["headers"])
        assert r.status_code == 200


def test_account_deletion_interrupted_by_a_storage_outage_can_be_retried(fn, make_user, monkeypatch):
    from google.api_core.exceptions import ServiceUnavailable

    from lib import notifications, storage
    from tests.generation_helpers import ready_upload

    u = make_user()
    user_id, images = u["user"]["id"], get_settings().images_bucket
    ready_upload(user_id)
    interior_id = db.new_id()
    storage.upload_bytes(images, f"interiors/{user_id}/{interior_id}/design.jpg", b"design", "image/jpeg")
    db.collection("interiors").insert_one({"_id": interior_id, "user_id": user_id, "status": "done",
                                           "created_at": db.utcnow()})
    finished = {"interior_id": interior_id, "user_id": user_id, "status": "done"}
    assert notifications.record_interior_finished("msg-1", finished) == "recorded"

    def left() -> dict[str, int]:
        return {**{name: db.collection(name).count_documents({"user_id": user_id})
                   for name in ("uploads", "interiors", "notifications")},
                "objects": sum(1 for folder in ("uploads", "interiors")
                               for _ in storage.client().list_blobs(images, prefix=f"{folder}/{user_id}/"))}

    assert all(left().values())
    # Storage answers the first deletion, then goes down for the rest of the first attempt.
    working, calls = storage.delete_prefix, []

    def outage(bucket: str, prefix: str) -> int:
        calls.append(prefix)
        if len(calls) > 1:
            raise ServiceUnavailable("storage is down")
        return working(bucket, prefix)

    monkeypatch.setattr(storage, "delete_prefix", outage)
    r = fn("me").delete("/", json={"current_password": u["password"]}, headers=u["headers"])
    assert r.status_code == 503 and _error(r)["code"] == "DEPENDENCY_UNAVAILABLE"
    assert len(calls) == 2
    # Nothing was deactivated: the person still has their account and can try again.
    assert fn("me").get("/", headers=u["headers"]).status_code == 200
    monkeypatch.setattr(storage, "delete_prefix", working)

    assert fn("me").delete("/", json={"current_password": u["password"]}, headers=u["headers"]).status_code == 204
    assert left() == {"uploads": 0, "interiors": 0, "notifications": 0, "objects": 0}
    assert fn("me").get("/", headers=u["headers"]).status_code == 401
    assert fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).status_code == 401
    # The record keeps the email reserved and the account refused, and nothing personal beyond that.
    stored = db.collection("users").find_one({"_id": user_id})
    assert stored["active"] is False and stored["email"] == u["email"]
    assert not {"name", "password_hash", "known_addresses"} & set(stored)
    again = fn("auth_signup").post("/", json={"email": u["email"], "password": "a long secret", "name": "A"})
    assert again.status_code == 409


def test_one_user_cannot_act_as_another(fn, make_user):
    alice, bob = make_user(), make_user()
    r = fn("me").get("/", headers=bob["headers"])
    assert r.get_json()["user"]["id"] == bob["user"]["id"] != alice["user"]["id"]
    fn("me").patch("/", json={"name": "Bob Renamed"}, headers=bob["headers"])
    assert fn("me").get("/", headers=alice["headers"]).get_json()["user"]["name"] == "Test User"


def test_database_outage_is_503_not_500(fn, make_user, settings_env):
    u = make_user()
    settings_env(mongodb_uri="mongodb://127.0.0.1:1/?retryWrites=false&directConnection=true",
                 mongodb_timeout_ms=200)
    r = fn("me").get("/", headers=u["headers"])
    assert r.status_code == 503 and _error(r)["code"] == "DEPENDENCY_UNAVAILABLE"
    assert "Retry-After" in r.headers


def test_signed_in_answers_are_never_cached_by_shared_caches(fn, make_user):
    u = make_user()
    for name, call in (("me", lambda c: c.get("/", headers=u["headers"])),
                       ("interiors_list", lambda c: c.get("/", headers=u["headers"])),
                       ("interiors_save", lambda c: c.post("/", json={"interior_id": "nope", "saved": True},
                                                           headers=u["headers"]))):
        response = call(fn(name))
        assert "no-store" in response.headers.get("Cache-Control", ""), name


def test_what_a_request_in_flight_creates_during_account_deletion_is_deleted_too(fn, make_user, monkeypatch):
    """A request of the same account that passed its token check before the deactivation can still write; the
    deletion sweeps once more after the tokens stop working."""
    from lib import interiors, uploads

    u = make_user()
    user_id = u["user"]["id"]
    sweep, in_flight = interiors.delete_all_for_user, []

    def sweep_while_a_request_writes(owner: str) -> None:
        sweep(owner)
        if not in_flight:  # the first sweep has passed the uploads when this request lands
            in_flight.append(uploads.create_pending(user_id, uploads.CreateBody(content_type="image/jpeg",
                                                                                size_bytes=1000)))

    monkeypatch.setattr(interiors, "delete_all_for_user", sweep_while_a_request_writes)
    assert fn("me").delete("/", json={"current_password": u["password"]}, headers=u["headers"]).status_code == 204
    assert in_flight and db.collection("uploads").count_documents({"user_id": user_id}) == 0


def test_functions_that_do_not_handle_tokens_run_without_the_jwt_key(fn, settings_env, monkeypatch):
    """terraform gives the key only to token-handling functions: the others must not need it."""
    monkeypatch.delenv("JWT_SECRET", raising=False)
    settings_env()
    assert fn("styles_list").get("/").status_code == 200
    signup = fn("auth_signup").post("/", json={"email": "nokey@example.com", "password": "a long secret", "name": "N"})
    assert signup.status_code == 201


# --- sessions that survive two tabs; logout ends the session's access tokens --------------------------------

def _refresh(fn, token: str):
    return fn("auth_refresh").post("/", json={"refresh_token": token})


def test_two_tabs_refreshing_the_same_token_at_once_both_stay_signed_in(fn, make_user):
    u = make_user()
    first, tabs = u["tokens"]["refresh_token"], 2
    start = threading.Barrier(tabs)

    def refresh(_: int):
        client = fn("auth_refresh")
        start.wait()
        return client.post("/", json={"refresh_token": first})

    with ThreadPoolExecutor(tabs) as pool:
        answers = list(pool.map(refresh, range(tabs)))
    assert [r.status_code for r in answers] == [200, 200], [r.get_json() for r in answers]
    pairs = [r.get_json() for r in answers]
    for pair in pairs:  # both tabs' tokens keep working: access now, refresh on their next rotation
        assert fn("me").get("/", headers={"Authorization": "Bearer " + pair["access_token"]}).status_code == 200
        assert _refresh(fn, pair["refresh_token"]).status_code == 200


def test_reuse_within_the_grace_window_answers_with_a_pair_of_the_same_session(fn, make_user, settings_env):
    settings_env(refresh_reuse_grace_seconds=30)
    u = make_user()
    first = u["tokens"]["refresh_token"]
    winner = _refresh(fn, first).get_json()
    again = _refresh(fn, first)  # a retry after a lost answer, a second tab a moment later
    assert again.status_code == 200
    sid = jwt.decode(again.get_json()["access_token"], options={"verify_signature": False})["sid"]
    assert sid == jwt.decode(winner["access_token"], options={"verify_signature": False})["sid"]
    assert _refresh(fn, winner["refresh_token"]).status_code == 200
    assert _refresh(fn, again.get_json()["refresh_token"]).status_code == 200
    # Outside the window, reuse is a leak again: the whole session ends.
    db.collection("refresh_tokens").update_many(
        {"token_hash": hashlib.sha256(first.encode()).hexdigest()},
        {"$set": {"used_at": datetime.now(UTC) - timedelta(seconds=31)}})
    late = _refresh(fn, first)
    assert late.status_code == 401 and _error(late)["code"] == "REFRESH_TOKEN_REUSED"
    assert fn("me").get("/", headers={"Authorization": "Bearer " + winner["access_token"]}).status_code == 401


def test_a_zero_grace_window_revokes_on_any_reuse(fn, make_user, settings_env):
    settings_env(refresh_reuse_grace_seconds=0)
    u = make_user()
    assert _refresh(fn, u["tokens"]["refresh_token"]).status_code == 200
    time.sleep(0.01)
    reuse = _refresh(fn, u["tokens"]["refresh_token"])
    assert reuse.status_code == 401 and _error(reuse)["code"] == "REFRESH_TOKEN_REUSED"


def test_logout_ends_the_sessions_access_tokens_too(fn, make_user):
    u = make_user()
    other = fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).get_json()
    rotated = _refresh(fn, u["tokens"]["refresh_token"]).get_json()
    assert fn("auth_logout").post("/", json={"refresh_token": rotated["refresh_token"]}).status_code == 204
    for access in (u["tokens"]["access_token"], rotated["access_token"]):  # every access token of that session
        r = fn("me").get("/", headers={"Authorization": "Bearer " + access})
        assert r.status_code == 401 and _error(r)["code"] == "INVALID_TOKEN"
    # Another session (another login, another tab group) of the same person is not signed out.
    assert fn("me").get("/", headers={"Authorization": "Bearer " + other["access_token"]}).status_code == 200
    assert _refresh(fn, other["refresh_token"]).status_code == 200
    # And within the grace window a logged-out token gets nothing.
    assert _refresh(fn, rotated["refresh_token"]).status_code == 401
    assert _refresh(fn, u["tokens"]["refresh_token"]).status_code == 401


def test_a_refresh_that_races_a_logout_hands_out_nothing_that_works(fn, make_user, monkeypatch):
    """The logout lands after the refresh read its token but before its new one is written."""
    u = make_user()
    issue = auth.issue_token_pair

    def logout_meanwhile(user, family_id=None):
        fn("auth_logout").post("/", json={"refresh_token": u["tokens"]["refresh_token"]})
        return issue(user, family_id)

    monkeypatch.setattr(auth, "issue_token_pair", logout_meanwhile)
    r = _refresh(fn, u["tokens"]["refresh_token"])
    monkeypatch.setattr(auth, "issue_token_pair", issue)
    assert r.status_code == 401
    assert db.collection("refresh_tokens").count_documents({"user_id": u["user"]["id"], "revoked": False}) == 0


def test_the_session_check_is_folded_into_the_user_read(fn, make_user):
    """An authenticated request reads the user once: logging out costs other requests no extra read."""
    u = make_user()
    for _ in range(3):  # many logouts in a row keep the user document small
        pair = fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).get_json()
        fn("auth_logout").post("/", json={"refresh_token": pair["refresh_token"]})
    stored = db.collection("users").find_one({"_id": u["user"]["id"]})
    assert len(stored["ended_sessions"]) == 3
    assert all(e["until"] <= datetime.now(UTC) + timedelta(seconds=get_settings().access_token_ttl_seconds)
               for e in stored["ended_sessions"])
