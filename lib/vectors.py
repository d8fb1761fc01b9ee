"""Product image vectors in Qdrant, through `qdrant-client` only.

- Production: Qdrant Cloud, `QDRANT_URL` + `QDRANT_API_KEY` (REST).
- Local stack: the same REST code path against scripts/qdrant_local.py (a stand-in serving Qdrant's documented
  REST API on 127.0.0.1), because qdrant-client's local mode locks its folder to one process and the dev server
  and the job subprocesses must share one store.
- Unit tests may leave `QDRANT_URL` empty: local mode on `QDRANT_PATH` (":memory:" by default).

One collection per embedder, named "<prefix>__<embedder name>__<dim>", so vectors of different models never
share a collection (switching embedders means re-importing into a new collection, not corrupting the old).
Points have deterministic ids (uuid5 of the product id), so re-imports overwrite instead of duplicating, and
carry the payload the searches filter on: label (keyword index) and dimensions/price (float indexes).

The generation job searches for every detected part at once:
    search_similar_batch([(vector, "sofa", {"width_cm": 220}), (vector, "lamp", None)], limit=4)
        -> [[(product_id, score), ...], [...]]      # ONE request (query_batch_points)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from lib import clients, errors
from lib.config import get_settings
from lib.embed import embedder_identity

# qdrant-client is imported inside the functions that use it: functions that never search skip its import
# at cold start (tests/test_coldstart.py).

_NAMESPACE = uuid.UUID("7d0f4a56-7f1e-4f4e-9a38-3c5b0d7a2e11")  # fixed: point ids must never change
DIMENSION_KEYS = ("width_cm", "depth_cm", "height_cm")
_FLOAT_FIELDS = (*DIMENSION_KEYS, "price")

_ready: set[tuple] = set()
_writes = [0]  # upserts and deletes by this process (see version())

MaxDims = Mapping[str, float | None] | Sequence[float | None] | None


def client():
    """The process's QdrantClient for the configured URL (or local-mode path), created on first use."""
    settings = get_settings()

    def create():
        from qdrant_client import QdrantClient

        logging.getLogger("httpx").setLevel(logging.WARNING)  # not one INFO line per vector request
        if settings.qdrant_url:
            return QdrantClient(
                url=settings.qdrant_url, api_key=settings.qdrant_api_key.get_secret_value() or None,
                timeout=settings.qdrant_timeout_seconds, check_compatibility=False,
                # a plain-http local stand-in must not receive the key; Qdrant Cloud is https
                https=settings.qdrant_url.startswith("https://"),
            )
        if settings.qdrant_path == ":memory:":
            return QdrantClient(location=":memory:")
        return QdrantClient(path=settings.qdrant_path)

    return clients.cached(("qdrant", settings.qdrant_url, settings.qdrant_path), create)


def collection_name(embedder_name: str | None = None, dim: int | None = None) -> str:
    if embedder_name is None or dim is None:
        embedder_name, dim = embedder_identity()
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in embedder_name)
    return f"{get_settings().qdrant_collection_prefix}__{safe}__{dim}"


def point_id(product_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, product_id))


def _unavailable(exc: Exception) -> errors.DependencyUnavailable:
    return errors.DependencyUnavailable(f"The vector index is unavailable ({type(exc).__name__}).")


def _call(fn, *args, **kwargs):
    """Run a client call; transport failures and server errors become a 503, never a 500."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        return fn(*args, **kwargs)
    except ResponseHandlingException as exc:
        raise _unavailable(exc) from exc
    except UnexpectedResponse as exc:
        if exc.status_code is not None and exc.status_code >= 500:
            raise _unavailable(exc) from exc
        raise


def ensure_collection(name: str | None = None, dim: int | None = None) -> str:
    """Create the embedder's collection and its payload indexes if missing (once per process). Writers only:
    production gives readers a read-only key, which may not create anything (see `_readable_collection`)."""
    from qdrant_client import models

    if name is None or dim is None:
        dim = embedder_identity()[1]
        name = collection_name()
    settings = get_settings()
    key = (settings.qdrant_url, settings.qdrant_path, name)
    if key in _ready:
        return name
    qdrant = client()
    if not _call(qdrant.collection_exists, name):
        from qdrant_client.http.exceptions import UnexpectedResponse

        try:
            _call(qdrant.create_collection, name,
                  vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
        except UnexpectedResponse:
            if not _call(qdrant.collection_exists, name):
                raise
            # another process (a parallel import shard) created it between our check and our create
        _call(qdrant.create_payload_index, name, "label", models.PayloadSchemaType.KEYWORD)
        for field in _FLOAT_FIELDS:
            _call(qdrant.create_payload_index, name, field, models.PayloadSchemaType.FLOAT)
    _ready.add(key)
    return name


def _readable_collection() -> str | None:
    """The embedder's collection for a read, or None while it does not exist yet (before the first import, or
    after EMBEDDER_NAME changed): a read finds no vectors then and never creates the collection, which a
    read-only key could not do anyway (403). Existence is remembered once seen, as by ensure_collection."""
    settings = get_settings()
    name = collection_name()
    if (settings.qdrant_url, settings.qdrant_path, name) in _ready:
        return name
    if not _call(client().collection_exists, name):
        return None
    _ready.add((settings.qdrant_url, settings.qdrant_path, name))
    return name


def _read(fn, name: str, *args, **kwargs):
    """A read call on an existing collection; None when it was deleted since we saw it (404)."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    try:
        return _call(fn, name, *args, **kwargs)
    except UnexpectedResponse as exc:
        if exc.status_code != 404:
            raise
        settings = get_settings()
        _ready.discard((settings.qdrant_url, settings.qdrant_path, name))
        return None


