"""A local stand-in for a Qdrant server: the subset of Qdrant's documented REST API that lib/vectors.py uses,
served on 127.0.0.1 from Qdrant's own engine embedded (qdrant-edge-py: HNSW, payload indexes, persistence), on
disk under `.local/qdrant` (or a temporary folder for ":memory:", removed on exit).

Why a process of its own: the dev server and the job subprocesses (import_catalog, generate_interior) must share
one store, and an engine folder belongs to one process. With this process owning it, every other process uses the
real `QdrantClient(url=...)` REST code path, exactly as against Qdrant Cloud; filters use payload indexes and
search walks an HNSW graph (approximate), as in production.

Served (paths as in qdrant_client/http/api/*.py; replies `{"result": ..., "status": "ok", "time": s}`, errors
`{"status": {"error": "..."}, "time": s}` with 400/404 like Qdrant):
  GET  /  /healthz  /readyz                      GET /collections
  GET|PUT|DELETE /collections/{name}             GET /collections/{name}/exists
  PUT  /collections/{name}/index                 PUT /collections/{name}/points            (upsert)
  POST /collections/{name}/points                (retrieve)   POST .../points/delete   .../points/count
  POST .../points/scroll   .../points/query   .../points/query/batch
Bodies are parsed with qdrant_client.http.models, the same models the client serialises.

Building the HNSW graph (the engine's `optimize()`) holds the GIL for seconds to minutes, so it never runs in
this process: once a collection has >= OPTIMIZE_MIN_POINTS unindexed points and no write for OPTIMIZE_QUIET_S,
a child process optimizes a copy of the shard while this one keeps answering from the live shard (status
"yellow"); writes made meanwhile are recorded and replayed onto the optimized copy, which then replaces it.

Layout: <path>/collections/<name>/collection.json (the create request) and .../shard-<generation>/ (the engine).

    python scripts/qdrant_local.py --port 6333 --path .local/qdrant
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import qdrant_edge as edge
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from qdrant_client.http import models
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

VERSION = "1.15.0"  # the API level this stand-in mirrors (qdrant-client 1.20's REST models)
OPTIMIZE_MIN_POINTS = 5_000  # below this the engine's planner scans the payload index exactly anyway
OPTIMIZE_QUIET_S = 5.0  # wait for the end of (or a pause in) a bulk import before building the graph
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")  # also a safe folder name
_DISTANCES = {"Cosine": edge.Distance.Cosine, "Euclid": edge.Distance.Euclid, "Dot": edge.Distance.Dot,
              "Manhattan": edge.Distance.Manhattan}
_SCHEMAS = {"keyword": edge.PayloadSchemaType.Keyword, "integer": edge.PayloadSchemaType.Integer,
            "float": edge.PayloadSchemaType.Float, "bool": edge.PayloadSchemaType.Bool,
            "geo": edge.PayloadSchemaType.Geo, "text": edge.PayloadSchemaType.Text,
            "datetime": edge.PayloadSchemaType.Datetime, "uuid": edge.PayloadSchemaType.Uuid}
_SCHEMA_NAMES = {v: k for k, v in _SCHEMAS.items()}
_HNSW_DEFAULT = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10_000}  # Qdrant's defaults (KB)

_RULES = Map([
    Rule("/", endpoint="root", methods=["GET"]),
    Rule("/healthz", endpoint="health", methods=["GET"]),
    Rule("/readyz", endpoint="health", methods=["GET"]),
    Rule("/livez", endpoint="health", methods=["GET"]),
    Rule("/collections", endpoint="list_collections", methods=["GET"]),
    Rule("/collections/<name>", endpoint="get_collection", methods=["GET"]),
    Rule("/collections/<name>", endpoint="create_collection", methods=["PUT"]),
    Rule("/collections/<name>", endpoint="delete_collection", methods=["DELETE"]),
    Rule("/collections/<name>/exists", endpoint="exists", methods=["GET"]),
    Rule("/collections/<name>/index", endpoint="create_index", methods=["PUT"]),
    Rule("/collections/<name>/points", endpoint="upsert", methods=["PUT"]),
    Rule("/collections/<name>/points", endpoint="retrieve", methods=["POST"]),
    Rule("/collections/<name>/points/delete", endpoint="delete_points", methods=["POST"]),
    Rule("/collections/<name>/points/count", endpoint="count", methods=["POST"]),
    Rule("/collections/<name>/points/scroll", endpoint="scroll", methods=["POST"]),
    Rule("/collections/<name>/points/query", endpoint="query", methods=["POST"]),
    Rule("/collections/<name>/points/query/batch", endpoint="query_batch", methods=["POST"]),
])

log = logging.getLogger("qdrant_local")


class BadRequest(Exception):
    pass


def _completed() -> models.UpdateResult:
    return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)


class Collection:
    """One collection: its create request, the live engine shard, and the background optimization's state."""

    def __init__(self, folder: Path, spec: models.CreateCollection, generation: int, shard) -> None:
        self.folder, self.spec, self.generation, self.shard = folder, spec, generation, shard
        self.params = _vector_params(spec)
        self.write_lock = threading.Lock()  # writes, and the optimizer's copy and swap
        self.replay: list | None = None  # writes made while a copy is being optimized
        self.last_write = 0.0
        self.dirty = False  # written since the last optimization started
        self.optimizing = False
        self.deleted = False

    def shard_dir(self, generation: int) -> Path:
        return self.folder / f"shard-{generation}"

    def write(self, operation) -> None:
        with self.write_lock:
            self.shard.update(operation)
            if self.replay is not None:
                self.replay.append(operation)
            self.last_write, self.dirty = time.monotonic(), True

    def unindexed(self) -> int:
        info = self.shard.info()
        return info.points_count - info.indexed_vectors_count


