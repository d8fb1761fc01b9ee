"""MongoDB access: one cached MongoClient per process, named collections, idempotent indexes.

Production talks to MongoDB Atlas; locally and in tests the same pymongo code talks to SecantusDB (its URI
carries retryWrites=false). Indexes are created once per process on first use; create_index is a no-op
when the index already exists, so every cold start may safely call it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient
from pymongo.collection import Collection
from pymongo.database import Database

from lib import clients
from lib.config import get_settings

_indexed: set[tuple[str, str]] = set()

# collection -> indexes it needs. Every module that owns a collection lists its indexes here, so one call
# prepares a fresh database and an operator can read the whole schema's indexes in one place.
INDEXES: dict[str, list[IndexModel]] = {
    "users": [
        IndexModel([("email", ASCENDING)], unique=True, name="email_unique"),
    ],
    "refresh_tokens": [
        IndexModel([("token_hash", ASCENDING)], unique=True, name="token_hash_unique"),
        IndexModel([("family_id", ASCENDING)], name="family"),
        IndexModel([("user_id", ASCENDING)], name="user"),
        # Expired refresh tokens delete themselves.
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
    ],
    "throttles": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
    ],
    "uploads": [
        IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_created"),
    ],
    "interiors": [
        IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                   name="user_created"),
        IndexModel([("user_id", ASCENDING), ("saved", ASCENDING), ("created_at", DESCENDING),
                    ("_id", DESCENDING)], name="user_saved_created"),
        IndexModel([("status", ASCENDING), ("lease_expires_at", ASCENDING)], name="status_lease"),
        IndexModel([("user_id", ASCENDING), ("idempotency_key", ASCENDING)], unique=True,
                   partialFilterExpression={"idempotency_key": {"$type": "string"}}, name="idempotency"),
    ],
    "products": [
        IndexModel([("label", ASCENDING), ("price", ASCENDING), ("_id", ASCENDING)], name="label_price"),
        IndexModel([("label", ASCENDING), ("_id", ASCENDING)], name="label_id"),
    ],
    "ar_models": [
        IndexModel([("label", ASCENDING)], name="label"),
    ],
    "notifications": [
        IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_created"),
        IndexModel([("user_id", ASCENDING), ("read", ASCENDING)], name="user_read"),
    ],
    "processed_events": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
    ],
}


def client() -> MongoClient:
    """The process's MongoClient for the configured URI (thread-safe, created on first use)."""
    settings = get_settings()
    uri = settings.mongodb_uri.get_secret_value()
    return clients.cached(("mongo", uri), lambda: MongoClient(
        uri,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        appname="zipkku",
    ))


def database() -> Database:
    return client()[get_settings().mongodb_db]


def collection(name: str) -> Collection:
    """A collection with its indexes ensured (once per process and database)."""
    db = database()
    key = (db.name, name)
    if key not in _indexed and name in INDEXES:
        db[name].create_indexes(INDEXES[name])
        _indexed.add(key)
    return db[name]


def ensure_all_indexes() -> None:
    """Prepare every collection (used by the local stack and by deploy-time migrations)."""
    for name in INDEXES:
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