def upsert_products(items: Iterable[tuple[str, Sequence[float], Mapping[str, Any]]]) -> int:
    """Upsert (product_id, vector, payload) triples; payload should carry label and dimensions."""
    from qdrant_client import models

    points = [
        models.PointStruct(id=point_id(pid), vector=list(vector), payload={**payload, "product_id": pid})
        for pid, vector, payload in items
    ]
    if points:
        _call(client().upsert, ensure_collection(), points=points, wait=True)
        _writes[0] += 1
    return len(points)


def delete_products(product_ids: Iterable[str]) -> None:
    from qdrant_client import models

    ids = [point_id(pid) for pid in product_ids]
    if ids:
        _call(client().delete, ensure_collection(), points_selector=models.PointIdsList(points=ids), wait=True)
        _writes[0] += 1


def count() -> int:
    name = _readable_collection()
    counted = _read(client().count, name, exact=True) if name else None
    return counted.count if counted else 0


def get_vector(product_id: str) -> list[float] | None:
    name = _readable_collection()
    records = _read(client().retrieve, name, ids=[point_id(product_id)], with_vectors=True,
                    with_payload=False) if name else None
    return list(records[0].vector) if records else None


def _max_dims(max_dims: MaxDims) -> dict[str, float]:
    if not max_dims:
        return {}
    pairs: Iterable[tuple[str, float | None]]
    if isinstance(max_dims, Mapping):
        pairs = ((k, max_dims.get(k)) for k in DIMENSION_KEYS)
    else:
        pairs = zip(DIMENSION_KEYS, max_dims, strict=False)
    return {k: float(v) for k, v in pairs if v is not None}


def build_filter(label: str | None, max_dims: MaxDims = None, exclude_product: str | None = None):
    from qdrant_client import models

    must: list = []
    if label:
        must.append(models.FieldCondition(key="label", match=models.MatchValue(value=label)))
    for key, value in _max_dims(max_dims).items():
        must.append(models.FieldCondition(key=key, range=models.Range(lte=value)))
    must_not = [models.HasIdCondition(has_id=[point_id(exclude_product)])] if exclude_product else None
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not)


def _hits(points) -> list[tuple[str, float]]:
    return [(p.payload["product_id"], float(p.score)) for p in points]


def search_similar(vector: Sequence[float], label: str | None = None, max_dims: MaxDims = None,
                   limit: int = 10) -> list[tuple[str, float]]:
    """Nearest products to one vector (cosine), optionally of one label and within maximum dimensions."""
    name = _readable_collection()
    response = _read(client().query_points, name, query=list(vector), query_filter=build_filter(label, max_dims),
                     limit=limit, with_payload=["product_id"]) if name else None
    return _hits(response.points) if response else []


def search_similar_batch(queries: Sequence[tuple[Sequence[float], str | None, MaxDims]],
                         limit: int = 4) -> list[list[tuple[str, float]]]:
    """Many (vector, label, max_dims) queries in ONE request; results in the same order as the queries."""
    from qdrant_client import models

    if not queries:
        return []
    requests = [
        models.QueryRequest(query=list(vector), filter=build_filter(label, max_dims), limit=limit,
                            with_payload=["product_id"])
        for vector, label, max_dims in queries
    ]
    name = _readable_collection()
    responses = _read(client().query_batch_points, name, requests=requests) if name else None
    return [_hits(r.points) for r in responses] if responses else [[] for _ in queries]


def labelled_vectors(label: str | None = None) -> Iterator[tuple[str | None, list[float]]]:
    """(label, vector) of every point of the collection (or of one label), page by page (none while it does not
    exist)."""
    name = _readable_collection()
    offset = None
    while name:
        page = _read(client().scroll, name, limit=512, offset=offset, with_vectors=True, with_payload=["label"],
                     scroll_filter=build_filter(label))
        if page is None:
            return
        records, offset = page
        for record in records:
            yield record.payload.get("label"), record.vector
        if offset is None:
            return


def label_centroid(label: str) -> list[float] | None:
    """The mean unit vector of the label's points (None without points): reads every vector of the label, so
    the catalog counts it when it changes (lib.catalog.refresh_label_stats), never per request."""
    import numpy as np

    total = None
    for _, vector in labelled_vectors(label):
        total = np.asarray(vector, dtype=np.float64) + (0 if total is None else total)
    if total is None:
        return None
    norm = float(np.linalg.norm(total))
    return (total / norm).tolist() if norm else None


def version() -> tuple:
    """What the collection's content depends on in this process: the store, the collection and the number of
    writes made through this module. Caches derived from the vectors key on it."""
    settings = get_settings()
    return settings.qdrant_url, settings.qdrant_path, collection_name(), _writes[0]


def reset_caches() -> None:
    """Tests point the process at another Qdrant between cases."""
    _ready.clear()
    _writes[0] += 1


def vectors_by_id(product_ids: Iterable[str]) -> dict[str, list[float]]:
    """product id -> its stored vector, for those of `product_ids` that have one, in one request (the local
    stack's scaled demo catalog derives its products' vectors from their sources', scripts/scale_catalog.py)."""
    by_point = {point_id(pid): pid for pid in product_ids}
    name = _readable_collection()
    records = _read(client().retrieve, name, ids=list(by_point), with_vectors=True,
                    with_payload=False) if name and by_point else None
    return {by_point[str(r.id)]: list(r.vector) for r in records or []}