class QdrantStandIn:
    """WSGI app: route -> parse body with qdrant models -> translate to the engine's API -> reply like Qdrant."""

    def __init__(self, path: str, optimize_min_points: int = OPTIMIZE_MIN_POINTS) -> None:
        self.optimize_min_points = optimize_min_points
        if path == ":memory:":
            self.root_dir = Path(tempfile.mkdtemp(prefix="qdrant-stand-in-"))
            atexit.register(shutil.rmtree, self.root_dir, True)
        else:
            self.root_dir = Path(path)
        (self.root_dir / "collections").mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()  # the collections registry (create/delete)
        self.collections: dict[str, Collection] = {}
        for folder in sorted((self.root_dir / "collections").iterdir()):
            self._load(folder)
        self._stop = threading.Event()
        threading.Thread(target=self._optimizer_loop, name="optimizer", daemon=True).start()

    # --- endpoints ---------------------------------------------------------------------------------------
    def root(self, _req, **_):
        return {"title": "qdrant - vector search engine (zipkku local stand-in)", "version": VERSION}

    def health(self, _req, **_):
        return "healthz check passed"

    def list_collections(self, _req, **_):
        return models.CollectionsResponse(
            collections=[models.CollectionDescription(name=n) for n in sorted(self.collections)])

    def get_collection(self, _req, name):
        col = self._get(name)
        info = col.shard.info()
        pending = col.optimizing or (col.dirty and col.unindexed() >= self.optimize_min_points)
        hnsw = {**_HNSW_DEFAULT, **(col.spec.hnsw_config.model_dump(exclude_none=True)
                                    if col.spec.hnsw_config else {})}
        return models.CollectionInfo(
            status=models.CollectionStatus.YELLOW if pending else models.CollectionStatus.GREEN,
            optimizer_status=models.OptimizersStatusOneOf.OK,
            points_count=info.points_count, indexed_vectors_count=info.indexed_vectors_count,
            segments_count=info.segments_count,
            config=models.CollectionConfig(
                params=models.CollectionParams(vectors=col.params, shard_number=1, replication_factor=1),
                hnsw_config=models.HnswConfig(**hnsw),
                optimizer_config=models.OptimizersConfig(default_segment_number=0, flush_interval_sec=5),
            ),
            payload_schema={
                key: models.PayloadIndexInfo(data_type=_SCHEMA_NAMES.get(index.data_type, "keyword"),
                                             points=info.points_count)
                for key, index in info.payload_schema.items()
            },
        )

    def create_collection(self, req, name):
        body = self._body(req, models.CreateCollection)
        if not _NAME.match(name):
            raise BadRequest(f"Validation error in path parameters: [name: invalid collection name `{name}`]")
        _vector_params(body)
        with self.lock:
            if name in self.collections:
                raise BadRequest(f"Wrong input: Collection `{name}` already exists!")
            folder = self.root_dir / "collections" / name
            shutil.rmtree(folder, ignore_errors=True)  # leftovers of a crash mid-create
            shard = edge.EdgeShard.create(str(folder / "shard-0"), self._config(body))
            (folder / "collection.json").write_text(body.model_dump_json(exclude_none=True))
            self.collections[name] = Collection(folder, body, 0, shard)
        return True

    def delete_collection(self, _req, name):
        with self.lock:
            col = self.collections.pop(name, None)
        if col is None:
            return False
        with col.write_lock:
            col.deleted = True
            col.shard = None
        shutil.rmtree(col.folder, ignore_errors=True)
        return True

    def exists(self, _req, name):
        return models.CollectionExistence(exists=name in self.collections)

    def create_index(self, req, name):
        body = self._body(req, models.CreateFieldIndex)
        col = self._get(name)
        schema = body.field_schema
        kind = schema.value if isinstance(schema, models.PayloadSchemaType) else getattr(schema, "type", None)
        kind = getattr(kind, "value", kind)
        if kind not in _SCHEMAS:
            raise BadRequest(f"Wrong input: unsupported payload index type {kind!r}")
        col.write(edge.UpdateOperation.create_field_index(body.field_name, _SCHEMAS[kind]))
        return _completed()

    def upsert(self, req, name):
        data = self._json(req)
        col = self._get(name)
        if "batch" in data:
            batch = self._parse(models.PointsBatch, data).batch
            vectors, payloads = batch.vectors, batch.payloads or [None] * len(batch.ids)
            if not isinstance(vectors, list) or len(vectors) != len(batch.ids) or len(payloads) != len(batch.ids):
                raise BadRequest("Wrong input: batch ids, vectors and payloads differ in length")
            triples: Iterable[tuple[Any, Any, Any]] = zip(batch.ids, vectors, payloads, strict=True)
        else:
            triples = ((p.id, p.vector, p.payload) for p in self._parse(models.PointsList, data).points)
        points = [edge.Point(pid, self._vector(col, vector), payload or {}) for pid, vector, payload in triples]
        if points:
            col.write(edge.UpdateOperation.upsert_points(points))
        return _completed()

    def retrieve(self, req, name):
        body = self._body(req, models.PointRequest)
        col = self._get(name)
        records = col.shard.retrieve(list(body.ids), _with_payload(body.with_payload, True),
                                     _with_vector(body.with_vector))
        return [_record(r) for r in records]

    def delete_points(self, req, name):
        data = self._json(req)
        col = self._get(name)
        if "points" in data:
            ids = self._parse(models.PointIdsList, data).points
            col.write(edge.UpdateOperation.delete_points(list(ids)))
        else:
            selector = self._parse(models.FilterSelector, data)
            col.write(edge.UpdateOperation.delete_points_by_filter(_filter(selector.filter)))
        return _completed()

    def count(self, req, name):
        body = self._body(req, models.CountRequest)
        col = self._get(name)
        return models.CountResult(count=col.shard.count(
            edge.CountRequest(exact=True, filter=_filter(body.filter))))

    def scroll(self, req, name):
        body = self._body(req, models.ScrollRequest)
        col = self._get(name)
        order_by = body.order_by
        if isinstance(order_by, str):
            order_by = models.OrderBy(key=order_by)
        points, next_offset = col.shard.scroll(edge.ScrollRequest(
            offset=body.offset, limit=body.limit or 10, filter=_filter(body.filter),
            with_payload=_with_payload(body.with_payload, True), with_vector=_with_vector(body.with_vector),
            order_by=None if order_by is None else edge.OrderBy(
                order_by.key, edge.Direction.Desc if order_by.direction == models.Direction.DESC
                else edge.Direction.Asc, order_by.start_from),
        ))
        return models.ScrollResult(points=[_record(r) for r in points],
                                   next_page_offset=None if order_by else next_offset)

    def query(self, req, name):
        body = self._body(req, models.QueryRequest)
        col = self._get(name)
        return self._query_batch(col, [body])[0]

    def query_batch(self, req, name):
        body = self._body(req, models.QueryRequestBatch)
        col = self._get(name)
        return self._query_batch(col, body.searches)

    # --- translation to the engine -----------------------------------------------------------------------
    def _query_batch(self, col: Collection, bodies: list[models.QueryRequest]) -> list[models.QueryResponse]:
        requests = [self._edge_query(col, body) for body in bodies]
        shard = col.shard
        results = shard.query_batch(edge.QueryBatchRequest(requests)) if len(requests) > 1 else \
            [shard.query(requests[0])]
        return [models.QueryResponse(points=[_scored(p) for p in points]) for points in results]

    def _edge_query(self, col: Collection, body: models.QueryRequest):
        if body.prefetch or body.using or body.lookup_from:
            raise BadRequest("Wrong input: prefetch, using and lookup_from are not served by the local stand-in")
        query = body.query
        if isinstance(query, models.NearestQuery):
            query = query.nearest
        if query is None:
            raise BadRequest("Wrong input: a query vector is required")
        if isinstance(query, (int, str)):  # query by point id: its vector
            found = col.shard.retrieve([query], False, True)
            if not found:
                raise NotFound(f"Not found: No point with id {query} found")
            query = found[0].vector
        if not isinstance(query, list):
            raise BadRequest(f"Wrong input: query type {type(query).__name__} is not served by the local stand-in")
        params = body.params
        return edge.QueryRequest(
            limit=body.limit or 10, offset=body.offset, query=edge.Query.Nearest(self._vector(col, query)),
            filter=_filter(body.filter), score_threshold=body.score_threshold,
            with_payload=_with_payload(body.with_payload, False), with_vector=_with_vector(body.with_vector),
            params=None if params is None else edge.SearchParams(hnsw_ef=params.hnsw_ef, exact=bool(params.exact),
                                                                 indexed_only=bool(params.indexed_only)),
        )

    @staticmethod
    def _vector(col: Collection, vector) -> list[float]:
        if not isinstance(vector, list) or (vector and not isinstance(vector[0], (int, float))):
            raise BadRequest("Wrong input: this stand-in serves one unnamed dense vector per point")
        if len(vector) != col.params.size:
            raise BadRequest(f"Wrong input: Vector dimension error: expected dim: {col.params.size}, "
                             f"got {len(vector)}")
        return vector

    @staticmethod
    def _config(spec: models.CreateCollection):
        params = _vector_params(spec)
        hnsw = {**_HNSW_DEFAULT, **(spec.hnsw_config.model_dump(exclude_none=True) if spec.hnsw_config else {})}
        return edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=params.size, distance=_DISTANCES[params.distance.value]),
            hnsw_config=edge.HnswIndexConfig(m=hnsw["m"], ef_construct=hnsw["ef_construct"],
                                             full_scan_threshold=hnsw["full_scan_threshold"]),
        )

    # --- storage and background optimization -------------------------------------------------------------
    def _load(self, folder: Path) -> None:
        try:
            spec = models.CreateCollection.model_validate_json((folder / "collection.json").read_text())
        except (OSError, ValidationError):
            log.warning("skipping %s: no readable collection.json", folder)
            return
        generations = sorted(int(p.name.split("-", 1)[1]) for p in folder.glob("shard-*")
                             if p.name.split("-", 1)[1].isdigit() and (p / "edge_config.json").exists())
        if not generations:
            log.warning("skipping %s: no shard", folder)
            return
        generation = generations[-1]
        for stale in folder.glob("shard-*"):  # older generations and an interrupted optimization's copy
            if stale.name != f"shard-{generation}":
                shutil.rmtree(stale, ignore_errors=True)
        shard = edge.EdgeShard.load(str(folder / f"shard-{generation}"))
        col = Collection(folder, spec, generation, shard)
        col.dirty = col.unindexed() >= self.optimize_min_points
        self.collections[folder.name] = col

    def _optimizer_loop(self) -> None:
        while not self._stop.wait(0.25):
            for col in list(self.collections.values()):
                quiet = time.monotonic() - col.last_write >= OPTIMIZE_QUIET_S
                if col.dirty and quiet and not col.deleted and col.unindexed() >= self.optimize_min_points:
                    try:
                        self._optimize(col)
                    except Exception:  # noqa: BLE001 - keep serving from the live shard; retried after a write
                        log.exception("optimizing %s failed", col.folder.name)
                        col.optimizing = False

    def _optimize(self, col: Collection) -> None:
        """Build the HNSW graph on a copy in a child process, replay writes made meanwhile, swap it in."""
        col.optimizing = True
        target = col.shard_dir(col.generation + 1)
        work = target.with_name(target.name + ".optimizing")  # becomes a generation only once complete
        shutil.rmtree(work, ignore_errors=True)
        with col.write_lock:  # queries go on; writes wait for the flush and copy (about a second at 100k)
            if col.deleted:
                return
            col.shard.flush()
            shutil.copytree(col.shard_dir(col.generation), work)
            col.replay, col.dirty = [], False
        started = time.monotonic()
        done = subprocess.run([sys.executable, __file__, "--optimize", str(work)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            col.replay = None
            shutil.rmtree(work, ignore_errors=True)
            raise RuntimeError(done.stderr[-2000:])
        if col.deleted:
            return
        work.rename(target)
        optimized = edge.EdgeShard.load(str(target))
        with col.write_lock:
            if col.deleted:
                return
            for operation in col.replay or []:
                optimized.update(operation)
            old = col.generation
            col.shard, col.generation, col.replay = optimized, old + 1, None
            col.optimizing = False
        # the old shard object goes with its last reader; its folder only after that
        threading.Timer(5.0, shutil.rmtree, (col.shard_dir(old), True)).start()
        log.info("optimized %s in %.1f s", col.folder.name, time.monotonic() - started)

    def close(self) -> None:
        self._stop.set()
        for col in list(self.collections.values()):
            with col.write_lock:
                if col.shard is not None:
                    col.shard.flush()

    # --- helpers -----------------------------------------------------------------------------------------
    def _get(self, name: str) -> Collection:
        col = self.collections.get(name)
        if col is None or col.shard is None:
            raise NotFound(f"Not found: Collection `{name}` doesn't exist!")
        return col

    @staticmethod
    def _json(req: Request) -> dict:
        try:
            data = json.loads(req.get_data() or b"{}")
        except ValueError:
            raise BadRequest("Format error in JSON body") from None
        if not isinstance(data, dict):
            raise BadRequest("Format error in JSON body: expected an object")
        return data

    @staticmethod
    def _parse(model, data):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise BadRequest(f"Format error in JSON body: {exc.errors(include_url=False)[0]['msg']}") from None

    def _body(self, req: Request, model):
        return self._parse(model, self._json(req))

    # --- WSGI --------------------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        started = time.perf_counter()
        request = Request(environ)
        try:
            endpoint, args = _RULES.bind_to_environ(environ).match()
            result = getattr(self, endpoint)(request, **args)
            if endpoint in ("root", "health"):
                payload, status = result, 200
            else:
                payload, status = {"result": result, "status": "ok", "time": time.perf_counter() - started}, 200
        except BadRequest as exc:
            payload, status = _error(str(exc), started), 400
        except HTTPException as exc:
            payload, status = _error(exc.description or exc.name, started), exc.code or 400
        except (ValueError, TypeError, KeyError) as exc:
            payload, status = _error(f"Wrong input: {exc}", started), 400
        except Exception as exc:  # noqa: BLE001 - the engine raises plain Exception for bad input too
            message = str(exc)
            if "error" in message.lower() and "internal" not in message.lower():
                payload, status = _error(f"Wrong input: {message}", started), 400
            else:
                payload, status = _error(f"Service internal error: {type(exc).__name__}: {exc}", started), 500
        if isinstance(payload, str):
            response = Response(payload, status=status, mimetype="text/plain")
        else:
            response = Response(json.dumps(to_jsonable_python(payload)), status=status,
                                mimetype="application/json")
        return response(environ, start_response)


# --- REST models -> engine objects ------------------------------------------------------------------------

def _filter(flt: models.Filter | None):
    if flt is None:
        return None
    if flt.min_should is not None:
        raise BadRequest("Wrong input: min_should is not served by the local stand-in")
    return edge.Filter(must=_conditions(flt.must), should=_conditions(flt.should),
                       must_not=_conditions(flt.must_not))


def _conditions(conditions) -> list | None:
    if conditions is None:
        return None
    if not isinstance(conditions, list):
        conditions = [conditions]
    return [_condition(c) for c in conditions]


def _condition(cond):
    if isinstance(cond, models.Filter):
        return _filter(cond)
    if isinstance(cond, models.HasIdCondition):
        return edge.HasIdCondition(set(cond.has_id))
    if isinstance(cond, models.IsEmptyCondition):
        return edge.IsEmptyCondition(cond.is_empty.key)
    if isinstance(cond, models.IsNullCondition):
        return edge.IsNullCondition(cond.is_null.key)
    if isinstance(cond, models.NestedCondition):
        return edge.NestedCondition(cond.nested.key, _filter(cond.nested.filter))
    if isinstance(cond, models.FieldCondition):
        if cond.geo_bounding_box or cond.geo_radius or cond.geo_polygon or cond.values_count:
            raise BadRequest("Wrong input: geo and values_count conditions are not served by the local stand-in")
        return edge.FieldCondition(key=cond.key, match=_match(cond.match), range=_range(cond.range),
                                   is_empty=cond.is_empty, is_null=cond.is_null)
    raise BadRequest(f"Wrong input: {type(cond).__name__} is not served by the local stand-in")


def _vector_params(spec: models.CreateCollection) -> models.VectorParams:
    """The collection's one unnamed dense vector: what this stand-in serves."""
    if not isinstance(spec.vectors, models.VectorParams):
        raise BadRequest("Wrong input: this stand-in serves one unnamed dense vector per collection")
    return spec.vectors


def _match(match):
    if match is None:
        return None
    if isinstance(match, models.MatchValue):
        return edge.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return edge.MatchAny(match.any)
    if isinstance(match, models.MatchExcept):
        return edge.MatchExcept(match.except_)
    if isinstance(match, models.MatchText):
        return edge.MatchText(match.text)
    if isinstance(match, models.MatchPhrase):
        return edge.MatchPhrase(match.phrase)
    raise BadRequest(f"Wrong input: {type(match).__name__} is not served by the local stand-in")


def _range(rng):
    if rng is None:
        return None
    if not isinstance(rng, models.Range):
        raise BadRequest("Wrong input: datetime ranges are not served by the local stand-in")
    return edge.RangeFloat(gte=rng.gte, gt=rng.gt, lte=rng.lte, lt=rng.lt)


def _with_payload(value, default: bool):
    if value is None:
        return default
    if isinstance(value, models.PayloadSelectorInclude):
        return edge.PayloadSelector.Include(list(value.include))
    if isinstance(value, models.PayloadSelectorExclude):
        return edge.PayloadSelector.Exclude(list(value.exclude))
    return value  # bool or a list of keys


def _with_vector(value):
    if value is None or value is False:
        return False
    if isinstance(value, list):  # named vectors: this stand-in has only the unnamed one
        return "" in value
    return True


def _record(r) -> models.Record:
    return models.Record(id=_id(r.id), payload=r.payload, vector=r.vector, order_value=r.order_value)


def _scored(p) -> models.ScoredPoint:
    return models.ScoredPoint(id=_id(p.id), version=p.version, score=p.score, payload=p.payload, vector=p.vector)


def _id(pid):
    return pid if isinstance(pid, int) else str(pid)


def _error(message: str, started: float) -> dict:
    return {"status": {"error": message}, "time": time.perf_counter() - started}


def optimize_copy(folder: str) -> None:
    """Child process: build the HNSW graph and merge segments of a shard copy, then flush and exit."""
    shard = edge.EdgeShard.load(folder)
    shard.optimize()
    shard.flush()
    shard.close()


def main() -> None:
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    parser.add_argument("--path", default=":memory:")
    parser.add_argument("--optimize-min-points", type=int, default=OPTIMIZE_MIN_POINTS,
                        help="unindexed points that start a background HNSW build")
    parser.add_argument("--optimize", help=argparse.SUPPRESS)  # the child process's mode
    args = parser.parse_args()
    if args.optimize:
        optimize_copy(args.optimize)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request access log
    app = QdrantStandIn(args.path, args.optimize_min_points)
    server = make_server(args.host, args.port, app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the clean-up (flush, temp folder) on stop
    print(f"qdrant stand-in on http://{args.host}:{args.port} ({args.path})", flush=True)
    try:
        server.serve_forever()
    finally:
        app.close()


if __name__ == "__main__":
    main()
