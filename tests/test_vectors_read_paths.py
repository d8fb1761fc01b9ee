"""Read paths never create the vector collection. Production gives products_similar (and the generation's
matching) a read-only, collection-scoped Qdrant key: creating a missing collection there is refused (403), so a
read path must treat a missing collection as "no vectors yet" (before the first import, or after
EMBEDDER_NAME changes) instead of answering 500."""

from __future__ import annotations

import os
import uuid

import pytest

from lib import db, vectors
from lib.config import get_settings


@pytest.fixture
def missing_collection(stack):
    """A collection prefix nobody has written to: the configured embedder's collection does not exist."""
    os.environ["QDRANT_COLLECTION_PREFIX"] = f"missing{uuid.uuid4().hex[:8]}"
    get_settings.cache_clear()
    vectors.reset_caches()
    assert not vectors.client().collection_exists(vectors.collection_name())
    yield vectors.collection_name()
    with_leftover = vectors.client().collection_exists(vectors.collection_name())
    if with_leftover:
        vectors.client().delete_collection(vectors.collection_name())
    os.environ.pop("QDRANT_COLLECTION_PREFIX", None)
    get_settings.cache_clear()
    vectors.reset_caches()


def test_products_similar_before_any_import_is_409_and_creates_nothing(fn, missing_collection):
    db.collection("products").insert_one({"_id": "sofa-1", "label": "sofa", "name": "Sofa", "price": 10.0})
    response = fn("products_similar").get("/", query_string={"product_id": "sofa-1"})
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["error"]["code"] == "NOT_EMBEDDED"
    assert not vectors.client().collection_exists(missing_collection)


def test_read_paths_on_a_missing_collection_find_nothing_and_create_nothing(missing_collection):
    vector = [1.0] + [0.0] * (vectors_dim() - 1)
    assert vectors.get_vector("sofa-1") is None
    assert vectors.search_similar(vector, label="sofa") == []
    assert vectors.search_similar_batch([(vector, "sofa", None), (vector, "lamp", {"width_cm": 50})]) == [[], []]
    assert vectors.count() == 0
    assert list(vectors.labelled_vectors()) == []
    assert not vectors.client().collection_exists(missing_collection)


def test_a_write_still_creates_the_collection_and_reads_then_see_it(missing_collection):
    vector = [1.0] + [0.0] * (vectors_dim() - 1)
    assert vectors.search_similar(vector, label="sofa") == []  # a read first: nothing, and nothing cached
    vectors.upsert_products([("sofa-1", vector, {"label": "sofa"})])
    assert vectors.client().collection_exists(missing_collection)
    assert [pid for pid, _ in vectors.search_similar(vector, label="sofa")] == ["sofa-1"]


def vectors_dim() -> int:
    from lib.embed import embedder_identity

    return embedder_identity()[1]
