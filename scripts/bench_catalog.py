"""Catalog benchmark on a throwaway local stack (SecantusDB, fake-gcs-server, the Qdrant REST stand-in):

1. seeding the full demo catalog (what the first `make run` does): draw, upload, embed, import;
2. similar-product search over it: the products_similar function end to end (Mongo lookup, vector fetch, one
   filtered vector query, Mongo enrichment, URL signing), the bare filtered vector query, and one batched
   query of 6 parts (what the generation job sends);
3. products_search (label + dimension filters, one page of 20);
4. import throughput: a CSV with local images through the import job, in-process (1 task) and as 2 job
   subprocesses through lib.cloudrun (2 shards).

    .venv/bin/python scripts/bench_catalog.py [--per-label 90] [--requests 200] [--import-rows 240]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.localstack import LocalStack  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 2), "p95_ms": round(pick(0.95) * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2), "n": len(ordered)}


def timed(fn, count: int) -> dict[str, float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-label", type=int, default=90)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--import-rows", type=int, default=240)
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp) / "local", persistent=False) as stack:
        os.environ.update(stack.env)
        os.environ["MONGODB_DB"] = "bench_catalog"
        import functions_framework

        from lib import cloudrun, db, discovery, vectors
        from lib.config import get_settings
        from lib.local import job_runner
        from scripts import demo_catalog

        get_settings.cache_clear()
        db.ensure_all_indexes()

        results["seed"] = demo_catalog.seed(per_label=args.per_label)

        def client(name: str):
            return functions_framework.create_app(name, str(discovery.function_source(name))).test_client()

        ids = [d["_id"] for d in db.collection("products").find({}, {"_id": 1})]
        rng = random.Random(1)
        picks = [rng.choice(ids) for _ in range(args.requests)]
        similar = client("products_similar")
        similar.get("/", query_string={"product_id": picks[0]})  # warm: imports, clients, collection check

        def call_similar(i: int) -> None:
            response = similar.get("/", query_string={"product_id": picks[i], "limit": 10})
            assert response.status_code == 200, response.data

        results["products_similar_function"] = timed(call_similar, args.requests)
        vecs: dict[str, list[float]] = {}
        for pid in picks[:50]:
            vector = vectors.get_vector(pid)
            if vector is None:
                raise SystemExit(f"product {pid} has no vector")
            vecs[pid] = vector
        labels = {d["_id"]: d["label"] for d in db.collection("products").find({"_id": {"$in": list(vecs)}})}
        keys = list(vecs)
        def one_query(i: int) -> None:
            key = keys[i % len(keys)]
            vectors.search_similar(vecs[key], labels[key], None, 10)

        results["vector_query_filtered"] = timed(one_query, args.requests)
        batch = [(vecs[k], labels[k], {"width_cm": 250}) for k in keys[:6]]
        results["vector_query_batch_of_6"] = timed(lambda i: vectors.search_similar_batch(batch, 4),
                                                   args.requests // 2)
        search = client("products_search")

        def call_search(i: int) -> None:
            response = search.get("/", query_string={"label": "sofa", "max_width_cm": 220, "limit": 20})
            assert response.status_code == 200, response.data

        results["products_search_function"] = timed(call_search, args.requests)

        # import throughput: a CSV of local images (files written first, not timed)
        folder = Path(tmp) / "catalog"
        per_label = max(1, args.import_rows // len(demo_catalog.LABELS))
        csv_path = demo_catalog.write_files(folder, per_label)
        rows = per_label * len(demo_catalog.LABELS)
        os.environ["QDRANT_COLLECTION_PREFIX"] = "bench_import"
        os.environ["MONGODB_DB"] = "bench_import"
        get_settings.cache_clear()
        vectors.reset_caches()
        from lib import catalog_import

        started = time.perf_counter()
        one = catalog_import.run_import(str(csv_path), import_id="bench-1")
        seconds = time.perf_counter() - started
        results["import_in_process_1_task"] = {"rows": rows, "imported": one["imported"],
                                               "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1)}
        started = time.perf_counter()
        execution = cloudrun.run_job("import-catalog", args=["--source", str(csv_path), "--import-id", "bench-2"],
                                 shard_count=2)
        done = job_runner.wait(execution, timeout=600)
        seconds = time.perf_counter() - started
        doc = db.collection("imports").find_one({"_id": "bench-2"})
        if doc is None:
            raise SystemExit("the import job left no progress document")
        results["import_job_2_shards_rerun"] = {
            "rows": rows, "imported": doc["counts"]["imported"], "ok": done.succeeded,
            "seconds_incl_process_start": round(seconds, 2), "rows_per_s": round(rows / seconds, 1)}
        results["machine"] = {"cpus": os.cpu_count(), "embedder": get_settings().embedder}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
