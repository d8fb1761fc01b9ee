"""The catalog import: row validation with line numbers, idempotent re-runs, sharding, sources (local path,
gs://, http images), the job as a real subprocess through lib.cloudrun, and the on_catalog_uploaded trigger."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from lib import catalog_import, cloudrun, db, discovery, storage, vectors
from lib.config import get_settings
from lib.embed import EmbedUnavailable
from lib.local import job_runner
from scripts import demo_catalog
from scripts.localstack import ROOT
from scripts.storage_events import cloud_event_request
from tests.doubles import _Server

HEADER = ["name", "product_url", "image_url", "width", "depth", "height", "price", "label", "brand", "styles"]


@pytest.fixture(autouse=True)
def own_collection(stack, settings_env):
    """A vector collection of its own per test (the Mongo database is fresh per test via conftest)."""
    settings_env(qdrant_collection_prefix=f"timp{uuid.uuid4().hex[:8]}")
    vectors.reset_caches()
    yield
    vectors.client().delete_collection(vectors.collection_name())
    vectors.reset_caches()


def good_rows(count: int, image_prefix: str = "images/") -> list[list]:
    rows = []
    for p in demo_catalog.make_products(count // 2 + 1, ["chair", "lamp"])[:count]:
        rows.append([p.name, p.product_url, f"{image_prefix}{p.slug}.jpg", *p.dims, p.price, p.label, p.brand,
                     "|".join(p.styles)])
    return rows


def write_images(folder, count: int) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for p in demo_catalog.make_products(count // 2 + 1, ["chair", "lamp"])[:count]:
        images[p.slug] = demo_catalog.draw_product(p, size=96)
        (folder / f"{p.slug}.jpg").write_bytes(images[p.slug])
    return images


def write_csv(path, rows) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


@pytest.fixture
def catalog_csv(tmp_path):
    """8 good rows with 6 bad ones mixed in; returns (path, {line: expected error fragment})."""
    write_images(tmp_path / "images", 8)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"this is not a jpeg")
    good = good_rows(8)
    bad = {
        "missing price": [*good[0][:6], "", "chair", "B", ""],
        "negative width": [good[1][0], "https://shop.example.com/neg", good[1][2], "-5", 40, 80, 10, "chair", "", ""],
        "bad label": [good[2][0], "https://shop.example.com/lbl", good[2][2], 40, 40, 80, 10, "Bad Label!", "", ""],
        "bad url": [good[3][0], "ftp://shop.example.com/x", good[3][2], 40, 40, 80, 10, "chair", "", ""],
        "missing image": ["Ghost", "https://shop.example.com/ghost", "images/nope.jpg", 40, 40, 80, 10, "chair", "",
                          ""],
        "broken image": ["Broken", "https://shop.example.com/broken", "images/broken.jpg", 40, 40, 80, 10, "lamp",
                         "", ""],
    }
    rows, expected = [], {}
    bad_items = list(bad.items())
    for i, row in enumerate(good):
        rows.append(row)
        if i < len(bad_items):
            expected[len(rows) + 2] = bad_items[i]  # +1 header, +1 for 1-based lines
            rows.append(bad_items[i][1])
    path = tmp_path / "acme.csv"
    write_csv(path, rows)
    return path, expected


def run(source, **kwargs):
    return catalog_import.run_import(str(source), import_id=kwargs.pop("import_id", db.new_id()), **kwargs)


def test_import_csv_skips_bad_rows_with_line_numbers(catalog_csv):
    path, expected = catalog_csv
    result = run(path)
    assert result["rows"] == 14 and result["imported"] == 8
    assert result["invalid"] == 4 and result["failed"] == 2
    assert {e["line"] for e in result["errors"]} == set(expected)
    by_line = {e["line"]: e["error"] for e in result["errors"]}
    fragments = {"missing price": "price", "negative width": "width", "bad label": "label",
                 "bad url": "product_url", "missing image": "image", "broken image": "image"}
    for line, (kind, _row) in expected.items():
        assert fragments[kind] in by_line[line], (kind, by_line[line])
    products = list(db.collection("products").find({}))
    assert len(products) == 8 and vectors.count() == 8
    sample = products[0]
    assert sample["image_urls"][0].startswith("gs://") and sample["source"] == "acme"
    assert set(sample["dimensions"]) == {"width_cm", "depth_cm", "height_cm"}
    assert storage.download_bytes(*storage.parse_ref(sample["image_urls"][0]))[:2] == b"\xff\xd8"
    bucket, name = storage.parse_ref(sample["image_urls"][0])
    assert name.endswith(".jpg") and storage.bucket(bucket).get_blob(name).content_type == "image/jpeg"


def test_import_twice_creates_no_duplicates(catalog_csv):
    path, _ = catalog_csv
    first = run(path)
    ids = sorted(d["_id"] for d in db.collection("products").find({}, {"_id": 1}))
    created = {d["_id"]: d["created_at"] for d in db.collection("products").find({})}
    second = run(path)
    assert {k: first[k] for k in ("rows", "imported", "invalid", "failed")} == \
        {k: second[k] for k in ("rows", "imported", "invalid", "failed")}
    assert sorted(d["_id"] for d in db.collection("products").find({}, {"_id": 1})) == ids
    assert vectors.count() == 8
    assert {d["_id"]: d["created_at"] for d in db.collection("products").find({})} == created


def test_two_shards_cover_every_row_exactly_once(catalog_csv):
    path, expected = catalog_csv
    import_id = db.new_id()
    a = run(path, import_id=import_id, task_index=0, task_count=2)
    assert db.collection("imports").find_one({"_id": import_id})["status"] == "running"
    b = run(path, import_id=import_id, task_index=1, task_count=2)
    assert a["rows"] + b["rows"] == 14 and a["rows"] and b["rows"]
    assert a["imported"] + b["imported"] == 8
    lines_a, lines_b = {e["line"] for e in a["errors"]}, {e["line"] for e in b["errors"]}
    assert not lines_a & lines_b and lines_a | lines_b == set(expected)
    assert db.collection("products").count_documents({}) == 8 == vectors.count()
    doc = db.collection("imports").find_one({"_id": import_id})
    assert doc["status"] == "done" and doc["finished_shards"] == 2
    assert doc["counts"] == {"rows": 14, "imported": 8, "invalid": 4, "failed": 2}
    assert sorted(e["line"] for e in doc["errors"]) == sorted(expected)
    run(path, import_id=import_id, task_index=1, task_count=2)  # a retried task: upserts, counted once
    retried = db.collection("imports").find_one({"_id": import_id})
    assert retried["counts"] == doc["counts"] and retried["status"] == "done"


def test_a_queued_import_takes_the_task_count_of_the_execution_that_runs_it(catalog_csv):
    """The trigger queues the import expecting one task; if the job runs with two, the import is done only
    when both finished."""
    path, _ = catalog_csv
    import_id = db.new_id()
    db.collection("imports").insert_one({"_id": import_id, "status": "queued", "task_count": 1, "finished_shards": 0,
                                         "counts": dict.fromkeys(catalog_import.COUNTS, 0)})
    run(path, import_id=import_id, task_index=0, task_count=2)
    assert db.collection("imports").find_one({"_id": import_id})["status"] == "running"
    run(path, import_id=import_id, task_index=1, task_count=2)
    doc = db.collection("imports").find_one({"_id": import_id})
    assert doc["status"] == "done" and doc["task_count"] == 2 and doc["counts"]["imported"] == 8


def test_jsonl_from_a_bucket_with_bucket_images():
    bucket = get_settings().catalog_bucket
    lines = []
    for i, p in enumerate(demo_catalog.make_products(2, ["sofa", "bed"])):
        name = f"test-images/{uuid.uuid4().hex}.jpg"
        storage.upload_bytes(bucket, name, demo_catalog.draw_product(p, size=96), "image/jpeg")
        lines.append(json.dumps({"name": p.name, "product_url": p.product_url, "image_url": storage.ref(bucket, name),
                                 "width": p.dims[0], "depth": p.dims[1], "height": p.dims[2], "price": p.price,
                                 "label": p.label, "currency": "usd", "extra_column": i}))
    lines.insert(2, "{not json")
    lines.insert(3, "[1, 2]")
    lines.append("")
    lines.append(json.dumps({"name": "No image", "product_url": "https://x.example.com/1",
                             "image_url": "images/local.jpg", "width": 1, "depth": 1, "height": 1, "price": 1,
                             "label": "sofa"}))
    name = f"uploads-{uuid.uuid4().hex}/vendor.jsonl"
    storage.upload_bytes(bucket, name, "\n".join(lines).encode(), "application/x-ndjson")
    result = run(storage.ref(bucket, name))
    assert result["imported"] == 4 and result["invalid"] == 2 and result["failed"] == 1
    assert {e["line"] for e in result["errors"]} == {3, 4, 8}
    assert "local image paths" in [e for e in result["errors"] if e["line"] == 8][0]["error"]
    assert db.collection("products").find_one({"currency": "USD"}) is not None


class ImageHost(_Server):
    """A product site serving images over http (only on 127.0.0.1); `redirects` maps a path to a Location.
    Records every path it was asked for."""

    def __init__(self, images: dict[str, bytes], redirects: dict[str, str] | None = None) -> None:
        super().__init__()
        self.images, self.redirects = images, redirects or {}
        self.paths: list[str] = []

    def handle(self, method, path, headers, body):
        self.paths.append(path)
        name = path.lstrip("/")
        if name in self.redirects:
            return 302, {"Location": self.redirects[name]}, b""
        if name in self.images:
            return 200, {"Content-Type": "image/jpeg"}, self.images[name]
        if name == "post-only.jpg":
            return 405, {"Allow": "POST"}, {"error": "method not allowed"}
        return 404, {}, {"error": "not found"}


def _web_rows(urls: list[str]) -> list[list]:
    return [[f"Item {i}", f"https://shop.example.com/item-{i}", url, 40, 40, 40, 10, "desk", "", ""]
            for i, url in enumerate(urls)]


def _errors_of(tmp_path, urls: list[str]) -> dict[str, str]:
    """Import one row per URL; {url: the stored error} (every row must fail)."""
    path = tmp_path / f"web-{uuid.uuid4().hex[:6]}.csv"
    write_csv(path, _web_rows(urls))
    result = run(path)
    assert result["imported"] == 0 and result["failed"] == len(urls), result
    return {urls[e["line"] - 2]: e["error"] for e in result["errors"]}


def test_http_images_of_a_trusted_local_server_are_fetched_and_errors_reported(tmp_path, settings_env):
    products = demo_catalog.make_products(2, ["desk"])
    host = ImageHost({f"{p.slug}.jpg": demo_catalog.draw_product(p, size=96) for p in products}).start()
    settings_env(import_trusted_image_origins=host.url)
    try:
        rows = [[p.name, p.product_url, f"{host.url}/{p.slug}.jpg", *p.dims, p.price, p.label, "", ""]
                for p in products]
        rows.append(["Gone", "https://shop.example.com/gone", f"{host.url}/gone.jpg", 1, 1, 1, 1, "desk", "", ""])
        path = tmp_path / "web.csv"
        write_csv(path, rows)
        result = run(path)
    finally:
        host.stop()
    assert result["imported"] == 2 and result["failed"] == 1
    assert result["errors"][0] == {"line": 4, "error": "image: ValueError: the image URL could not be downloaded"}
    doc = db.collection("products").find_one({"label": "desk"})
    assert doc["image_urls"][0].startswith(host.url)  # http images stay where they are


class FailingEmbedder(_Server):
    """The detector service's /embed endpoint during an outage."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def handle(self, method, path, headers, body):
        self.calls += 1
        return 503, {}, {"error": "overloaded"}


