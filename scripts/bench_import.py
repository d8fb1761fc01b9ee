"""Catalog import at scale: the import job over N rows with cheap embeddings: rows/s, the job's peak memory, and
what a resume after a kill saves.

    .venv/bin/python scripts/bench_import.py [--rows 100000] [--batch 64] [--kill-at 0.5]

It starts SecantusDB and the Qdrant stand-in (in memory), writes a CSV of N products (the demo labels, sizes
and prices), serves one small product picture for every row's http image URL from a local server, and points
`EMBEDDER=http` at a local double of the detector service's /embed endpoint that answers a deterministic
512-d vector per image at once: so the figures are the import's own cost (parse, validate, fetch, the embed
call, the Mongo and Qdrant upserts, the checkpoints), not a model's. The job runs as the real subprocess
(`jobs/import_catalog/main.py`); peak memory is its ru_maxrss. With `--kill-at F` a second import of the same
file is killed (SIGKILL) once a fraction F of the rows is checkpointed, then run again for the same import: the
report shows how many rows the resumed run still had to do and how long it took.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import demo_catalog  # noqa: E402
from scripts.localstack import MongoServer, QdrantServer  # noqa: E402

DIM = 512


def picture() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), (180, 140, 100)).save(out, "JPEG")
    return out.getvalue()


class LocalHttp:
    """A threaded server on 127.0.0.1: GET serves the picture, POST /embed answers like the detector service."""

    def __init__(self, image: bytes) -> None:
        import numpy as np

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, image, "image/jpeg")

            def do_POST(self) -> None:  # noqa: N802
                images = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["images"]
                vectors = []
                for data in images:  # deterministic per picture bytes, like a model
                    seed = int.from_bytes(hashlib.sha256(base64.b64decode(data)).digest()[:8], "big")
                    vectors.append(np.random.default_rng(seed).standard_normal(DIM).round(5).tolist())
                self._send(200, json.dumps({"embeddings": vectors}).encode(), "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_catalog(path: Path, rows: int, image_base: str) -> None:
    labels = list(demo_catalog.LABELS)
    products = demo_catalog.make_products(rows // len(labels) + 1, labels)[:rows]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "product_url", "image_url", "width", "depth", "height", "price", "label"])
        for n, p in enumerate(products):
            writer.writerow([p.name, f"{p.product_url}?n={n}", f"{image_base}/{n}.jpg", *p.dims, p.price, p.label])


def run_job(argv: list[str], env: dict[str, str], kill_when=None) -> tuple[float, int, str]:
    """(seconds, exit code, output) of one job process; `kill_when()` true -> SIGKILL."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            if kill_when is not None and kill_when():
                proc.kill()
                proc.wait()
                break
            time.sleep(0.2)
        out.seek(0)
        return time.perf_counter() - started, proc.returncode, out.read().decode("utf-8", "replace")


def job_summary(code: int, output: str, rows: int) -> dict[str, Any]:
    """The job's summary line; stops the bench unless the job imported every row (a run that refused its rows
    would otherwise report a fast import of nothing)."""
    if code != 0:
        raise SystemExit(output[-3000:])
    summary = json.loads(output.strip().splitlines()[-1])
    if summary["imported"] != rows:
        raise SystemExit(f"the import job imported {summary['imported']} of {rows} rows "
                         f"({summary['invalid']} invalid, {summary['failed']} failed): {summary['errors'][:3]}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--kill-at", type=float, default=0.5, help="0 skips the kill-and-resume run")
    parser.add_argument("--no-full", action="store_true", help="only the killed and the resumed run")
    args = parser.parse_args()
    report: dict = {"rows": args.rows, "batch": args.batch, "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="zipkku-import-") as tmp:
        mongo, qdrant = MongoServer(":memory:").start(), QdrantServer(":memory:").start()
        host = LocalHttp(picture())
        try:
            path = Path(tmp) / "bench.csv"
            write_catalog(path, args.rows, host.url)
            env = {**os.environ, **mongo.env(), **qdrant.env(), "PYTHONPATH": str(ROOT), "MONGODB_DB": "bench",
                   "EMBEDDER": "http", "EMBEDDER_URL": f"{host.url}/embed", "EMBEDDER_DIM": str(DIM),
                   "EMBEDDER_NAME": "bench-cheap", "IMPORT_BATCH_SIZE": str(args.batch), "LOCAL_DIR": tmp,
                   # the picture server is on loopback, which the import refuses unless trusted
                   "IMPORT_TRUSTED_IMAGE_ORIGINS": host.url}
            job = [sys.executable, str(ROOT / "jobs" / "import_catalog" / "main.py"), "--source", str(path)]
            if not args.no_full:
                seconds, code, output = run_job([*job, "--import-id", "full"], env)
                summary = job_summary(code, output, args.rows)
                report["full"] = {"seconds": round(seconds, 1), "rows_per_second": round(args.rows / seconds, 1),
                                  "imported": summary["imported"]}
            if args.kill_at > 0:
                from pymongo import MongoClient
                from pymongo.collection import Collection

                imports: Collection[dict[str, Any]] = MongoClient(mongo.uri)["bench"]["imports"]
                target = args.rows * args.kill_at

                def far_enough() -> bool:
                    doc = imports.find_one({"_id": "resumed"}) or {}
                    done = doc.get("shards", {}).get("0", {}).get("checkpoint", {}).get("counts", {}).get("rows", 0)
                    return done >= target

                killed_after, code, _ = run_job([*job, "--name", "again", "--import-id", "resumed"], env, far_enough)
                killed = imports.find_one({"_id": "resumed"})
                if code != -signal.SIGKILL or killed is None:
                    raise SystemExit(f"the import to kill ended (exit code {code}) before {args.kill_at:.0%} of its "
                                     "rows were checkpointed: use more --rows or a smaller --batch")
                checkpoint = killed["shards"]["0"]["checkpoint"]
                seconds, code, output = run_job([*job, "--name", "again", "--import-id", "resumed"], env)
                summary = job_summary(code, output, args.rows)
                report["kill_and_resume"] = {
                    "killed_after_seconds": round(killed_after, 1), "rows_done_at_kill": checkpoint["counts"]["rows"],
                    "resumed_seconds": round(seconds, 1), "rows_left": args.rows - checkpoint["counts"]["rows"],
                    "resumed_rows_per_second": round((args.rows - checkpoint["counts"]["rows"]) / seconds, 1),
                    "imported_in_total": summary["imported"]}
            report["peak_rss_mib_of_any_job"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        finally:
            host.stop()
            qdrant.stop()
            mongo.stop()
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
