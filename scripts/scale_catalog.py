"""Grow the local stack's demo catalog to N products (`DEMO_CATALOG_SIZE`), quickly, to try it at catalog scale.

Drawing and embedding 100,000 pictures would take hours here; instead, once the demo catalog
(scripts/demo_catalog.py) is seeded, every further product is a variant of one of its products:
- same label, styles, material and picture as its source; brand, name, price (+-15%) and dimensions (+-8%)
  varied deterministically; its product URL is its source's plus the variant's number, so its id
  (lib.catalog_import.product_id) is the same on every run and a re-run overwrites instead of duplicating;
- its vector is its source's stored vector plus small deterministic noise, renormalized (cosine ~0.97 to the
  source): it lives in the local embedder's space, so products-similar and a generation's matching find
  sensible neighbours (its source and siblings first, then the label's other products).
Variants go round-robin over the sources (variant k is number k // S + 1 of source k % S), so a partial catalog
is spread over every label. They are written in batches through the import's document shape (CatalogRow,
lib.catalog.upsert_products) and lib.vectors.upsert_products, the two stores at once; after each batch the
`catalog_meta` marker records how many are written, so a killed seed resumes there and a finished one is
skipped at once. The catalog never shrinks: a smaller size than what was written leaves the extra variants.

    python scripts/scale_catalog.py --size 100000     # grow the running local stack's catalog (needs its env)
    python scripts/scale_catalog.py --measure http://127.0.0.1:8080 --local-dir .local --until-green
        # products-similar p50/p95 on a running `make run` (200 requests), now and once the HNSW index is built
        # (--compare-unindexed: also one filtered vector query on the stand-in and on an unindexed copy)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import demo_catalog  # noqa: E402

VERSION = 1  # bump when variants change, so a scaled catalog is written again
SOURCE = "demo-scale"  # the source name of the variants' ids, and their catalog_meta marker
BATCH = 1000  # variants per checkpoint, and per block of noise (a variant's noise never depends on where a run began)
# One write's size: a Mongo bulk write of about the import's batch (it must finish within MONGODB_TIMEOUT_MS on a
# loaded machine), and Qdrant upserts of 500 points (~1 MB of JSON).
DOCS_PER_WRITE, POINTS_PER_WRITE = 100, 500
NOISE_COSINE = 0.97  # expected cosine between a variant's vector and its source's


@dataclass(frozen=True)
class Source:
    product: demo_catalog.DemoProduct
    image_ref: str
    vector: list[float]


def variant_product(source: demo_catalog.DemoProduct, number: int) -> demo_catalog.DemoProduct:
    """Variant `number` (1, 2, ...) of a demo product: another brand and name, price and size near its own."""
    rng = random.Random(f"zipkku-scale-{source.slug}-{number}")
    brand = rng.choice(demo_catalog.BRANDS)
    name = f"{brand} {rng.choice(demo_catalog.ADJECTIVES)} {source.material} {source.label.replace('-', ' ')}"
    w, d, h = source.dims
    dims = (round(w * rng.uniform(0.92, 1.08), 1), round(d * rng.uniform(0.92, 1.08), 1),
            round(h * rng.uniform(0.92, 1.08), 1) if source.label != "rug" else h)
    price = max(1.0, round(source.price * rng.uniform(0.85, 1.15))) - 0.01
    return replace(source, name=name, brand=brand, dims=dims, price=price)


def variant_record(source: Source, number: int) -> dict:
    record = demo_catalog.catalog_record(variant_product(source.product, number), source.image_ref)
    record["product_url"] = f"{source.product.product_url}-v{number}"
    return record


def noise_block(block: int, dim: int):
    """The noise of variants block*BATCH .. block*BATCH+BATCH-1: unit-free Gaussian, scaled so that the expected
    cosine between a noisy unit vector and the original is NOISE_COSINE."""
    import numpy as np

    sigma = math.sqrt((1 / NOISE_COSINE**2 - 1) / dim)
    return np.random.default_rng((VERSION, block)).standard_normal((BATCH, dim), dtype=np.float32) * sigma


def variant_vectors(sources: list[Source], start: int, stop: int):
    """Unit vectors of variants start..stop-1 (within one noise block)."""
    import numpy as np

    block = start // BATCH
    assert (stop - 1) // BATCH == block, "a batch never crosses a noise block"
    base = np.asarray([sources[k % len(sources)].vector for k in range(start, stop)], dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    noisy = base + noise_block(block, base.shape[1])[start - block * BATCH: stop - block * BATCH]
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def load_sources(per_label: int) -> list[Source]:
    """The seeded demo products with their stored vectors, in the demo generator's order."""
    from lib import catalog_import, storage, vectors
    from lib.config import get_settings

    bucket = get_settings().catalog_bucket
    products = demo_catalog.make_products(per_label)
    ids = [catalog_import.product_id(demo_catalog.SOURCE, p.product_url) for p in products]
    stored = vectors.vectors_by_id(ids)
    missing = [p.slug for p, pid in zip(products, ids, strict=True) if pid not in stored]
    if missing:
        raise RuntimeError(f"{len(missing)} demo products have no vector (e.g. {missing[0]}): seed the demo "
                           "catalog first")
    return [Source(p, storage.ref(bucket, demo_catalog.image_name(p)), stored[pid])
            for p, pid in zip(products, ids, strict=True)]