def test_an_embedding_service_outage_fails_the_import_instead_of_every_row(catalog_csv, settings_env):
    path, _ = catalog_csv
    service = FailingEmbedder().start()
    settings_env(embedder="http", embedder_url=f"{service.url}/embed")
    import_id = db.new_id()
    try:
        with pytest.raises(EmbedUnavailable):
            run(path, import_id=import_id)
    finally:
        service.stop()
        vectors.client().delete_collection(vectors.collection_name())
    assert service.calls == 1  # the batch call only, not one more per image
    doc = db.collection("imports").find_one({"_id": import_id})
    assert doc["status"] == "failed" and "EmbedUnavailable" in doc["reason"]
    assert db.collection("products").count_documents({}) == 0
    settings_env(embedder="local")  # the service is back: Cloud Run's retry of the task completes the import
    run(path, import_id=import_id)
    doc = db.collection("imports").find_one({"_id": import_id})
    assert doc["status"] == "done" and doc["counts"]["imported"] == 8 and "reason" not in doc


@pytest.mark.parametrize("content,errors", [
    ("name,price\nx,1\n",
     [{"line": 1, "error": "the header lacks depth, height, image_url, label, product_url, width"}]),
    (",".join(HEADER) + "\na,b,c,d,e,f,g,h,i,j,k,l\n", [{"line": 2, "error": "more fields than the header"}]),
])
def test_malformed_csv_files(tmp_path, content, errors):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = run(path)
    assert result["imported"] == 0 and result["errors"] == errors


