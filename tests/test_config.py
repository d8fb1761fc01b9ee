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
        auth.issue_access_token(user, "s1")
    with pytest.raises(RuntimeError, match="JWT_SECRET"):
        auth.decode_access_token("a.b.c")


def test_cors_origins_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "https://app.zipkku.com, https://www.zipkku.com")
    assert Settings(jwt_secret=SECRET).cors_origins == ["https://app.zipkku.com", "https://www.zipkku.com"]


def test_production_with_terraforms_environment_is_valid():
    """The literal values terraform gives every function and job (references become placeholders; the AI
    providers are the variables' defaults: the managed ones)."""
    placeholders = {"QDRANT_URL": "https://cluster.cloud.qdrant.io", "CORS_ORIGINS": "https://app.zipkku.com",
                    "EMBEDDER_DIM": "512", "DETECTOR": "vision", "EMBEDDER": "vertex", "DETECTOR_URL": "",
                    "VERTEX_EMBEDDING_DIM": "512"}
    env = {key.lower(): placeholders.get(key, "resolved-by-terraform") if value.startswith("${") else value
           for key, value in LOCALS["common_env"].items()}
    settings = Settings(**env, jwt_secret=SECRET, mongodb_uri=ATLAS)
    assert settings.environment == "production" and settings.task_queue == "cloudtasks"
    assert (settings.detector, settings.embedder, settings.detector_url) == ("vision", "vertex", "")


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
                  "detector_url": "https://detector.example", "qdrant_url": "https://q.example", "mongodb_uri": ATLAS}
    with pytest.raises(ValidationError, match=complaint):
        Settings(**{**production, **change}, jwt_secret=SECRET)



PRODUCTION = {"environment": "production", "task_queue": "cloudtasks", "events": "pubsub", "job_runner": "cloudrun",
              "generator": "replicate", "detector": "vision", "embedder": "vertex",
              "qdrant_url": "https://q.example", "mongodb_uri": ATLAS}


@pytest.mark.parametrize(("change", "complaint"), [
    ({"qdrant_url": "http://127.0.0.1:6333"}, "QDRANT_URL points at this machine"),
    ({"vision_api_url": "http://vision.example"}, "VISION_API_URL is not https"),
    ({"iam_credentials_url": "http://localhost:8099"}, "IAM_CREDENTIALS_URL points at this machine"),
    ({"mongodb_uri": "mongodb://db.example:1,127.0.0.1:2/"}, "MONGODB_URI points at this machine"),
    ({"storage_emulator_host": "http://127.0.0.1:4443"}, "STORAGE_EMULATOR_HOST is set"),
    ({"pubsub_emulator_host": "127.0.0.1:8085"}, "PUBSUB_EMULATOR_HOST is set"),
    ({"tasks_emulator_host": "127.0.0.1:8123"}, "TASKS_EMULATOR_HOST is set"),
    ({"emulator_hosts": "db.example:27017"}, "EMULATOR_HOSTS names db.example:27017"),
])
def test_production_refuses_endpoints_off_the_cloud(change, complaint):
    with pytest.raises(ValidationError, match=complaint):
        Settings(**{**PRODUCTION, **change}, jwt_secret=SECRET)


def test_production_accepts_exactly_the_emulators_it_is_told_about():
    """The production journey runs against emulators and doubles on this machine, each named in EMULATOR_HOSTS;
    one that is not named is still refused, and the list can admit nothing beyond this machine."""
    local = {"mongodb_uri": "mongodb://127.0.0.1:27017/?retryWrites=false", "qdrant_url": "http://127.0.0.1:6333",
             "storage_emulator_host": "http://127.0.0.1:4443", "pubsub_emulator_host": "127.0.0.1:8085",
             "vision_api_url": "http://127.0.0.1:9001"}
    hosts = "127.0.0.1:27017,127.0.0.1:6333,127.0.0.1:4443,127.0.0.1:8085,127.0.0.1:9001"
    settings = Settings(**{**PRODUCTION, **local}, emulator_hosts=hosts, jwt_secret=SECRET)
    assert settings.emulator_hosts[0] == "127.0.0.1:27017"
    with pytest.raises(ValidationError, match="VISION_API_URL points at this machine"):
        Settings(**{**PRODUCTION, **local}, emulator_hosts=hosts.replace(",127.0.0.1:9001", ""), jwt_secret=SECRET)
    # outside production the list changes nothing
    assert Settings(qdrant_url="http://127.0.0.1:6333", jwt_secret=SECRET).environment == "local"