def _demo_seeded_at():
    """When the demo catalog the variants derive from was seeded (its own catalog_meta marker)."""
    from lib import db

    return (db.collection("catalog_meta").find_one({"_id": demo_catalog.SOURCE}) or {}).get("seeded_at")


def _save_marker(per_label: int, written: int, demo_seeded_at) -> None:
    from lib import db

    db.collection("catalog_meta").replace_one({"_id": SOURCE}, {
        "version": VERSION, "per_label": per_label, "demo_seeded_at": demo_seeded_at, "variants": written,
        "updated_at": db.utcnow()}, upsert=True)


def written_variants(per_label: int, demo_seeded_at) -> int:
    """How many variants a previous run wrote from this very demo catalog (0 when none, or from another one:
    another size per label, or a demo seeded again since) whose vectors are all there."""
    from lib import db, vectors

    marker = db.collection("catalog_meta").find_one({"_id": SOURCE}) or {}
    if (marker.get("version"), marker.get("per_label"), marker.get("demo_seeded_at")) != (
            VERSION, per_label, demo_seeded_at):
        return 0
    written = int(marker.get("variants", 0))
    if written and vectors.count() < per_label * len(demo_catalog.LABELS) + written:
        return 0  # the vector store was emptied since: write them again
    return written


def _in_chunks(write: Callable[[list], object], items: list, size: int) -> None:
    for i in range(0, len(items), size):
        write(items[i:i + size])