def test_short_rows_name_the_missing_fields(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text(",".join(HEADER) + "\nJust a name,https://shop.example.com/x\n")
    result = run(path)
    assert result["invalid"] == 1 and result["errors"][0]["line"] == 2
    assert "image_url: Field required" in result["errors"][0]["error"]


def test_non_utf8_file_is_reported(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(",".join(HEADER).encode() + b"\n\xff\xfe\xfa,1\n")
    result = run(path)
    assert result["errors"][0]["error"] == "the file is not UTF-8 text"


# --- the job as a process ----------------------------------------------------------------------------------

def job_env() -> dict[str, str]:
    return {"MONGODB_DB": get_settings().mongodb_db,
            "QDRANT_COLLECTION_PREFIX": get_settings().qdrant_collection_prefix}


def test_job_script_runs_two_shards_through_lib_cloudrun(catalog_csv):
    path, _ = catalog_csv
    import_id = db.new_id()
    execution = cloudrun.run_job("import-catalog", args=["--source", str(path), "--import-id", import_id],
                             env=job_env(), shard_count=2)
    done = job_runner.wait(execution, timeout=120)
    assert done.succeeded, done.log_path.read_text()[-3000:]
    doc = db.collection("imports").find_one({"_id": import_id})
    assert doc["status"] == "done" and doc["counts"]["imported"] == 8 and doc["finished_shards"] == 2
    summaries = [json.loads(line) for line in done.log_path.read_text().splitlines()
                 if line.startswith('{"import_id"')]
    assert sorted(s["task_index"] for s in summaries) == [0, 1]
    assert sum(s["rows"] for s in summaries) == 14
    assert db.collection("products").count_documents({}) == 8 == vectors.count()


def test_job_script_exits_1_on_an_unreadable_source(tmp_path):
    env = {**os.environ, **job_env(), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(discovery.job_script("import-catalog")), "--source",
                          str(tmp_path / "missing.csv")], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert json.loads(out.stdout.strip().splitlines()[-1])["status"] == "failed"
    wrong = subprocess.run([sys.executable, str(discovery.job_script("import-catalog")), "--source",
                            str(tmp_path / "catalog.xlsx")], capture_output=True, text=True, env=env, timeout=60)
    assert wrong.returncode == 1 and "csv" in wrong.stdout


def test_local_jobs_respect_the_concurrency_limit(tmp_path, settings_env):
    settings_env(local_job_concurrency=1)
    missing = ["--source", str(tmp_path / "missing.csv")]
    first, second = cloudrun.run_job("import-catalog", args=missing), cloudrun.run_job("import-catalog", args=missing)
    a, b = job_runner.wait(first, timeout=60), job_runner.wait(second, timeout=60)
    assert a.exit_codes == [1] and b.exit_codes == [1] and not a.succeeded
    assert b.started_at >= a.finished_at or a.started_at >= b.finished_at  # never both at once
    assert "failed" in a.log_path.read_text()


def test_run_job_refuses_unknown_jobs_and_bad_shard_counts():
    with pytest.raises(FileNotFoundError):
        cloudrun.run_job("no-such-job")
    with pytest.raises(ValueError):
        cloudrun.run_job("import-catalog", shard_count=0)


# --- the trigger -------------------------------------------------------------------------------------------

def deliver(fn, obj, event_id=None):
    headers, _ = cloud_event_request({"bucket": "zipkku-catalog", "name": "catalog/x"}, event_id or uuid.uuid4().hex)
    body = json.dumps(obj).encode()  # the object resource as sent, even when malformed
    response = fn("on_catalog_uploaded").post("/", data=body, headers=headers)
    assert response.status_code == 200, response.data
    return response


def test_a_catalog_file_in_the_bucket_starts_the_import_once(fn, tmp_path):
    bucket = get_settings().catalog_bucket
    images = write_images(tmp_path / "i", 3)
    rows = []
    for p in demo_catalog.make_products(2, ["chair", "lamp"])[:3]:
        name = f"test-images/{uuid.uuid4().hex}.jpg"
        storage.upload_bytes(bucket, name, images[p.slug], "image/jpeg")
        rows.append([p.name, p.product_url, storage.ref(bucket, name), *p.dims, p.price, p.label, "", ""])
    path = tmp_path / "drop.csv"
    write_csv(path, rows)
    name = f"{get_settings().catalog_prefix}{uuid.uuid4().hex}/drop.csv"
    generation = storage.upload_bytes(bucket, name, path.read_bytes(), "text/csv")
    obj = {"bucket": bucket, "name": name, "generation": str(generation), "size": "1"}
    deliver(fn, obj)
    deliver(fn, obj)  # redelivered: no second import
    imports = list(db.collection("imports").find({}))
    assert len(imports) == 1 and imports[0]["source"] == f"gs://{bucket}/{name}"
    done = job_runner.wait(imports[0]["execution"], timeout=120)
    assert done.succeeded, done.log_path.read_text()[-3000:]
    doc = db.collection("imports").find_one({"_id": imports[0]["_id"]})
    assert doc["status"] == "done" and doc["counts"]["imported"] == 3
    assert db.collection("products").count_documents({}) == 3


def test_a_job_that_cannot_start_fails_the_event_and_its_redelivery_starts_it(fn, tmp_path, settings_env):
    """handle_catalog_object raises when the job could not be started (so Eventarc retries) and forgets the
    object generation, so the redelivered event starts the import instead of being taken for a duplicate."""
    bucket = get_settings().catalog_bucket
    name = f"{get_settings().catalog_prefix}{uuid.uuid4().hex}/empty.csv"
    generation = storage.upload_bytes(bucket, name, (",".join(HEADER) + "\n").encode(), "text/csv")
    obj = {"bucket": bucket, "name": name, "generation": str(generation)}
    headers, _ = cloud_event_request({"bucket": bucket, "name": name}, uuid.uuid4().hex)
    settings_env(import_job_name="no-such-job")
    failed = fn("on_catalog_uploaded").post("/", data=json.dumps(obj).encode(), headers=headers)
    assert failed.status_code == 500
    settings_env(import_job_name="import-catalog")
    deliver(fn, obj)
    imports = list(db.collection("imports").find({}))
    assert len(imports) == 1 and imports[0].get("execution")
    assert job_runner.wait(imports[0]["execution"], timeout=120).succeeded
    assert db.collection("imports").find_one({"_id": imports[0]["_id"]})["status"] == "done"


@pytest.mark.parametrize("obj", [
    {"bucket": "zipkku-catalog", "name": "demo/products/x.jpg", "generation": "1"},
    {"bucket": "zipkku-uploads", "name": "catalog/x.csv", "generation": "1"},
    {"bucket": "zipkku-catalog", "name": "catalog/readme.txt", "generation": "1"},
    {"bucket": "zipkku-catalog"},
    {"name": 5, "bucket": []},
])
def test_other_objects_are_ignored(fn, obj):
    deliver(fn, obj)
    assert db.collection("imports").count_documents({}) == 0


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b""])
def test_malformed_events_are_acknowledged(fn, data):
    headers, _ = cloud_event_request({"bucket": "zipkku-catalog", "name": "catalog/x.csv"}, "evt-bad")
    response = fn("on_catalog_uploaded").post("/", data=data, headers=headers)
    assert response.status_code == 200
    assert db.collection("imports").count_documents({}) == 0


