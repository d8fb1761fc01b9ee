"""Shared fixtures: the local stack's real components for the session, a clean database per test, and
functions-framework test clients for every function (loaded exactly as Cloud Run loads them)."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lib import discovery
from scripts.localstack import LocalStack, free_port, run_local_server


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local_dir = tmp_path_factory.mktemp("local")
    with LocalStack(Path(local_dir), persistent=False) as running:
        saved = dict(os.environ)
        os.environ.update(running.env)
        # Cheap argon2 cost keeps the suite fast; the production cost is exercised by its own test.
        os.environ.setdefault("ARGON2_MEMORY_KIB", "1024")
        os.environ.setdefault("ARGON2_TIME_COST", "1")
        with event_subscribers() as push_url:
            os.environ["LOCAL_EVENTS_PUSH_URL"] = push_url
            yield running
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def event_subscribers() -> Iterator[str]:
    """The functions subscribed to local events, served by the dev server's app on 127.0.0.1 in a thread of
    this process, as `make run` serves them: EVENTS=local pushes each message there (lib/local/events.py), from
    this process and from the job subprocesses alike. Yields the base URL."""
    from werkzeug.serving import make_server

    from lib.local.events import SUBSCRIBERS
    from scripts import devserver

    app, _ = devserver.build_app(names=sorted({name for names in SUBSCRIBERS.values() for name in names}))
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="event-subscribers", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def fresh_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Every test that uses the stack gets its own empty database."""
    if "stack" not in request.fixturenames and "fn" not in request.fixturenames:
        yield None
        return
    request.getfixturevalue("stack")
    from lib import db
    from lib.config import get_settings

    name = f"test_{uuid.uuid4().hex[:12]}"
    os.environ["MONGODB_DB"] = name
    get_settings.cache_clear()
    db.forget_indexes()
    yield name
    get_settings.cache_clear()  # a test may have pointed settings elsewhere
    db.client().drop_database(name)


def clear_settings_caches() -> None:
    """Drop the settings (the AI providers and clients are cached per configured value, so they follow)."""
    from lib.config import get_settings

    get_settings.cache_clear()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """settings_env(name=value, ...) sets environment variables (upper-cased) for one test and makes the
    settings read them; everything is restored afterwards."""

    def apply(**values: object) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key.upper(), str(value))
        clear_settings_caches()

    apply()
    yield apply
    monkeypatch.undo()
    clear_settings_caches()


_apps: dict[str, object] = {}


@pytest.fixture
def fn(stack: LocalStack) -> Callable[[str], object]:
    """fn("auth_login") -> a Flask test client for functions/auth_login/main.py."""
    import functions_framework

    def client(name: str):
        if name not in _apps:
            _apps[name] = functions_framework.create_app(
                target=name, source=str(discovery.function_source(name))
            )
        return _apps[name].test_client()

    return client


@pytest.fixture
def make_user(fn) -> Callable[..., dict]:
    """Sign up and log in a user; returns {user, tokens, headers, email, password}."""

    def create(email: str | None = None, password: str = "correct horse battery", name: str = "Test User"):
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        signup = fn("auth_signup").post("/", json={"email": email, "password": password, "name": name})
        assert signup.status_code == 201, signup.get_json()
        login = fn("auth_login").post("/", json={"email": email, "password": password})
        assert login.status_code == 200, login.get_json()
        tokens = login.get_json()
        return {
            "user": signup.get_json()["user"], "tokens": tokens, "email": email, "password": password,
            "headers": {"Authorization": f"Bearer {tokens['access_token']}"},
        }

    return create


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`make run` as a user runs it: scripts/run_local.py in its own process with its own .local folder and
    components, serving every function over real HTTP. Yields the base URL."""
    # Every test of the session reaches it from 127.0.0.1: the per-address hourly limits are raised (their own
    # tests use the functions directly, tests/test_client_limits.py).
    env = {"ARGON2_MEMORY_KIB": "1024", "ARGON2_TIME_COST": "1", "SIGNUPS_PER_ADDRESS_PER_HOUR": "1000",
           "LOGINS_PER_ADDRESS_PER_HOUR": "1000", "GENERATIONS_PER_ADDRESS_PER_HOUR": "1000",
           "DEMO_CATALOG_PER_LABEL": os.environ.get("DEMO_CATALOG_PER_LABEL", "8")}  # ~100 products: quick start
    with run_local_server(tmp_path_factory.mktemp("live") / "stack", env=env, timeout=180) as url:
        yield url


@contextlib.contextmanager
def module_catalog(name: str, fill: Callable[[], Any],
                   extra_env: dict[str, str] | None = None) -> Iterator[tuple[dict[str, str], Any]]:
    """A database and vector collection of their own for a module of read-only tests, filled once by `fill()`:
    yields (the environment that points at them, what `fill` returned); both are removed afterwards, and the
    variables set here (but MONGODB_DB, which conftest's per-test database sets again) are unset."""
    from lib import db, vectors
    from lib.config import get_settings

    env = {"MONGODB_DB": f"test_{name}_{uuid.uuid4().hex[:8]}",
           "QDRANT_COLLECTION_PREFIX": f"t{name}{uuid.uuid4().hex[:8]}", **(extra_env or {})}
    os.environ.update(env)
    get_settings.cache_clear()
    db.forget_indexes()
    vectors.reset_caches()
    result = fill()
    yield env, result
    os.environ.update(env)
    get_settings.cache_clear()
    vectors.client().delete_collection(vectors.collection_name())
    db.client().drop_database(env["MONGODB_DB"])
    for key in set(env) - {"MONGODB_DB"}:
        os.environ.pop(key, None)
    get_settings.cache_clear()
    vectors.reset_caches()


@contextlib.contextmanager
def seeded_demo_catalog(name: str, **seed_args: object) -> Iterator[tuple[dict[str, str], dict]]:
    """The demo catalog seeded into a module catalog of its own (module_catalog)."""
    from scripts import demo_catalog

    with module_catalog(name, lambda: demo_catalog.seed(**seed_args)) as (env, result):
        yield env, result


def reading_module_catalog(env: dict[str, str]) -> Iterator[str]:
    """The body of a module's `fresh_database` override: each test reads the module's one catalog (`env`, from
    module_catalog) instead of an empty database of its own."""
    from lib import db
    from lib.config import get_settings

    os.environ.update(env)
    get_settings.cache_clear()
    db.forget_indexes()
    yield env["MONGODB_DB"]
    os.environ.pop("QDRANT_COLLECTION_PREFIX", None)
    get_settings.cache_clear()
