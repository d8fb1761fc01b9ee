"""Catalog import: rows of a catalog file -> products in Mongo + image embeddings in Qdrant, idempotently.

Input: CSV with a header (name, product_url, image_url, width, depth, height, price, label; optional brand,
currency, description, styles as "a|b") or JSON Lines with the same keys (also `.json` holding one array).
The file comes from a gs:// object or a local path; image_url may be gs://, http(s) or a local path (local
paths only for a local catalog file, resolved next to it).

- Every row is validated (`CatalogRow`); a bad row is reported with its line number and skipped, never fatal.
- Product ids are stable: sha256(source name + product_url), so a re-run upserts instead of duplicating;
  vector point ids derive from the product id (lib.vectors.point_id).
- Sharding (Cloud Run Jobs): task i of n handles the rows whose line number % n == i; every task reads the
  file (cheap next to fetching and embedding images), so n tasks cover every row exactly once.
- Work goes in batches: images fetched concurrently, embedded, then one Mongo bulk upsert and one Qdrant
  upsert per batch. Progress is logged per batch; the `imports` document collects counts and errors from all
  shards and turns `done` when the last shard finishes.
- Each finished batch is a checkpoint in the `imports` document (the shard's last line written, its counts,
  errors and labels so far, and the file's sha256): a shard that was killed or crashed and runs again for the
  same import (Cloud Run's task retry, or the job run again with `--import-id`) resumes after the last finished
  batch instead of fetching and embedding those rows again. A changed file or shard count starts over.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from lib import catalog, cloudrun, db, images, outbound, storage, vectors
from lib.config import get_settings
from lib.embed import EmbedError, EmbedUnavailable, get_embedder

log = logging.getLogger("zipkku.import")

IMPORTS = db.declare("imports")
# catalog files already started, so a redelivered storage event starts no second import
PROCESSED_EVENTS = db.declare("processed_events", [
    IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
])
MAX_ERRORS_KEPT = 200
COUNTS = ("rows", "imported", "invalid", "failed")
_LABEL = re.compile(catalog.LABEL_PATTERN)  # the same labels the catalog's queries accept


class CatalogRow(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=300)
    product_url: str = Field(min_length=8, max_length=2000)
    image_url: str = Field(min_length=1, max_length=2000)
    width: float = Field(gt=0, le=2000, description="cm")
    depth: float = Field(gt=0, le=2000, description="cm")
    height: float = Field(gt=0, le=2000, description="cm")
    price: float = Field(ge=0, le=10_000_000)
    label: str
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    brand: str = Field(default="", max_length=120)
    description: str = Field(default="", max_length=4000)
    styles: list[str] = Field(default_factory=list)

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        value = str(value).strip().lower().replace(" ", "-") if value is not None else value
        if not value or not _LABEL.match(value):
            raise ValueError("label must be a short lowercase word such as sofa or tv-stand")
        return value

    @field_validator("product_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("product_url must be an http(s) URL")
        return value

    @field_validator("image_url")
    @classmethod
    def _image_url(cls, value: str) -> str:
        # Products are public and their gs:// images are signed for anyone: a catalog row must not be able to
        # point at another bucket (a user's photo) and publish it.
        catalog_bucket = get_settings().catalog_bucket
        if value.startswith("gs://") and value[len("gs://"):].split("/", 1)[0] != catalog_bucket:
            raise ValueError(f"gs:// images must be in the catalog bucket ({catalog_bucket})")
        return value

    @field_validator("styles", mode="before")
    @classmethod
    def _styles(cls, value: Any) -> Any:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [s.strip().lower() for s in value.split("|") if s.strip()]
        return value

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> Any:
        return str(value).strip().upper() if value not in (None, "") else "EUR"


def product_id(source: str, product_url: str) -> str:
    return hashlib.sha256(f"{source}\n{product_url}".encode()).hexdigest()[:24]


def _first_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        field = ".".join(str(p) for p in err["loc"]) or "row"
        parts.append(f"{field}: {err['msg']}")
    return "; ".join(parts)


# --- reading -----------------------------------------------------------------------------------------------

def read_source(source: str) -> bytes:
    """The catalog file's bytes from gs://bucket/name or a local path."""
    if source.startswith("gs://"):
        return storage.download_bytes(*storage.parse_ref(source))
    return Path(source).read_bytes()