def test_an_import_stores_each_labels_typical_dimensions(catalog_csv, tmp_path):
    from lib import catalog

    path, _ = catalog_csv
    run(path)
    for label in ("chair", "lamp"):
        stored = db.collection("label_stats").find_one({"_id": label})
        assert stored["dimensions"] == catalog.median_dimensions(label) is not None
    # AR answers read the stored figure; they do not count the products again on every request
    db.collection("products").update_many({"label": "chair"}, {"$set": {"dimensions.width_cm": 999.0}})
    assert catalog.typical_dimensions("chair")["width_cm"] != 999.0
    # the next import of the label (the same shop's file, every chair now 500 cm wide) counts again
    again = tmp_path / "again"
    write_images(again / "images", 8)
    write_csv(again / "acme.csv", [[*row[:3], 500, *row[4:]] for row in good_rows(8) if row[7] == "chair"])
    run(again / "acme.csv")
    assert catalog.typical_dimensions("chair")["width_cm"] == 500.0
    assert catalog.typical_dimensions("lamp") == catalog.median_dimensions("lamp")


def test_a_count_never_overwrites_a_later_one():
    from datetime import timedelta

    from lib import catalog

    db.collection("products").insert_one({"_id": "p1", "label": "desk",
                                          "dimensions": {"width_cm": 120, "depth_cm": 60, "height_cm": 75}})
    later = db.utcnow() + timedelta(minutes=5)  # a shard that started counting after this one
    db.collection("label_stats").insert_one({"_id": "desk", "counted_at": later,
                                             "dimensions": {"width_cm": 1.0, "depth_cm": 1.0, "height_cm": 1.0}})
    catalog.refresh_label_stats(["desk"])
    assert db.collection("label_stats").find_one({"_id": "desk"})["dimensions"]["width_cm"] == 1.0
    db.collection("label_stats").delete_many({})
    assert catalog.typical_dimensions("desk") == {"width_cm": 120.0, "depth_cm": 60.0, "height_cm": 75.0}
    assert db.collection("label_stats").find_one({"_id": "desk"})["dimensions"]["width_cm"] == 120.0


