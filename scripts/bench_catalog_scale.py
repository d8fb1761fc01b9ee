"""Catalog-scale benchmark: N products (default 100,000) on a throwaway local stack, vectors in the Qdrant
stand-in (Qdrant's engine behind its REST API), documents in SecantusDB.

Vectors are synthetic, 512-d, with label structure (a label centroid, one of 40 sub-clusters per label, and
noise; unit length), spread over the demo catalog's 12 labels as the demo seed spreads them (evenly); documents
are the demo generator's products written the way the import writes them. Nothing is embedded: the collection
is an http embedder's (EMBEDDER=http, 512-d), so products_similar looks up the stored vector as in production.

Measures, all through the real client code paths:
  (a) one filtered vector query (lib.vectors.search_similar: label filter, top 10) over REST,
      recall@10 against exact numpy search over the same label;
  (b) the generation's batch of 6 filtered queries (search_similar_batch: label + max width, top 4), recall@4;
  (c) products-similar end to end through the dev server (HTTP on 127.0.0.1: Mongo lookup, vector fetch, one
      filtered query, Mongo enrichment, URL signing);
  (d) products-search through the dev server, one page of 20, five families of queries: label + max
      dimensions + price range + a word any product may hold (most find nothing for their label), the same
      with a word of the label's own materials (every query finds products), the same with a price below
      the label's cheapest (nothing fits: every candidate of label and word is read), label + dimensions
      + price without a word, and dimensions + price alone;
  (e) products-search's query side by side on the same data in this process: lib.catalog.search_products
      (a page read in _id windows) against the one aggregate per page it replaced, and, for the text
      families, the unanchored $regex on a lower-cased name before that (documents carry `name_lc` for it);
and the stand-in's memory (RSS now, peak), the load and HNSW build times.

    .venv/bin/python scripts/bench_catalog_scale.py [--products 100000] [--requests 300] [--search-only]

--search-only loads the documents alone and measures (d) and (e): ~20 minutes at 100k on a loaded 2-core
machine, most of it the load.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pymongo import monitoring  # noqa: E402

from scripts.bench_catalog import percentiles, timed  # noqa: E402
from scripts.localstack import ROOT, LocalStack, free_port  # noqa: E402

DIM = 512
aggregates_sent = [0]


class AggregateCounter(monitoring.CommandListener):
    """Counts the aggregate commands this process sends: one per _id window of a search."""

    def started(self, event) -> None:
        if event.command_name == "aggregate":
            aggregates_sent[0] += 1

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


def synthetic_vectors(labels: list[str], seed: int = 7):
    """One unit vector per product: label centroid + sub-cluster + noise, so neighbours are meaningful."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = sorted(set(labels))
    centroids = {n: rng.standard_normal(DIM, dtype=np.float32) for n in names}
    subs = {n: rng.standard_normal((40, DIM), dtype=np.float32) for n in names}
    out = np.empty((len(labels), DIM), dtype=np.float32)
    for i, label in enumerate(labels):
        out[i] = centroids[label] + 0.8 * subs[label][rng.integers(40)]
    out += 0.9 * rng.standard_normal(out.shape, dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def rss_mb(pid: int) -> dict[str, float | None]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS"), "peak_rss_mb": fields.get("VmHWM")}


def wait_green(url: str, name: str, timeout: float = 1800) -> dict:
    """Wait for the stand-in's background HNSW build (status yellow -> green), as after a real import."""
    import requests

    started = time.perf_counter()
    while True:
        info = requests.get(f"{url}/collections/{name}", timeout=10).json()["result"]
        if info["status"] == "green":
            return {"seconds": round(time.perf_counter() - started, 1), "points": info["points_count"],
                    "indexed_vectors": info["indexed_vectors_count"], "segments": info["segments_count"]}
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"collection {name} still {info['status']} after {timeout} s")
        time.sleep(1)