def source_kind(source: str) -> str:
    lower = source.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise ValueError("a catalog file must be .csv, .jsonl, .ndjson or .json")


def source_name(source: str) -> str:
    """The catalog's name for product ids: the file name without extension (re-uploads keep their ids)."""
    return Path(source.split("/")[-1]).stem or "catalog"


def iter_rows(data: bytes, kind: str) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, raw row or None, error or None) for every data row, 1-based as an editor shows them."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        yield 1, None, "the file is not UTF-8 text"
        return
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = {"name", "product_url", "image_url", "width", "depth", "height", "price", "label"} - set(
            (f or "").strip() for f in reader.fieldnames or [])
        if missing:
            yield 1, None, f"the header lacks {', '.join(sorted(missing))}"
            return
        for row in reader:
            line = reader.line_num
            if None in row:
                yield line, None, "more fields than the header"
                continue
            # a short row leaves trailing fields None: treat them as missing ("Field required")
            yield line, {(k or "").strip(): v for k, v in row.items() if v is not None}, None
        return
    stripped = text.lstrip()
    if stripped.startswith("["):  # a .json file holding one array
        try:
            items = json.loads(text)
        except ValueError as exc:
            yield 1, None, f"invalid JSON: {exc}"
            return
        for index, item in enumerate(items, start=1):
            yield (index, item, None) if isinstance(item, dict) else (index, None, "not a JSON object")
        return
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            yield line, None, "invalid JSON"
            continue
        yield (line, item, None) if isinstance(item, dict) else (line, None, "not a JSON object")


# --- images ------------------------------------------------------------------------------------------------

FETCH_THREADS = 8


def fetch_image(url: str, base_dir: Path | None, max_bytes: int) -> bytes:
    """Image bytes from gs://, a public https URL or (for local catalog files) a path next to the file."""
    if url.startswith("gs://"):
        data = storage.download_bytes(*storage.parse_ref(url))
    elif url.startswith(("http://", "https://")):
        settings = get_settings()
        try:  # only public https addresses (lib.outbound); the reason kept is generic, never what answered
            data = outbound.fetch(url, max_bytes=max_bytes, timeout_seconds=settings.import_image_timeout_seconds,
                                  trusted_origins=settings.import_trusted_image_origins)
        except outbound.FetchError as exc:
            raise ValueError(f"the image URL {exc}") from None
    else:
        if base_dir is None:
            raise ValueError("local image paths are only allowed in a local catalog file")
        path = (base_dir / url).resolve()
        if not path.is_relative_to(base_dir.resolve()):
            raise ValueError("local image paths must stay inside the catalog file's folder")
        data = path.read_bytes()
    if len(data) > max_bytes:
        raise ValueError(f"image larger than {max_bytes} bytes")
    return data


# --- the import --------------------------------------------------------------------------------------------

def _product_doc(pid: str, row: CatalogRow, source: str, import_id: str, image_ref: str) -> dict:
    """A product's fields from its row; catalog.upsert_products adds the search fields."""
    return {
        "label": row.label, "name": row.name, "brand": row.brand,
        "price": round(row.price, 2), "currency": row.currency, "product_url": row.product_url,
        "image_urls": [image_ref],
        "dimensions": {"width_cm": row.width, "depth_cm": row.depth, "height_cm": row.height},
        "styles": row.styles, "description": row.description, "source": source, "import_id": import_id,
    }