def test_rows_cannot_publish_images_from_outside_the_catalog(tmp_path):
    """Products are public and their gs:// images get signed for anyone, so a catalog row pointing at a user's
    photo (another bucket) or at a file outside the catalog's folder is refused, not published."""
    settings = get_settings()
    photo = f"uploads/{uuid.uuid4().hex}/g1/image.jpg"
    storage.upload_bytes(settings.images_bucket, photo, demo_catalog.draw_product(
        demo_catalog.make_products(1, ["sofa"])[0], size=96), "image/jpeg")
    write_images(tmp_path / "shop" / "images", 2)
    (tmp_path / "outside.jpg").write_bytes((tmp_path / "shop" / "images" / next(
        p.name for p in (tmp_path / "shop" / "images").iterdir())).read_bytes())
    rows = good_rows(2)
    rows[0][2] = storage.ref(settings.images_bucket, photo)
    rows[1][2] = "../outside.jpg"
    write_csv(tmp_path / "shop" / "shop.csv", rows)
    result = run(tmp_path / "shop" / "shop.csv")
    assert result["imported"] == 0 and result["invalid"] == 1 and result["failed"] == 1
    errors = {e["line"]: e["error"] for e in result["errors"]}
    assert "catalog bucket" in errors[2] and "inside the catalog file's folder" in errors[3]
    assert db.collection("products").count_documents({}) == 0