def start_dev_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    import requests

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "devserver.py"), "--port", str(port)],
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dev server exited: {proc.communicate()[1][-2000:]}")
        try:
            requests.get(f"{base}/", timeout=5)  # 404 from the dispatcher: the server is up
            return proc, base
        except requests.ConnectionError:
            time.sleep(0.3)
    proc.terminate()
    raise TimeoutError("dev server did not start")


def recall(found: list[list[str]], exact: list[list[str]]) -> float:
    hits = sum(len(set(f) & set(e)) for f, e in zip(found, exact, strict=True))
    return round(hits / max(1, sum(len(e) for e in exact)), 4)


def search_params(products, labels, count: int, kind: str, seed: int = 5) -> list[dict]:
    """A page of 20 for `count` random labels: label + max width/height (the label's typical size, plus a
    margin) + price range + one word. The word is any product's material ("Alva wood chair" -> wood) for
    "any_word", one of the label's own materials for "own_material" and "nothing_fits" (whose price range lies
    below the label's cheapest product); "label_no_word" leaves the word out, "no_label_no_word" the label
    too."""
    from scripts import demo_catalog

    rng = random.Random(seed)
    words = sorted({p.name.split()[-2] for p in products})
    out = []
    for _ in range(count):
        lab = rng.choice(sorted(set(labels)))
        spec = demo_catalog.LABELS[lab]
        w, _d, h = spec["dims"]
        lo, hi = spec["price"]
        word = rng.choice(words if kind == "any_word" else spec["materials"])
        # one decimal: rugs are 1.2 cm high, and a whole centimetre rounded their limit to 1
        params = {"label": lab, "max_width_cm": round(w * 1.1, 1), "max_height_cm": round(h * 1.15, 1),
                  "min_price": lo, "max_price": round((lo + hi) / 2), "q": word, "limit": 20}
        if kind == "nothing_fits":
            params.update(min_price=1, max_price=round(lo * 0.9))
        if kind in ("label_no_word", "no_label_no_word"):
            del params["q"]
        if kind == "no_label_no_word":
            del params["label"]
        out.append(params)
    return out


SEARCH_FAMILIES = ("any_word", "own_material", "nothing_fits", "label_no_word", "no_label_no_word")
TEXT_FAMILIES = ("any_word", "own_material")


def one_aggregate_per_page(catalog, db, params: dict) -> list[dict]:
    """products-search as it was before the _id windows (no cursor here): one aggregate per page, the same two
    $match stages without a window, the price range in the first stage when there is no word."""
    indexed, rest = catalog.search_stages(catalog.SearchQuery(**params))
    indexed.pop("search_version", None)
    if "search_tokens" not in indexed and "price" in rest:
        indexed["price"] = rest.pop("price")  # label_price / price_id
    pipeline = [{"$match": indexed}] + ([{"$match": rest}] if rest else [])
    pipeline += [{"$sort": {"_id": 1}}, {"$limit": params["limit"] + 1}, {"$project": {"search_tokens": 0}}]
    return list(db.collection("products").aggregate(pipeline))[:params["limit"]]


def index_walk(docs: list[dict], searches: list[dict], catalog) -> dict:
    """Keys a MongoDB index walk examines per page: (label, search_tokens, _id) bounds label and the query's
    token and yields ids in page order, so the walk stops at the page's last match (limit + 1 of them). What
    Atlas does; SecantusDB instead fetches every key in the bounds (`bounded_keys`) and sorts them."""
    by_label: dict[str, list[dict]] = {}
    for doc in sorted(docs, key=lambda d: d["_id"]):
        by_label.setdefault(doc["label"], []).append(doc)
    walked, bounded = [], []
    for params in searches:
        token = catalog.query_tokens(params["q"])[0]
        keys = [d for d in by_label[params["label"]] if token in d["search_tokens"]]
        matched = examined = 0
        for examined, doc in enumerate(keys, start=1):  # noqa: B007 - the count is the result
            dims = doc["dimensions"]
            matched += (params["min_price"] <= doc["price"] <= params["max_price"]
                        and dims["width_cm"] <= params["max_width_cm"] and dims["height_cm"] <= params["max_height_cm"])
            if matched > params["limit"]:
                break
        walked.append(examined)
        bounded.append(len(keys))
    pick = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    return {"walked_keys_p50": pick(walked, 0.5), "walked_keys_p95": pick(walked, 0.95),
            "bounded_keys_p50": pick(bounded, 0.5), "bounded_keys_p95": pick(bounded, 0.95)}