def _write_batch(sources: list[Source], start: int, stop: int, pool: ThreadPoolExecutor) -> set[str]:
    """Variants start..stop-1 into Mongo and Qdrant (concurrently: two servers); returns their labels."""
    from lib import catalog, catalog_import, vectors
    from lib.catalog_import import CatalogRow

    docs, points = [], []
    for k, vector in zip(range(start, stop), variant_vectors(sources, start, stop).tolist(), strict=True):
        source = sources[k % len(sources)]
        row = CatalogRow.model_validate(variant_record(source, k // len(sources) + 1))
        pid = catalog_import.product_id(SOURCE, row.product_url)
        doc = catalog_import._product_doc(pid, row, SOURCE, f"{SOURCE}-v{VERSION}", row.image_url)
        docs.append({"_id": pid, **doc})
        points.append((pid, vector, {"label": row.label, "price": doc["price"], **doc["dimensions"]}))
    written = [pool.submit(_in_chunks, catalog.upsert_products, docs, DOCS_PER_WRITE),
               pool.submit(_in_chunks, vectors.upsert_products, points, POINTS_PER_WRITE)]
    for future in written:
        future.result()
    return {d["label"] for d in docs}


def grow(size: int, per_label: int, progress: Callable[[str, int, int], None] | None = None) -> dict | None:
    """Add variants until the catalog holds `size` products (the demo's own included); None when nothing was
    missing. `progress(stage, done, total)` is called per batch ("scale": variants written) and per label
    ("stats": its typical size and vector centroid counted again)."""
    from lib import catalog

    report = progress or (lambda stage, done, total: None)
    demo_count = per_label * len(demo_catalog.LABELS)
    wanted = max(0, size - demo_count)
    demo_seeded_at = _demo_seeded_at()
    done = written_variants(per_label, demo_seeded_at)
    if done >= wanted:
        return None
    started = time.perf_counter()
    resumed_at = done
    sources = load_sources(per_label)
    labels: set[str] = set()
    with ThreadPoolExecutor(max_workers=2) as pool:
        while done < wanted:
            stop = min(wanted, (done // BATCH + 1) * BATCH)
            report("scale", done, wanted)
            labels |= _write_batch(sources, done, stop, pool)
            done = stop
            _save_marker(per_label, done, demo_seeded_at)
    report("scale", done, wanted)
    written = time.perf_counter()
    for n, label in enumerate(sorted(labels)):  # as the import does: the labels' typical sizes and centroids
        report("stats", n, len(labels))
        catalog.refresh_label_stats([label])
    return {"products": demo_count + wanted, "variants_added": wanted - resumed_at, "resumed_at": resumed_at,
            "seconds": {"write": round(written - started, 1),
                        "label_stats": round(time.perf_counter() - written, 1)}}


# --- measuring a running `make run` --------------------------------------------------------------------------

def _stand_in(local_dir: Path) -> tuple[str, int]:
    """(URL, PID) of the local stack's Qdrant stand-in, from <local dir>/pids/."""
    record = json.loads((local_dir / "pids" / "qdrant-stand-in.pid").read_text())
    return f"http://127.0.0.1:{record['argv'][record['argv'].index('--port') + 1]}", record["pid"]


def stand_in_state(local_dir: Path) -> dict:
    """The local stack's Qdrant stand-in: each collection's status, points and indexed vectors, and its memory."""
    import requests

    url, pid = _stand_in(local_dir)
    collections = {}
    for c in requests.get(f"{url}/collections", timeout=10).json()["result"]["collections"]:
        info = requests.get(f"{url}/collections/{c['name']}", timeout=10).json()["result"]
        collections[c["name"]] = {k: info[k] for k in ("status", "points_count", "indexed_vectors_count")}
    memory = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            memory[{"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}[key]] = round(int(value.split()[0]) / 1024)
    return {"collections": collections, **memory}


def measure_similar(base_url: str, count: int) -> dict:
    """products-similar (limit 10) for `count` products spread over the labels, one request each in turn over a
    kept-alive connection, as a browser sends them; ids come from products-search. Milliseconds."""
    import requests

    from scripts.bench_catalog import percentiles

    session = requests.Session()
    labels = list(demo_catalog.LABELS)
    ids_by_label = [[p["id"] for p in session.get(f"{base_url}/products-search", params={
        "label": label, "limit": "100"}, timeout=30).json()["products"]] for label in labels]
    ids = [ids_by_label[i % len(labels)][i // len(labels) % 100] for i in range(count)]
    session.get(f"{base_url}/products-similar", params={"product_id": ids[-1]}, timeout=30)  # warm
    samples, same_label = [], 0
    for i, pid in enumerate(ids):
        started = time.perf_counter()
        response = session.get(f"{base_url}/products-similar", params={"product_id": pid, "limit": 10}, timeout=30)
        samples.append(time.perf_counter() - started)
        response.raise_for_status()
        hits = response.json()["products"]
        same_label += len(hits) == 10 and {h["label"] for h in hits} == {labels[i % len(labels)]}
    return {**percentiles(samples), "ten_of_the_label": f"{same_label}/{count}"}


def compare_unindexed(local_dir: Path, count: int) -> dict:
    """One filtered vector query (as lib.vectors.search_similar sends it: label filter, top 10) on the stack's
    stand-in and on a copy of its collection in a stand-in of our own that never builds the HNSW graph: what
    products-similar meets before the background build has run. Side by side, twice each, in one run."""
    import subprocess

    from qdrant_client import QdrantClient, models

    from lib.vectors import build_filter
    from scripts.bench_catalog import percentiles
    from scripts.localstack import ROOT, free_port, stop_process, wait_for_port

    url, _ = _stand_in(local_dir)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "qdrant_local.py"), "--port", str(port),
                             "--path", ":memory:", "--optimize-min-points", str(10**12)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, proc, 60, "qdrant stand-in (unindexed)")
        built = QdrantClient(url=url, check_compatibility=False, timeout=60)
        plain = QdrantClient(url=f"http://127.0.0.1:{port}", check_compatibility=False, timeout=60)
        name = next(c.name for c in built.get_collections().collections if c.name.startswith("products__"))
        info = built.get_collection(name)
        plain.create_collection(name, vectors_config=info.config.params.vectors)
        plain.create_payload_index(name, "label", models.PayloadSchemaType.KEYWORD)
        queries, offset, started = [], None, time.perf_counter()
        while True:  # copy every point; every 500th is a query (its vector, its label)
            records, offset = built.scroll(name, limit=1000, offset=offset, with_vectors=True, with_payload=True)
            plain.upsert(name, [models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in records])
            queries += [(cast(list[float], r.vector), (r.payload or {})["label"]) for r in records[::500]]
            if offset is None:
                break
        copied_s = time.perf_counter() - started
        queries = (queries * (1 + count // max(1, len(queries))))[:count]
        results: dict = {"copied_points": plain.count(name).count, "copy_s": round(copied_s),
                         "unindexed_copy_indexed_vectors": plain.get_collection(name).indexed_vectors_count}
        found: dict[str, list] = {}
        for run, (label, client) in enumerate([("built", built), ("unindexed", plain)] * 2):
            samples, found[label] = [], []
            for vector, query_label in queries:
                t = time.perf_counter()
                hits = client.query_points(name, query=vector, query_filter=build_filter(query_label), limit=10,
                                           with_payload=False)
                samples.append(time.perf_counter() - t)
                found[label].append({str(h.id) for h in hits.points})
            results[f"{label}_{1 + run // 2}"] = percentiles(samples)
        same = sum(a == b for a, b in zip(found["built"], found["unindexed"], strict=True))
        results["same_top10"] = f"{same}/{len(queries)}"
        return results
    finally:
        stop_process(proc)


def measure(base_url: str, local_dir: Path, count: int, until_green: bool) -> dict:
    """products-similar twice over the same products: right away, and again (with `until_green`, once the
    stand-in's collections are green: no HNSW build pending)."""
    runs: dict[str, dict[str, Any]] = {
        "first": {"stand_in": stand_in_state(local_dir), "products_similar": measure_similar(base_url, count)}}
    started = time.perf_counter()
    while until_green and any(c["status"] != "green" for c in stand_in_state(local_dir)["collections"].values()):
        time.sleep(5)
    runs["second"] = {"waited_for_green_s": round(time.perf_counter() - started),
                      "stand_in": stand_in_state(local_dir), "products_similar": measure_similar(base_url, count)}
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, help="products in all, the demo's own included")
    parser.add_argument("--per-label", type=int, default=90, help="the seeded demo catalog's products per label")
    parser.add_argument("--measure", metavar="URL", help="measure products-similar on a running `make run` instead")
    parser.add_argument("--local-dir", type=Path, default=Path(".local"), help="with --measure: its LOCAL_DIR")
    parser.add_argument("--requests", type=int, default=200, help="with --measure")
    parser.add_argument("--until-green", action="store_true",
                        help="with --measure: measure again once the stand-in's HNSW index is built")
    parser.add_argument("--compare-unindexed", action="store_true",
                        help="with --measure: also the filtered vector query on an unindexed copy of the collection")
    args = parser.parse_args()
    if args.measure:
        results = measure(args.measure.rstrip("/"), args.local_dir, args.requests, args.until_green)
        if args.compare_unindexed:
            results["vector_query_built_vs_unindexed"] = compare_unindexed(args.local_dir, args.requests)
        print(json.dumps(results, indent=2))
    elif args.size:
        print(json.dumps(grow(args.size, args.per_label,
                              progress=lambda stage, done, total: print(f"{done}/{total}", flush=True)), indent=2))
    else:
        parser.error("give --size N (grow) or --measure URL")
