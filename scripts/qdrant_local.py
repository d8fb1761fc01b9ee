"""A local stand-in for a Qdrant server: the subset of Qdrant's documented REST API that lib/vectors.py uses,
served on 127.0.0.1 and backed by qdrant-client's local mode (on disk under `.local/qdrant`, or ":memory:").

Why: qdrant-client's local mode locks its folder to ONE client per process, but locally the dev server and the
job subprocesses (import_catalog, generate_interior) must share one store. With this process owning the store,
every other process uses the real `QdrantClient(url=...)` REST code path, exactly as against Qdrant Cloud.

Served (paths as in qdrant_client/http/api/*.py; replies `{"result": ..., "status": "ok", "time": s}`, errors
`{"status": {"error": "..."}, "time": s}` with 400/404 like Qdrant):
  GET  /  /healthz  /readyz                      GET /collections
  GET|PUT|DELETE /collections/{name}             GET /collections/{name}/exists
  PUT  /collections/{name}/index                 PUT /collections/{name}/points            (upsert)
  POST /collections/{name}/points                (retrieve)   POST .../points/delete   .../points/count
  POST .../points/scroll   .../points/query   .../points/query/batch
Bodies are parsed with qdrant_client.http.models, the same models the client serialises.

    python scripts/qdrant_local.py --port 6333 --path .local/qdrant
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time

from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from qdrant_client import QdrantClient
from qdrant_client.http import models
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

VERSION = "1.15.0"  # the API level this stand-in mirrors (qdrant-client 1.20's REST models)

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


class BadRequest(Exception):
    pass


def _completed() -> models.UpdateResult:
    return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)


class QdrantStandIn:
    """WSGI app: route -> parse body with qdrant models -> call the local-mode client under one lock."""

    def __init__(self, path: str) -> None:
        self.db = QdrantClient(location=":memory:") if path == ":memory:" else QdrantClient(path=path)
        self.lock = threading.Lock()  # local mode is not thread-safe; the dev server's threads share it

    # --- endpoints ---------------------------------------------------------------------------------------
    def root(self, _req, **_):
        return {"title": "qdrant - vector search engine (zipkku local stand-in)", "version": VERSION}

    def health(self, _req, **_):
        return "healthz check passed"

    def list_collections(self, _req, **_):
        return self.db.get_collections()

    def get_collection(self, _req, name):
        self._exists(name)
        return self.db.get_collection(name)

    def create_collection(self, req, name):
        body = self._body(req, models.CreateCollection)
        if self.db.collection_exists(name):
            raise BadRequest(f"Wrong input: Collection `{name}` already exists!")
        return self.db.create_collection(name, vectors_config=body.vectors,
                                         sparse_vectors_config=body.sparse_vectors)

    def delete_collection(self, _req, name):
        return self.db.delete_collection(name)

    def exists(self, _req, name):
        return models.CollectionExistence(exists=self.db.collection_exists(name))

    def create_index(self, req, name):
        body = self._body(req, models.CreateFieldIndex)
        self._exists(name)
        self.db.create_payload_index(name, body.field_name, body.field_schema)  # a no-op in local mode
        return _completed()

    def upsert(self, req, name):
        data = self._json(req)
        self._exists(name)
        if "batch" in data:
            points = self._parse(models.PointsBatch, data).batch
        else:
            points = self._parse(models.PointsList, data).points
        self.db.upsert(name, points=points)
        return _completed()

    def retrieve(self, req, name):
        body = self._body(req, models.PointRequest)
        self._exists(name)
        return self.db.retrieve(name, ids=body.ids, with_payload=_default(body.with_payload, True),
                                with_vectors=_default(body.with_vector, False))

    def delete_points(self, req, name):
        data = self._json(req)
        self._exists(name)
        selector = (self._parse(models.PointIdsList, data) if "points" in data
                    else self._parse(models.FilterSelector, data))
        self.db.delete(name, points_selector=selector)
        return _completed()

    def count(self, req, name):
        body = self._body(req, models.CountRequest)
        self._exists(name)
        return self.db.count(name, count_filter=body.filter, exact=_default(body.exact, True))

    def scroll(self, req, name):
        body = self._body(req, models.ScrollRequest)
        self._exists(name)
        points, next_offset = self.db.scroll(
            name, scroll_filter=body.filter, limit=body.limit or 10, offset=body.offset, order_by=body.order_by,
            with_payload=_default(body.with_payload, True), with_vectors=_default(body.with_vector, False),
        )
        return models.ScrollResult(points=points, next_page_offset=next_offset)

    def query(self, req, name):
        body = self._body(req, models.QueryRequest)
        self._exists(name)
        return self._query(name, body)

    def query_batch(self, req, name):
        body = self._body(req, models.QueryRequestBatch)
        self._exists(name)
        return [self._query(name, r) for r in body.searches]

    # --- helpers -----------------------------------------------------------------------------------------
    def _query(self, name: str, body: models.QueryRequest) -> models.QueryResponse:
        return self.db.query_points(
            name, query=body.query, using=body.using, prefetch=body.prefetch, query_filter=body.filter,
            search_params=body.params, limit=body.limit or 10, offset=body.offset,
            with_payload=_default(body.with_payload, False), with_vectors=_default(body.with_vector, False),
            score_threshold=body.score_threshold, lookup_from=body.lookup_from,
        )

    def _exists(self, name: str) -> None:
        if not self.db.collection_exists(name):
            raise NotFound(f"Not found: Collection `{name}` doesn't exist!")

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
            with self.lock:
                result = getattr(self, endpoint)(request, **args)
            if endpoint in ("root", "health"):
                payload, status = result, 200
            else:
                payload, status = {"result": result, "status": "ok", "time": time.perf_counter() - started}, 200
        except BadRequest as exc:
            payload, status = _error(str(exc), started), 400
        except HTTPException as exc:
            payload, status = _error(exc.description or exc.name, started), exc.code or 400
        except (ValueError, KeyError, AssertionError) as exc:  # local mode reports bad requests this way
            payload, status = _error(f"Wrong input: {exc}", started), 400
        except Exception as exc:  # noqa: BLE001 - answer like a server, as JSON, and keep serving
            payload, status = _error(f"Service internal error: {type(exc).__name__}: {exc}", started), 500
        if isinstance(payload, str):
            response = Response(payload, status=status, mimetype="text/plain")
        else:
            response = Response(json.dumps(to_jsonable_python(payload)), status=status,
                                mimetype="application/json")
        return response(environ, start_response)


def _default(value, fallback):
    return fallback if value is None else value


def _error(message: str, started: float) -> dict:
    return {"status": {"error": message}, "time": time.perf_counter() - started}


def main() -> None:
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    parser.add_argument("--path", default=":memory:")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request access log
    server = make_server(args.host, args.port, QdrantStandIn(args.path), threaded=True)
    print(f"qdrant stand-in on http://{args.host}:{args.port} ({args.path})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
