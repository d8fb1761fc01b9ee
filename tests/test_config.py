"""Settings: validated once from the environment; production refuses the local stand-ins."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lib.config import Settings
from tests.test_infra import LOCALS

SECRET = "s" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Only what each test passes counts (the local stack may have exported settings of its own)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
ATLAS = "mongodb+srv://zipkku:pw@cluster0.example.mongodb.net/?retryWrites=true"


def test_the_jwt_secret_has_no_default_and_must_be_long():
    with pytest.raises(ValidationError):
        Settings(_env_file=None, jwt_secret="short")
    assert Settings(jwt_secret=SECRET).jwt_secret.get_secret_value() == SECRET
    assert Settings(_env_file=None).jwt_secret is None  # only token-handling processes are given one


def test_tokens_are_never_signed_or_checked_without_the_secret(settings_env, monkeypatch):
    from lib import auth

    monkeypatch.delenv("JWT_SECRET", raising=False)
    settings_env()
    user = {"_id": "u1", "session_epoch": 0}
    with pytest.raises(RuntimeError, match="JWT_SECRET"):
        auth.issue_access_token(user)
    with pytest.raises(RuntimeError, match="JWT_SECRET"):
        auth.decode_access_token("a.b.c")


def test_cors_origins_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "https://app.zipkku.com, https://www.zipkku.com")
    assert Settings(jwt_secret=SECRET).cors_origins == ["https://app.zipkku.com", "https://www.zipkku.com"]


def test_production_with_terraforms_environment_is_valid():
    """The literal values terraform gives every function and job (references become placeholders)."""
    placeholders = {"QDRANT_URL": "https://cluster.cloud.qdrant.io", "CORS_ORIGINS": "https://app.zipkku.com",
                    "EMBEDDER_DIM": "512"}
    env = {key.lower(): placeholders.get(key, "resolved-by-terraform") if value.startswith("${") else value
           for key, value in LOCALS["common_env"].items()}
    settings = Settings(**env, jwt_secret=SECRET, mongodb_uri=ATLAS)
    assert settings.environment == "production" and settings.task_queue == "cloudtasks"


@pytest.mark.parametrize(("change", "complaint"), [
    ({"task_queue": "local"}, "TASK_QUEUE=local"),
    ({"events": "local"}, "EVENTS=local"),
    ({"job_runner": "local"}, "JOB_RUNNER=local"),
    ({"generator": "local"}, "GENERATOR=local"),
    ({"detector": "local"}, "DETECTOR=local"),
    ({"embedder": "local"}, "EMBEDDER=local"),
    ({"qdrant_url": ""}, "QDRANT_URL"),
    ({"mongodb_uri": "mongodb://127.0.0.1:27017/"}, "MONGODB_URI"),
    ({"signing_key_file": "/tmp/key.pem"}, "SIGNING_KEY_FILE"),
])
def test_production_refuses_local_stand_ins(change, complaint):
    production = {"environment": "production", "task_queue": "cloudtasks", "events": "pubsub",
                  "job_runner": "cloudrun", "generator": "replicate", "detector": "http", "embedder": "http",
                  "qdrant_url": "https://q.example", "mongodb_uri": ATLAS}
    with pytest.raises(ValidationError, match=complaint):
        Settings(**{**production, **change}, jwt_secret=SECRET)

