"""One per-process cache for clients that are expensive to create (MongoClient, storage.Client, QdrantClient,
the Cloud Run, Cloud Tasks and Pub/Sub clients, the local AI models).

    client = clients.cached(("mongo", uri), lambda: MongoClient(uri, ...))

The key says what the client is bound to (a URI, an emulator host, a project), so a test that points the
settings elsewhere gets a fresh client while production creates each one once. Creation happens at most once
per key even when threads race on a cold instance; reads after that take no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.RLock()  # re-entrant: a factory may itself ask for another cached client
_cache: dict[Hashable, Any] = {}


def cached(key: Hashable, factory: Callable[[], T]) -> T:
    """The client stored under `key`, created by `factory()` on first use."""
    try:
        return _cache[key]
    except KeyError:
        pass
    with _lock:
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]


def forget(kind: str | None = None) -> None:
    """Drop cached clients (all, or those whose key starts with `kind`): tests that restart a component."""
    with _lock:
        for key in list(_cache):
            if kind is None or (isinstance(key, tuple) and key and key[0] == kind):
                del _cache[key]