def measure_search(args, results: dict, bench_env: dict, products, labels, catalog, db, docs) -> None:
    """(d) through the dev server and (e) the queries before against the one now, in this process."""
    import re

    import requests

    searches = {kind: search_params(products, labels, args.requests, kind) for kind in SEARCH_FAMILIES}
    results["products_search_index_walk"] = {kind: index_walk(docs, searches[kind], catalog) for kind in TEXT_FAMILIES}

    def regex_query(params: dict) -> list[dict]:
        flt = {"label": params["label"], "price": {"$gte": params["min_price"], "$lte": params["max_price"]},
               "dimensions.width_cm": {"$lte": params["max_width_cm"]},
               "dimensions.height_cm": {"$lte": params["max_height_cm"]},
               "name_lc": {"$regex": re.escape(params["q"].lower())}}
        return list(db.collection("products").find(flt).sort("_id", 1).limit(params["limit"]))

    def windows(params: dict) -> list[dict]:
        return catalog.search_products(catalog.SearchQuery(**params))[0]

    def one_aggregate(params: dict) -> list[dict]:
        return one_aggregate_per_page(catalog, db, params)

    def run(query, family: list[dict], n: int, pages: list[list[str]]) -> dict:
        return timed(lambda k: pages.append([d["_id"] for d in query(family[k])]), n)

    def windows_per_page(family: list[dict], n: int) -> dict:
        """How many queries (windows) a page took: each an aggregate command on the wire."""
        counts: list[int] = []
        for params in family[:n]:
            before = aggregates_sent[0]
            windows(params)
            counts.append(aggregates_sent[0] - before)
        counts.sort()
        return {"p50": counts[len(counts) // 2], "p95": counts[min(n - 1, int(0.95 * n))], "max": counts[-1]}

    side_by_side: dict[str, dict[str, Any]] = {}
    for kind, family in searches.items():
        n = min(args.side_by_side_requests, len(family))
        now: list[list[str]] = []
        before: list[list[str]] = []
        regex: list[list[str]] = []
        row: dict[str, Any] = {"one_aggregate_per_page": run(one_aggregate, family, n, before),
                               "id_windows": run(windows, family, n, now)}
        row["ratio_p50"] = round(row["one_aggregate_per_page"]["p50_ms"] / row["id_windows"]["p50_ms"], 1)
        row["ratio_p95"] = round(row["one_aggregate_per_page"]["p95_ms"] / row["id_windows"]["p95_ms"], 1)
        row["same_page_as_one_aggregate"] = f"{sum(a == b for a, b in zip(now, before, strict=True))}/{n}"
        row["mean_results"] = round(sum(map(len, now)) / n, 1)
        row["id_windows_per_page"] = windows_per_page(family, n)
        if kind in TEXT_FAMILIES and args.regex_requests:
            m = min(args.regex_requests, n)
            row["regex_name_lc"] = run(regex_query, family, m, regex)
            # substring vs word start: the same page, except where a material is inside another word
            row["same_page_as_regex"] = f"{sum(a == b for a, b in zip(now, regex, strict=False))}/{m}"
        side_by_side[kind] = row
    results["products_search_query_side_by_side"] = side_by_side

    server, base = start_dev_server(bench_env)
    try:
        session = requests.Session()
        session.get(f"{base}/products-search", params=searches["any_word"][0], timeout=30)  # warm
        for kind, family in searches.items():
            hits: list[int] = []

            def search(k: int, s=family, h=hits) -> None:
                response = session.get(f"{base}/products-search", params=s[k], timeout=60)
                assert response.status_code == 200, response.text
                h.append(len(response.json()["products"]))

            n = min(len(family), args.nothing_fits_requests) if kind == "nothing_fits" else len(family)
            results[f"products_search_dev_server_{kind}"] = {
                **timed(search, n), "mean_results": round(sum(hits) / len(hits), 1), "params_example": family[0]}
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:  # noqa: PLR0915 - one linear script: load, then measure each path
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--search-only", action="store_true", help="documents only; measure (d) and (e)")
    parser.add_argument("--side-by-side-requests", type=int, default=40, help="queries per family in (e)")
    parser.add_argument("--regex-requests", type=int, default=40, help="of those, by the older $regex too (0: none)")
    parser.add_argument("--nothing-fits-requests", type=int, default=60, help="nothing-fits requests in (d)")
    args = parser.parse_args()
    import numpy as np
    import requests

    results: dict[str, Any] = {"products": args.products, "dim": DIM, "machine_cpus": os.cpu_count(),
                                  "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp) / "local", persistent=False) as stack:
        bench_env = {**stack.env, "MONGODB_DB": "bench_scale", "EMBEDDER": "http",
                     "EMBEDDER_NAME": "bench-synthetic", "EMBEDDER_DIM": str(DIM),
                     "QDRANT_COLLECTION_PREFIX": "scale", "CATALOG_CACHE_SECONDS": "0",
                     # batches of 5,000 inserts, and the queries measured before, take longer than a request may
                     "MONGODB_TIMEOUT_MS": "300000"}
        os.environ.update(bench_env)
        monitoring.register(AggregateCounter())  # before lib.db creates its client
        from lib import catalog, catalog_import, db, vectors
        from lib.catalog_import import CatalogRow
        from lib.config import get_settings
        from scripts import demo_catalog

        get_settings.cache_clear()
        vectors.reset_caches()
        db.ensure_all_indexes()
        qdrant = next(c for c in stack.components if c.name == "Qdrant stand-in")

        # --- load: documents as the import writes them, vectors through the client -------------------------
        per_label = -(-args.products // len(demo_catalog.LABELS))
        products = demo_catalog.make_products(per_label)[: args.products]
        labels = [p.label for p in products]
        matrix = synthetic_vectors(labels)
        bucket = get_settings().catalog_bucket
        started = time.perf_counter()
        docs, points, ids = [], [], []
        now = db.utcnow()
        for p in products:
            row = CatalogRow(name=p.name, product_url=p.product_url, image_url=f"gs://{bucket}/bench/{p.slug}.jpg",
                             width=p.dims[0], depth=p.dims[1], height=p.dims[2], price=p.price, label=p.label,
                             brand=p.brand, styles=p.styles, description=f"{p.material} {p.label}")
            pid = catalog_import.product_id("bench", row.product_url)
            doc = catalog_import._product_doc(pid, row, "bench", "bench-scale", row.image_url)
            docs.append({"_id": pid, **doc, **catalog.searchable(doc), "name_lc": row.name.lower(),
                         "created_at": now, "updated_at": now})
            ids.append(pid)
        for i in range(0, len(docs), 5000):
            db.collection("products").insert_many(docs[i:i + 5000], ordered=False)
        mongo_s = time.perf_counter() - started
        results["load"] = {"mongo_insert_s": round(mongo_s, 1)}
        if args.search_only:
            measure_search(args, results, bench_env, products, labels, catalog, db, docs)
            results["load_average_at_end"] = os.getloadavg()[0]
            print(json.dumps(results, indent=2))
            return
        started = time.perf_counter()
        for i in range(0, len(docs), 500):
            points = [(ids[j], matrix[j].tolist(), {"label": docs[j]["label"], "price": docs[j]["price"],
                                                    **docs[j]["dimensions"]})
                      for j in range(i, min(len(docs), i + 500))]
            vectors.upsert_products(points)
        upsert_s = time.perf_counter() - started
        name = vectors.collection_name()
        build = wait_green(qdrant.url, name)
        results["load"] = {**results["load"], "vector_upsert_s": round(upsert_s, 1),
                           "vector_upsert_points_per_s": round(len(ids) / upsert_s),
                           "hnsw_build_after_upserts": build}
        results["stand_in_memory"] = rss_mb(qdrant.proc.pid)

        # --- exact answers: numpy over the same filter ------------------------------------------------------
        rng = random.Random(3)
        label_arr = np.array(labels)
        width = np.array([d["dimensions"]["width_cm"] for d in docs], dtype=np.float32)
        picks = [rng.randrange(len(ids)) for _ in range(args.requests)]

        def exact(i: int, limit: int, max_width: float | None = None) -> list[str]:
            mask = label_arr == labels[i]
            if max_width is not None:
                mask &= width <= max_width
            candidates = np.flatnonzero(mask)
            scores = matrix[candidates] @ matrix[i]
            top = candidates[np.argsort(-scores, kind="stable")[:limit]]
            return [ids[j] for j in top]

        # (a) one filtered query
        found: list[list[str]] = []

        def one_query(k: int) -> None:
            i = picks[k]
            found.append([pid for pid, _ in vectors.search_similar(matrix[i].tolist(), labels[i], None, 10)])

        vectors.search_similar(matrix[0].tolist(), labels[0], None, 10)  # warm: client, collection check
        # This process holds the whole catalog (documents, vectors) to compute exact answers; a function process
        # does not. Freezing it keeps the collector's passes over the bench's own heap out of the timings.
        gc.collect()
        gc.freeze()
        results["vector_query_filtered"] = {**timed(one_query, args.requests),
                                            "recall_at_10": recall(found, [exact(i, 10) for i in picks])}

        # the same queries as raw REST calls: the stand-in's own "time" field separates the engine from HTTP
        # and client overhead (which a loaded machine inflates most)
        raw = requests.Session()
        server_times = []
        for i in picks:
            body = {"query": matrix[i].tolist(), "limit": 10, "with_payload": ["product_id"],
                    "filter": {"must": [{"key": "label", "match": {"value": labels[i]}}]}}
            reply = raw.post(f"{qdrant.url}/collections/{name}/points/query", json=body, timeout=30).json()
            server_times.append(reply["time"])
        results["vector_query_filtered"]["stand_in_time"] = percentiles(server_times)

        # (b) the generation's batch: 6 parts of different labels, each within a maximum width
        by_label: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            by_label.setdefault(label, []).append(i)
        batches = [[rng.choice(by_label[lab]) for lab in rng.sample(sorted(by_label), 6)]
                   for _ in range(args.requests // 2)]
        found_b: list[list[str]] = []
        exact_b: list[list[str]] = []

        def batch_query(k: int) -> None:
            queries = [(matrix[i].tolist(), labels[i], {"width_cm": float(width[i]) * 1.1}) for i in batches[k]]
            found_b.extend([[pid for pid, _ in hits] for hits in vectors.search_similar_batch(queries, 4)])

        results["vector_query_batch_of_6"] = timed(batch_query, len(batches))
        for batch in batches:
            exact_b.extend(exact(i, 4, float(width[i]) * 1.1) for i in batch)
        results["vector_query_batch_of_6"]["recall_at_4"] = recall(found_b, exact_b)

        # (c, d) through the dev server, over HTTP on loopback
        server, base = start_dev_server(bench_env)
        try:
            session = requests.Session()
            session.get(f"{base}/products-similar", params={"product_id": ids[0]}, timeout=30)  # warm

            def similar(k: int) -> None:
                response = session.get(f"{base}/products-similar",
                                       params={"product_id": ids[picks[k]], "limit": "10"}, timeout=30)
                assert response.status_code == 200, response.text
                assert len(response.json()["products"]) == 10

            results["products_similar_dev_server"] = timed(similar, args.requests)
        finally:
            server.terminate()
            server.wait(10)
        results["stand_in_memory_after_queries"] = rss_mb(qdrant.proc.pid)
        measure_search(args, results, bench_env, products, labels, catalog, db, docs)
    results["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