class GatedImageHost(ImageHost):
    """Serves the images, except that a request for `gate` waits until `open` is set: the import is mid-way,
    with every earlier batch written, when that image is asked for."""

    def __init__(self, images: dict[str, bytes], gate: str) -> None:
        super().__init__(images)
        self.gate, self.asked, self.open = gate, threading.Event(), threading.Event()

    def handle(self, method, path, headers, body):
        if path.lstrip("/") == self.gate:
            self.asked.set()
            self.open.wait(120)
        return super().handle(method, path, headers, body)


def test_a_killed_import_resumes_after_its_last_finished_batch(tmp_path):
    """SIGKILL the import job while it waits for an image in its 6th batch; running it again for the same import
    finishes the file without fetching, embedding or writing the 5 batches it had finished."""
    products = demo_catalog.make_products(20, ["chair", "lamp"])[:40]
    host = GatedImageHost({f"{p.slug}.jpg": demo_catalog.draw_product(p, size=64) for p in products},
                          gate=f"{products[25].slug}.jpg").start()
    path = tmp_path / "big.csv"
    write_csv(path, [[p.name, p.product_url, f"{host.url}/{p.slug}.jpg", *p.dims, p.price, p.label, p.brand, ""]
                     for p in products])
    import_id = db.new_id()
    argv = [sys.executable, str(discovery.job_script("import-catalog")), "--source", str(path), "--import-id",
            import_id]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IMPORT_BATCH_SIZE": "5", "IMPORT_TRUSTED_IMAGE_ORIGINS": host.url,
           **job_env()}
    imports = db.collection("imports")
    try:
        job = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert host.asked.wait(120), "the import never reached the 6th batch"
            # lines 2-26 (rows 0-24) are the 5 batches before the gated row's; wait for the 5th checkpoint
            deadline = time.monotonic() + 60
            while (imports.find_one({"_id": import_id}) or {}).get("shards", {}).get("0", {}).get(
                    "checkpoint", {}).get("line") != 26:
                assert time.monotonic() < deadline, imports.find_one({"_id": import_id})
                time.sleep(0.05)
        finally:
            job.kill()  # SIGKILL: no handler runs, as when an instance is lost
            job.communicate(timeout=30)
        first = {d["_id"]: d["updated_at"] for d in db.collection("products").find({}, {"updated_at": 1})}
        assert len(first) == 25 and imports.find_one({"_id": import_id})["status"] == "running"
        host.open.set()
        again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    finally:
        host.open.set()
        host.stop()
    assert again.returncode == 0, again.stdout[-3000:]
    assert "resuming after line 26 (25 rows done before)" in again.stdout
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert (summary["rows"], summary["imported"], summary["failed"]) == (40, 40, 0)
    doc = imports.find_one({"_id": import_id})
    assert doc["status"] == "done" and doc["counts"]["imported"] == 40 and doc["finished_shards"] == 1
    assert "checkpoint" not in doc["shards"]["0"]
    after = {d["_id"]: d["updated_at"] for d in db.collection("products").find({}, {"updated_at": 1})}
    assert len(after) == 40 == vectors.count()
    assert all(after[pid] == written for pid, written in first.items())  # the finished batches were not redone


