"""Logs are structured JSON for Cloud Logging and never hold passwords, tokens or signed URLs."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest

from lib import discovery, log
from lib.config import get_settings
from scripts.localstack import ROOT


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


@pytest.mark.parametrize(("text", "secrets", "kept"), [
    ('{"email": "a@b.co", "password": "correct horse battery"}', ["correct", "horse", "battery"],
     '{"email": "a@b.co", "password": "[REDACTED]"}'),
    ("body {'new_password': 'it\\'s a long one', 'name': 'Ann'}", ["it\\'s", "long one"],
     "body {'new_password': '[REDACTED]', 'name': 'Ann'}"),
    ('{"current_password":"old pass phrase","refresh_token":"r3fresh","access_token": "acc355"}',
     ["old pass", "phrase", "r3fresh", "acc355"],
     '{"current_password":"[REDACTED]","refresh_token":"[REDACTED]","access_token": "[REDACTED]"}'),
    ("form password=hunter2hunter2&api_key=k3yk3y&client_secret=s3cr3t; X-Api-Key: xk3y then more",
     ["hunter2hunter2", "k3yk3y", "s3cr3t", "xk3y"],
     "form password=[REDACTED]&api_key=[REDACTED]&client_secret=[REDACTED]; X-Api-Key: [REDACTED] then more"),
    ("connecting to mongodb+srv://admin:hunter2@cluster0.example.net/zipkku?retryWrites=true now",
     ["admin", "hunter2"], "connecting to mongodb+srv://[REDACTED]@cluster0.example.net/zipkku?retryWrites=true now"),
    ("redis://:p@ss@localhost:6379/0 and https://example.com/a?b=c@d", ["p@ss"],
     "redis://[REDACTED]@localhost:6379/0 and https://example.com/a?b=c@d"),
    ("Authorization: Basic dXNlcjpwYXNz sent", ["dXNlcjpwYXNz"], "Authorization: Basic [REDACTED] sent"),
    ("GET https://s3.example.com/o?X-Amz-Credential=AKIA1%2F&X-Amz-Security-Token=FwoG&X-Amz-Signature=abc123 ok",
     ["AKIA1", "FwoG", "abc123"],
     "GET https://s3.example.com/o?X-Amz-Credential=[REDACTED]&X-Amz-Security-Token=[REDACTED]"
     "&X-Amz-Signature=[REDACTED] ok"),
    ("https://storage.googleapis.com/b/o?GoogleAccessId=sa@p.iam&Expires=9&Signature=c2lnbmF0dXJl done",
     ["c2lnbmF0dXJl"],
     "https://storage.googleapis.com/b/o?GoogleAccessId=sa@p.iam&Expires=9&Signature=[REDACTED] done"),
    ("token_type=access tokens=3 secret_name=jwt", [], "token_type=access tokens=3 secret_name=jwt"),
])
def test_redact_removes_whole_values_and_keeps_the_rest(text, secrets, kept):
    cleaned = log.redact(text)
    assert cleaned == kept
    for secret in secrets:
        assert secret not in cleaned


def test_redact_stays_linear_on_long_lines():
    import time

    started = time.monotonic()
    for text in ("a-" * 100_000, "a://" * 50_000, 'password: "' * 20_000, "x" * 200_000):
        log.redact(text)
    assert time.monotonic() - started < 5


def test_records_are_json_with_severity_and_redacted_arguments(captured):
    logging.getLogger("zipkku.test").warning("signed %s for %s", "https://x/o?X-Goog-Signature=deadbeef", "me")
    entry = json.loads(captured.getvalue().splitlines()[-1])
    assert entry["severity"] == "WARNING"
    assert "deadbeef" not in entry["message"] and "for me" in entry["message"]


def test_tracebacks_are_redacted_and_still_written(captured):
    try:
        raise ConnectionError("mongodb://admin:hunter2hunter2@db.example.net/zipkku refused; "
                              'payload {"password": "correct horse battery"}')
    except ConnectionError:
        logging.getLogger("zipkku.test").exception("could not save for %s", "me")
    message = json.loads(captured.getvalue().splitlines()[-1])["message"]
    assert message.startswith("could not save for me\nTraceback (most recent call last):")
    assert "ConnectionError: mongodb://[REDACTED]@db.example.net/zipkku refused" in message
    assert '"password": "[REDACTED]"' in message
    for secret in ("hunter2hunter2", "admin", "correct horse battery", "horse"):
        assert secret not in message


def test_stack_info_and_json_fields_are_redacted():
    stream = io.StringIO()
    handler = log.structured_handler("zipkku-test", stream)
    record = logging.LogRecord("zipkku.test", logging.WARNING, __file__, 1, "slow call", None, None)
    record.stack_info = "Stack (most recent call last):\n  File \"x.py\", line 3, in f\n    get('Bearer s3cr3t-t0ken')"
    record.json_fields = {"url": "https://x/o?X-Goog-Signature=deadbeef", "ms": 12}
    handler.handle(record)
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert "s3cr3t-t0ken" not in entry["message"] and "deadbeef" not in entry["url"]
    assert entry["message"].startswith("slow call\nStack (most recent call last):")
    assert "get('Bearer [REDACTED]')" in entry["message"] and entry["ms"] == 12


def test_the_import_job_logs_its_failure_structured_and_redacted(stack, tmp_path):
    source = f"{tmp_path}/password=hunter2hunter2/catalog.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MONGODB_DB": get_settings().mongodb_db}
    out = subprocess.run([sys.executable, str(discovery.job_script("import-catalog")), "--source", source],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert "hunter2hunter2" not in out.stdout + out.stderr
    entry = json.loads(out.stdout.strip().splitlines()[-1])
    assert entry["status"] == "failed" and entry["severity"] == "ERROR"
    assert "failed: FileNotFoundError" in entry["message"] and "password=[REDACTED]" in entry["message"]


def _after_the_reuse_grace_window(refresh_token: str) -> None:
    """Make a spent refresh token look spent long ago: presenting it again is then a leak, not a second tab."""
    import hashlib
    from datetime import UTC, datetime, timedelta

    from lib import db
    from lib.config import get_settings

    long_ago = datetime.now(UTC) - timedelta(seconds=get_settings().refresh_reuse_grace_seconds + 1)
    db.collection("refresh_tokens").update_one({"token_hash": hashlib.sha256(refresh_token.encode()).hexdigest()},
                                               {"$set": {"used_at": long_ago}})


def test_a_user_journey_leaves_no_credential_in_the_logs(fn, make_user, captured):
    u = make_user(password="a password to hide")
    fn("auth_login").post("/", json={"email": u["email"], "password": "a wrong password here"})
    fn("auth_refresh").post("/", json={"refresh_token": u["tokens"]["refresh_token"]})
    created = fn("uploads_create").post("/", json={"content_type": "image/jpeg", "size_bytes": 1000},
                                        headers=u["headers"]).get_json()
    fn("me").get("/", headers={"Authorization": "Bearer " + u["tokens"]["access_token"] + "x"})  # a bad token
    _after_the_reuse_grace_window(u["tokens"]["refresh_token"])
    fn("auth_refresh").post("/", json={"refresh_token": u["tokens"]["refresh_token"]})  # replayed: reuse
    # The reuse ended that session, access tokens included: a new login changes the password.
    fresh = fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]}).get_json()
    fn("me").patch("/", json={"new_password": "another secret!", "current_password": u["password"]},
                   headers={"Authorization": "Bearer " + fresh["access_token"]})
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
                   u["tokens"]["refresh_token"], fresh["access_token"], fresh["refresh_token"], signature):
        assert secret not in logs


def test_request_logs_carry_the_trace_for_correlation(fn, make_user, captured):
    u = make_user()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    fn("auth_login").post("/", json={"email": u["email"], "password": u["password"]},
                          headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    entry = [json.loads(line) for line in captured.getvalue().splitlines() if "logged in" in line][-1]
    assert entry["logging.googleapis.com/trace"] == f"projects/zipkku-test/traces/{trace_id}"
    assert entry["severity"] == "INFO"


def _emit_through(handlers, emit):
    logger = logging.getLogger("zipkku.shape")
    logger.propagate, logger.level = False, logging.INFO
    for handler in handlers:
        logger.addHandler(handler)
    try:
        emit(logger)
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.propagate, logger.level = True, logging.NOTSET


def _records(logger):
    logger.info("plain %s with %d args", "text", 2)
    logger.warning({"event": "dict message", "severity": "ignored", "count": 3})
    logger.info('{"stage": "detecting", "duration_ms": 12}')
    logger.info("with fields", extra={"json_fields": {"stage": "matching", "duration_ms": 5}})
    logger.error("labelled", extra={"labels": {"interior": "abc"}})
    logger.info("unicode: éè ✓ and \"quotes\"")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")


@pytest.mark.parametrize("headers", [
    {},
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "User-Agent": "probe/1"},
    {"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"},
    {"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000"},
    {"traceparent": "not a traceparent", "X-Cloud-Trace-Context": "abc/99999999999999999999999;o=0"},
])
def test_our_handler_writes_what_google_cloud_loggings_structured_handler_writes(headers):
    """Cloud Logging reads these fields from stdout (severity, trace correlation, labels, source location,
    httpRequest): our own handler (which spares every cold start google-cloud-logging's import) must write
    exactly what the library's StructuredLogHandler writes, inside a request and outside one."""
    import flask
    import google.cloud.logging_v2
    from google.cloud.logging.handlers import StructuredLogHandler

    google.cloud.logging_v2._instrumentation_emitted = True  # its one-off diagnostic line is not a log entry
    theirs, ours = io.StringIO(), io.StringIO()
    handlers = [StructuredLogHandler(project_id="zipkku-test", stream=theirs),
                log.StructuredJsonHandler(project_id="zipkku-test", stream=ours)]
    app = flask.Flask("shape")
    if headers:
        with app.test_request_context("/interiors-get?id=1", headers=headers):
            _emit_through(handlers, _records)
    else:
        _emit_through(handlers, _records)
    expected = [json.loads(line) for line in theirs.getvalue().splitlines()]
    written = [json.loads(line) for line in ours.getvalue().splitlines()]
    assert len(written) == len(expected) == 7
    for mine, reference in zip(written, expected, strict=True):
        assert mine == reference
    if "traceparent" in headers and headers["traceparent"].startswith("00-"):
        assert written[0]["logging.googleapis.com/trace"] == \
            "projects/zipkku-test/traces/4bf92f3577b34da6a3ce929d0e0e4736"


def test_functions_load_without_google_cloud_logging():
    """The log handler is ours: loading a function must not pull in google-cloud-logging (grpc, protobuf)."""
    code = ("import sys, functions_framework\n"
            "functions_framework.create_app(target='auth_login', source=sys.argv[1])\n"
            "print(sorted(m for m in ('google.cloud.logging', 'grpc', 'google.protobuf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(discovery.function_source("auth_login"))],
                         capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "JWT_SECRET": "x" * 48})
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_dev_servers_text_format_replaces_the_json_handler():
    """In a terminal (`LOCAL_LOG_FORMAT=text`) the dev server writes plain lines instead of the JSON ones, not
    both: the handler it swaps out is ours."""
    code = ("import logging; from scripts import devserver; from lib import log\n"
            "devserver.configure_logging('text')\n"
            "print(sorted(type(h).__name__ for h in logging.getLogger().handlers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip().splitlines()[-1] == "['StreamHandler']"
