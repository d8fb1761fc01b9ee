"""Benchmark: a phone photo through the signed-upload path on a fresh local stack, as the frontend does it.

Starts `make run`'s stack in a fresh folder (scripts.localstack.run_local_server, demo catalog included, so the
first upload meets whatever the first start left behind), signs up, then for each run: uploads-create, PUT of
a 12-MP phone JPEG (~7 MB, EXIF rotation + GPS) to the signed URL, and polls uploads-get every 20 ms until the
upload is `ready`. "ready after PUT" is the storage event -> on_upload_finalized -> processing -> Mongo path.

    .venv/bin/python scripts/bench_upload.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from scripts.journey import Journey  # noqa: E402
from scripts.localstack import run_local_server  # noqa: E402
from tests import photos  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    photo = photos.phone_jpeg(4032, 3024, orientation=6)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zipkku-bench-") as tmp, run_local_server(Path(tmp) / "stack") as url:
        stack_up = time.perf_counter() - started
        journey = Journey(url)
        journey.account()
        rows = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            created = journey.call("POST", "uploads-create", 201,
                                   json={"content_type": "image/jpeg", "size_bytes": len(photo)}).json()
            t1 = time.perf_counter()
            requests.put(created["put_url"], data=photo, headers=created["headers"], timeout=60).raise_for_status()
            t2 = time.perf_counter()
            while True:
                upload = journey.call("GET", "uploads-get", 200, params={"id": created["upload"]["id"]}).json()
                if upload["upload"]["status"] != "pending":
                    break
                time.sleep(0.02)
            assert upload["upload"]["status"] == "ready", upload
            rows.append({"create_ms": (t1 - t0) * 1000, "put_ms": (t2 - t1) * 1000,
                         "ready_after_put_ms": (time.perf_counter() - t2) * 1000})
    print(json.dumps({
        "photo_mb": round(len(photo) / 1e6, 1), "stack_start_s": round(stack_up, 1),
        "first_ready_after_put_ms": round(rows[0]["ready_after_put_ms"]),
        "median": {key: round(statistics.median(r[key] for r in rows)) for key in rows[0]},
        "runs": [{key: round(value) for key, value in row.items()} for row in rows],
    }, indent=2))


if __name__ == "__main__":
    main()