def test_a_checkpoint_for_another_file_is_not_resumed(catalog_csv):
    path, _ = catalog_csv
    import_id = db.new_id()
    db.collection("imports").insert_one({"_id": import_id, "shards": {"0": {"status": "running", "checkpoint": {
        "line": 999, "sha256": "0" * 64, "task_count": 1, "counts": {"rows": 500, "imported": 500}, "errors": [],
        "labels": []}}}})
    result = run(path, import_id=import_id)
    assert (result["rows"], result["imported"]) == (14, 8)


def test_image_urls_of_non_public_addresses_are_refused_without_being_contacted(tmp_path):
    """A catalog row must not make the import job fetch from our own network: loopback (however written),
    private, link-local (the metadata server), shared and documentation addresses are refused before any
    connection, plain http too, and the listening server on 127.0.0.1 is never asked anything."""
    host = ImageHost({"a.jpg": demo_catalog.draw_product(demo_catalog.make_products(1, ["desk"])[0], size=96)})
    host.start()
    port = host.server.server_address[1]
    try:
        urls = [f"http://127.0.0.1:{port}/a.jpg", f"https://127.0.0.1:{port}/a.jpg", f"https://localhost:{port}/a.jpg",
                f"https://2130706433:{port}/a.jpg", f"https://[::ffff:127.0.0.1]:{port}/a.jpg",
                f"https://0.0.0.0:{port}/a.jpg", f"https://[::1]:{port}/a.jpg",
                "https://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token",
                "https://10.0.0.8/a.jpg", "https://172.16.5.4/a.jpg", "https://192.168.1.1/a.jpg",
                "https://100.64.0.1/a.jpg", "https://192.0.2.10/a.jpg", "https://198.51.100.7/a.jpg",
                "https://[2001:db8::1]/a.jpg", "https://[64:ff9b::7f00:1]/a.jpg", "https://[2002:7f00:1::]/a.jpg",
                "ftp://203.0.113.9/a.jpg"]
        errors = _errors_of(tmp_path, urls)
    finally:
        host.stop()
    assert host.paths == []
    refused = "image: ValueError: the image URL refused: only https URLs of public addresses are fetched"
    assert {url: refused for url in urls if not url.startswith("ftp")} == {
        url: error for url, error in errors.items() if not url.startswith("ftp")}
    assert "local image paths" not in errors["ftp://203.0.113.9/a.jpg"]  # not a path next to the file either