@dataclass
class _ShardReport:
    """What one shard's import counted so far: {rows, imported, invalid, failed}, the skipped lines' errors and
    the labels it wrote products for."""
    source: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    errors: list[dict[str, Any]] = field(default_factory=list)
    labels_written: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)
    resumed_rows: int = 0  # rows a previous run of this shard had finished (not counted in this run's rate)

    def resume(self, saved: dict[str, Any]) -> None:
        self.counts.update({k: int(saved["counts"].get(k, 0)) for k in COUNTS})
        self.errors = list(saved.get("errors", []))
        self.labels_written = set(saved.get("labels", []))
        self.resumed_rows = self.counts["rows"]

    def state(self) -> dict[str, Any]:
        """What a later run of this shard needs to carry on from here (see `import_records`' checkpoint)."""
        return {"counts": dict(self.counts), "errors": self.errors[:MAX_ERRORS_KEPT],
                "labels": sorted(self.labels_written)}

    def skip(self, line: int, message: str, kind: str) -> None:
        self.counts[kind] += 1
        self.errors.append({"line": line, "error": message})
        log.warning("catalog %s line %d skipped: %s", self.source, line, message)

    def log_progress(self, task_index: int, task_count: int) -> None:
        counts = self.counts
        log.info("catalog %s shard %d/%d: %d rows, %d imported, %d invalid, %d failed (%.1f rows/s)",
                 self.source, task_index, task_count, counts["rows"], counts["imported"], counts["invalid"],
                 counts["failed"], (counts["rows"] - self.resumed_rows) / max(1e-6, time.perf_counter() - self.started))

    def summary(self) -> dict[str, Any]:
        return {**self.counts, "errors": self.errors, "seconds": round(time.perf_counter() - self.started, 3)}


def _shard_rows(records: Iterable[tuple[int, dict | None, str | None]], task_index: int, task_count: int,
                report: _ShardReport, after_line: int = 0) -> Iterator[tuple[int, CatalogRow]]:
    """This shard's valid rows after `after_line` (a resumed run's last finished line); an unreadable or invalid
    one is counted and skipped."""
    for line, raw, error in records:
        if line % task_count != task_index or line <= after_line:
            continue
        report.counts["rows"] += 1
        if error is not None:
            report.skip(line, error, "invalid")
            continue
        try:
            yield line, CatalogRow.model_validate(raw)
        except ValidationError as exc:
            report.skip(line, _first_error(exc), "invalid")


