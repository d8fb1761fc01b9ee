"""Logs are structured JSON for Cloud Logging and never hold passwords, tokens or signed URLs."""

from __future__ import annotations

import io
import json
import logging

import pytest

from lib import log


@pytest.fixture
def captured():
    """Every record any logger emits during the test, as the JSON lines production writes."""
    stream = io.StringIO()
    handler = log.structured_handler("zipkku-test", stream)
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


@pytest.mark.parametrize(("text", "secret"), [
    ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl in a message", "eyJhbGciOiJIUzI1NiJ9"),
    ("GET https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p"
     "&X-Goog-Signature=0123456789abcdef&X-Goog-Expires=900", "0123456789abcdef"),
    ('{"email": "a@b.co", "password": "hunter2hunter2"}', "hunter2hunter2"),
    ("refresh_token=Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4"),
])
def test_redact_scrubs_credentials(text, secret):
    assert secret not in log.redact(text)


def test_records_are_json_with_severity_and_redacted_arguments(captured):
    logging.getLogger("zipkku.test").warning("signed %s for %s", "https://x/o?X-Goog-Signature=deadbeef", "me")
    entry = json.loads(captured.getvalue().splitlines()[-1])
    assert entry["severity"] == "WARNING"
    assert "deadbeef" not in entry["message"] and "for me" in entry["message"]


def test_a_user_journey_leaves_no_credential_in_the_logs(fn, make_user, captured):
    u = make_user(password="a password to hide")
    fn("auth_login").post("/", json={"email": u["email"], "password": "a wrong password here"})
    fn("auth_refresh").post("/", json={"refresh_token": u["tokens"]["refresh_token"]})
    created = fn("uploads_create").post("/", json={"content_type": "image/jpeg", "size_bytes": 1000},
                                        headers=u["headers"]).get_json()
    fn("me").get("/", headers={"Authorization": "Bearer " + u["tokens"]["access_token"] + "x"})  # a bad token
    fn("auth_refresh").post("/", json={"refresh_token": u["tokens"]["refresh_token"]})  # replayed: reuse
    fn("me").patch("/", json={"new_password": "another secret!", "current_password": u["password"]},
                   headers=u["headers"])
    logs = captured.getvalue()
    messages = [json.loads(line)["message"] for line in logs.splitlines()]
    user_id = u["user"]["id"]
    assert f"user {user_id} logged in" in messages
    assert f"user {user_id}: login with a wrong password" in messages
    assert any(m.startswith(f"user {user_id}: a spent refresh token was presented again") for m in messages)
    assert f"user {user_id} changed password" in messages
    assert u["email"] not in logs
    signature = created["put_url"].split("X-Goog-Signature=")[1].split("&")[0]
    for secret in (u["password"], "a wrong password here", "another secret!", u["tokens"]["access_token"],
                   u["tokens"]["refresh_token"], signature):
        assert secret not in logs


def test_request_logs_carry_the_trace_for_correlation(fn, make_user, captured):
    u = make_user()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]},
                          headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    entry = [json.loads(line) for line in captured.getvalue().splitlines() if "logged in" in line][-1]
    assert entry["logging.googleapis.com/trace"] == f"projects/zipkku-test/traces/{trace_id}"
    assert entry["severity"] == "INFO"
