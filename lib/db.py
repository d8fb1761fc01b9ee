"""MongoDB access: one cached MongoClient per process, named collections, idempotent indexes.

Each collection has one owning module, which declares it here with its indexes (`declare`) and is the only
module that reads or writes it; every other module calls the owner's functions (tests/test_ownership.py).

Production talks to MongoDB Atlas; locally and in tests the same pymongo code talks to SecantusDB (its URI
carries retryWrites=false). Indexes are created once per process on first use; create_index is a no-op
when the index already exists, so every cold start may safely call it.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo import IndexModel, MongoClient
from pymongo.collection import Collection
from pymongo.database import Database

from lib import clients
from lib.config import get_settings

_indexed: set[tuple[str, str]] = set()

# collection -> the indexes its owner declared (see `declare`). Filled as owning modules are imported.
_declared: dict[str, list[IndexModel]] = {}

# The modules that own collections (each declares its own and is the only one to read or write them).
# ensure_all_indexes imports them so one call prepares a fresh database.
OWNERS = ("lib.accounts", "lib.auth", "lib.throttle", "lib.quota", "lib.uploads", "lib.interiors", "lib.catalog",
          "lib.catalog_import", "lib.notifications")


def declare(name: str, indexes: Sequence[IndexModel] = ()) -> str:
    """An owning module names its collection and the indexes it needs, once, at import; returns the name."""
    _declared[name] = list(indexes)
    return name


def client() -> MongoClient:
    """The process's MongoClient for the configured URI (thread-safe, created on first use)."""
    settings = get_settings()
    uri = settings.mongodb_uri.get_secret_value()
    # timeoutMS bounds each operation as a whole (server selection, connecting, waiting for the reply, retries):
    # without it an unresponsive database (accepting connections, never answering) held a request 8.5-14 s
    # before its 503. A request whose first operation times out answers 503 within MONGODB_TIMEOUT_MS.
    return clients.cached(("mongo", uri, settings.mongodb_timeout_ms), lambda: MongoClient(
        uri,
        tz_aware=True,
        timeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        appname="zipkku",
    ))


def database() -> Database:
    return client()[get_settings().mongodb_db]


def collection(name: str) -> Collection:
    """A collection with its indexes ensured (once per process and database)."""
    db = database()
    key = (db.name, name)
    indexes = _declared.get(name)
    if key not in _indexed and indexes:
        db[name].create_indexes(indexes)
        _indexed.add(key)
    return db[name]


def ensure_all_indexes() -> None:
    """Prepare every collection (used by the local stack and by deploy-time migrations)."""
    for module in OWNERS:
        importlib.import_module(module)
    for name in _declared:
        collection(name)


def forget_indexes() -> None:
    """Tests switch databases between cases; indexes must then be ensured again."""
    _indexed.clear()


def new_id() -> str:
    """Document ids are random (unguessable) hex strings; never derived from user input."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """Now, to the millisecond: what BSON stores, so an answer never shows more precision than a later read."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