def _batches(rows: Iterator[tuple[int, CatalogRow]], size: int) -> Iterator[list[tuple[int, CatalogRow]]]:
    batch: list[tuple[int, CatalogRow]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fetch_images(batch: list[tuple[int, CatalogRow]], fetch: Callable[[str], bytes],
                  report: _ShardReport) -> list[tuple[int, CatalogRow, bytes]]:
    """The batch's rows with their image bytes (fetched in parallel); a row whose image fails is skipped."""
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        fetched = list(pool.map(lambda item: _safe(fetch, item[1].image_url), batch))
    ready: list[tuple[int, CatalogRow, bytes]] = []
    for (line, row), (data, error) in zip(batch, fetched, strict=True):
        if error or data is None:
            report.skip(line, f"image: {error}", "failed")
        else:
            ready.append((line, row, data))
    return ready


def _embed_images(embedder: Any, ready: list[tuple[int, CatalogRow, bytes]],
                  report: _ShardReport) -> list[list[float] | None]:
    """One vector per row (None for a row whose image the embedder refused, which is counted as failed)."""
    try:
        return list(embedder.embed_images([data for _, _, data in ready]))
    except EmbedUnavailable:
        raise  # no row is to blame: fail the shard (Cloud Run retries it), never report every row failed
    except EmbedError:  # one bad image fails the batch call: embed one by one to find it
        pass
    vectors_out: list[list[float] | None] = []
    for line, _, data in ready:
        try:
            vectors_out.append(embedder.embed_images([data])[0])
        except EmbedUnavailable:
            raise
        except EmbedError as exc:
            report.skip(line, f"image: {exc}", "failed")
            vectors_out.append(None)
    return vectors_out


def _write_products(ready: list[tuple[int, CatalogRow, bytes]], vectors_out: list[list[float] | None], *,
                    source: str, import_id: str, report: _ShardReport) -> None:
    """Upsert the embedded rows as products (Mongo, through lib.catalog) and their vectors (Qdrant)."""
    docs, points = [], []
    for (_line, row, data), vector in zip(ready, vectors_out, strict=True):
        if vector is None:
            continue
        pid = product_id(source, row.product_url)
        image_ref = row.image_url
        if not image_ref.startswith(("gs://", "http://", "https://")):
            image_ref = _store_local_image(source, pid, data)  # clients cannot fetch our local paths
        doc = _product_doc(pid, row, source, import_id, image_ref)
        docs.append({"_id": pid, **doc})
        points.append((pid, vector, {"label": row.label, "price": doc["price"], **doc["dimensions"]}))
        report.labels_written.add(row.label)
    if docs:
        catalog.upsert_products(docs)
        vectors.upsert_products(points)
        report.counts["imported"] += len(docs)


def import_records(
    records: Iterable[tuple[int, dict | None, str | None]],
    *,
    source: str,
    import_id: str,
    task_index: int = 0,
    task_count: int = 1,
    fetch: Callable[[str], bytes] | None = None,
    base_dir: Path | None = None,
    resume: dict[str, Any] | None = None,
    checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Import this shard's rows in batches (fetch images, embed, write); returns {rows, imported, invalid,
    failed, errors[{line, error}], seconds}. After each batch is written, `checkpoint(last line, state)` is
    called; a `resume` holding such a {line, counts, errors, labels} skips the rows up to that line and carries
    their counts on."""
    settings = get_settings()
    embedder = get_embedder()
    vectors.ensure_collection()
    fetch = fetch or (lambda url: fetch_image(url, base_dir, settings.import_max_image_bytes))
    report = _ShardReport(source)
    after_line = 0
    if resume:
        report.resume(resume)
        after_line = int(resume["line"])
        log.info("catalog %s shard %d/%d: resuming after line %d (%d rows done before)", source, task_index,
                 task_count, after_line, report.resumed_rows)
    rows = _shard_rows(records, task_index, task_count, report, after_line)
    for batch in _batches(rows, settings.import_batch_size):
        ready = _fetch_images(batch, fetch, report)
        vectors_out = _embed_images(embedder, ready, report)
        _write_products(ready, vectors_out, source=source, import_id=import_id, report=report)
        if checkpoint is not None:
            checkpoint(batch[-1][0], report.state())
        report.log_progress(task_index, task_count)
    if report.labels_written:
        catalog.refresh_label_stats(report.labels_written)  # the typical sizes AR answers show
    catalog.backfill_search_tokens()  # products written before search_tokens existed become searchable
    return report.summary()


_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic"}


def _store_local_image(source: str, pid: str, data: bytes) -> str:
    # the embedder decoded it, so it is an image, but maybe one sniff() does not name (GIF, BMP)
    content_type = images.sniff(data) or "application/octet-stream"
    bucket = get_settings().catalog_bucket
    name = f"products/{source}/{pid}.{_EXTENSIONS.get(content_type, 'bin')}"
    storage.upload_bytes(bucket, name, data, content_type)
    return storage.ref(bucket, name)


def _safe(fetch: Callable[[str], bytes], url: str) -> tuple[bytes | None, str | None]:
    try:
        return fetch(url), None
    except Exception as exc:  # noqa: BLE001 - any fetch failure only skips that row
        return None, f"{type(exc).__name__}: {exc}"[:300]


def _new_import(source: str, name: str, status: str, now) -> dict[str, Any]:
    """An `imports` document before any shard finished (written by the trigger or by the first shard)."""
    return {"source": source, "name": name, "status": status, "created_at": now, "finished_shards": 0,
            "counts": dict.fromkeys(COUNTS, 0)}


def _resumable(imports, import_id: str, task_index: int, task_count: int, fingerprint: str) -> dict | None:
    """The checkpoint an earlier run of this shard left, if it was for the same file and the same shards."""
    doc = imports.find_one({"_id": import_id}, {f"shards.{task_index}.checkpoint": 1}) or {}
    saved = (doc.get("shards") or {}).get(str(task_index), {}).get("checkpoint")
    if saved and saved.get("sha256") == fingerprint and saved.get("task_count") == task_count:
        return saved
    return None


def run_import(source: str, *, import_id: str, task_index: int = 0, task_count: int = 1,
               name: str | None = None) -> dict[str, Any]:
    """The job's whole run for one shard, recorded in the `imports` document `import_id`."""
    imports = db.collection(IMPORTS)
    now = db.utcnow()
    name = name or source_name(source)
    imports.update_one({"_id": import_id}, {
        "$setOnInsert": _new_import(source, name, "running", now),
        # the running execution knows how many shards it has, whatever the trigger expected when it queued it
        "$set": {"task_count": task_count, "updated_at": now},
    }, upsert=True)
    # a retried shard (Cloud Run retries failed tasks) runs the import again, even after it was marked failed
    imports.update_one({"_id": import_id, "status": {"$in": ["queued", "failed"]}}, {"$set": {"status": "running"}})
    shard = f"shards.{task_index}"
    # only the status: a checkpoint left by an earlier run of this shard stays for it to resume from
    imports.update_one({"_id": import_id, f"{shard}.status": {"$ne": "done"}}, {"$set": {f"{shard}.status": "running"}})
    try:
        kind = source_kind(source)
        data = read_source(source)
        fingerprint = hashlib.sha256(data).hexdigest()
        base_dir = None if source.startswith("gs://") else Path(source).resolve().parent

        def save_checkpoint(line: int, state: dict[str, Any]) -> None:
            imports.update_one({"_id": import_id, f"{shard}.status": "running"}, {"$set": {
                f"{shard}.checkpoint": {"line": line, "sha256": fingerprint, "task_count": task_count, **state},
                "updated_at": db.utcnow()}})

        result = import_records(iter_rows(data, kind), source=name, import_id=import_id, task_index=task_index,
                                task_count=task_count, base_dir=base_dir,
                                resume=_resumable(imports, import_id, task_index, task_count, fingerprint),
                                checkpoint=save_checkpoint)
    except Exception as exc:
        imports.update_one({"_id": import_id}, {"$set": {
            "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:500], "updated_at": db.utcnow(),
            f"{shard}.status": "failed"}})
        raise
    counts = {k: result[k] for k in COUNTS}
    # counted once per shard even if Cloud Run retries a task that had already finished
    doc = imports.find_one_and_update({"_id": import_id, f"shards.{task_index}.status": {"$ne": "done"}}, {
        "$inc": {**{f"counts.{k}": v for k, v in counts.items()}, "finished_shards": 1},
        "$push": {"errors": {"$each": result["errors"][:MAX_ERRORS_KEPT], "$slice": MAX_ERRORS_KEPT}},
        "$set": {f"shards.{task_index}": {"status": "done", **counts, "seconds": result["seconds"]},
                 "updated_at": db.utcnow()},
    }, return_document=ReturnDocument.AFTER)
    if doc and doc.get("finished_shards", 0) >= doc.get("task_count", 1):
        imports.update_one({"_id": import_id}, {"$set": {"status": "done", "finished_at": db.utcnow()},
                                                "$unset": {"reason": ""}})
    elif doc and any(shard.get("status") == "failed" for shard in doc.get("shards", {}).values()):
        imports.update_one({"_id": import_id}, {"$set": {"status": "failed"}})  # another shard's retry reset it
    return result


# --- the trigger -------------------------------------------------------------------------------------------

def handle_catalog_object(obj: dict) -> str:
    """A finalized object in the catalog bucket: start the import job for catalog files under the catalog
    prefix, exactly once per object generation. Returns what happened (for the log); never raises for bad
    input (that would make Eventarc redeliver forever); raises only when the job could not be started, so the
    event is retried."""
    settings = get_settings()
    bucket, name, generation = obj.get("bucket"), obj.get("name"), str(obj.get("generation") or "")
    if not isinstance(bucket, str) or not isinstance(name, str):
        return "ignored: no bucket/name"
    if bucket != settings.catalog_bucket or not name.startswith(settings.catalog_prefix):
        return "ignored: not a catalog file location"
    try:
        source_kind(name)
    except ValueError:
        return "ignored: not a .csv/.jsonl/.json file"
    key = f"{bucket}/{name}#{generation}"
    import_id = "imp-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    now = db.utcnow()
    try:
        db.collection(PROCESSED_EVENTS).insert_one(
            {"_id": f"catalog-import:{key}", "expires_at": now + timedelta(days=7)})
    except DuplicateKeyError:
        return f"duplicate: import {import_id} already started"
    source = f"gs://{bucket}/{name}"
    db.collection(IMPORTS).update_one({"_id": import_id}, {"$setOnInsert": {
        **_new_import(source, source_name(name), "queued", now), "task_count": 1}}, upsert=True)
    try:
        execution = cloudrun.run_job(settings.import_job_name, args=["--source", source, "--import-id", import_id])
    except Exception:
        db.collection(PROCESSED_EVENTS).delete_one({"_id": f"catalog-import:{key}"})  # let the retry start it
        raise
    db.collection(IMPORTS).update_one({"_id": import_id}, {"$set": {"execution": execution}})
    return f"started import {import_id} ({execution})"