def test_redirects_are_checked_like_the_first_address(tmp_path, settings_env):
    """A trusted local catalog server redirecting to another local port (an internal service) is refused
    without contacting it; a redirect within the trusted server is followed."""
    picture = demo_catalog.draw_product(demo_catalog.make_products(1, ["desk"])[0], size=96)
    internal = ImageHost({"secret.jpg": picture}).start()
    shop = ImageHost({"real.jpg": picture}, redirects={"out.jpg": f"{internal.url}/secret.jpg",
                                                       "moved.jpg": "/real.jpg"}).start()
    settings_env(import_trusted_image_origins=shop.url)
    try:
        path = tmp_path / "redirects.csv"
        write_csv(path, _web_rows([f"{shop.url}/out.jpg", f"{shop.url}/moved.jpg"]))
        result = run(path)
    finally:
        shop.stop()
        internal.stop()
    assert result["imported"] == 1 and result["failed"] == 1
    assert "refused" in result["errors"][0]["error"] and result["errors"][0]["line"] == 2
    assert internal.paths == [] and sorted(shop.paths) == ["/moved.jpg", "/out.jpg", "/real.jpg"]


def test_failures_leave_the_same_generic_reason_whatever_answered(tmp_path, settings_env):
    """A 404, a 405 and a closed port read alike: the stored error cannot map ports or services."""
    from scripts.localstack import free_port

    shop = ImageHost({}).start()
    closed = f"http://127.0.0.1:{free_port()}"
    settings_env(import_trusted_image_origins=f"{shop.url},{closed}")
    try:
        errors = _errors_of(tmp_path, [f"{shop.url}/nothing.jpg", f"{shop.url}/post-only.jpg", f"{closed}/a.jpg"])
    finally:
        shop.stop()
    assert set(errors.values()) == {"image: ValueError: the image URL could not be downloaded"}


class SlowHost:
    """An http server on 127.0.0.1 answering 200 and then sending its body `interval` seconds per byte
    (forever), or, with `length`, a body of `length` bytes at once without a Content-Length (chunked)."""

    def __init__(self, interval: float = 0.0, length: int | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        double = self
        self.stopping = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    if length is not None:
                        data = b"x" * length
                        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
                        return
                    while not double.stopping.wait(interval):
                        self.wfile.write(b"1\r\nx\r\n")
                        self.wfile.flush()
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def test_downloads_are_bounded_in_time_and_size(tmp_path, settings_env):
    import time

    dripping, huge = SlowHost(interval=0.2), SlowHost(length=64 * 1024)
    settings_env(import_trusted_image_origins=f"{dripping.url},{huge.url}", import_image_timeout_seconds=1,
                 import_max_image_bytes=4096)
    try:
        started = time.monotonic()
        errors = _errors_of(tmp_path, [f"{dripping.url}/a.jpg", f"{huge.url}/b.jpg"])
        elapsed = time.monotonic() - started
    finally:
        dripping.stop()
        huge.stop()
    assert errors[f"{dripping.url}/a.jpg"] == "image: ValueError: the image URL could not be downloaded"
    assert errors[f"{huge.url}/b.jpg"] == "image: ValueError: the image URL larger than 4096 bytes"
    assert elapsed < 15  # a 1 s download deadline (forever, before); generous for a loaded machine
