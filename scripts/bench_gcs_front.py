"""Benchmark: what the local Cloud Storage front (scripts/gcs_front.py) costs, side by side in one run.

Starts fake-gcs-server with its front (in memory), then alternates, for each run, the same operation through
the front and straight to the emulator: a signed PUT of a 12-MP phone JPEG (~7 MB; through the front it is
verified: RSA signature, expiry, headers, length range, the if-generation-match check), and a server-side
download of it and an upload of a small (~3 KB) object with google-cloud-storage (the JSON API the front passes
through, as the demo seed and processing use it). Medians in milliseconds.

    .venv/bin/python scripts/bench_gcs_front.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from scripts.localstack import GcsServer  # noqa: E402
from tests import photos  # noqa: E402

BUCKET = "bench-uploads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    photo = photos.phone_jpeg(4032, 3024, orientation=6)
    with tempfile.TemporaryDirectory(prefix="zipkku-bench-") as tmp:
        server = GcsServer([BUCKET], Path(tmp), log_path=Path(tmp) / "gcs.log").start()
        try:
            os.environ.update(server.env())
            from google.cloud import storage as gcs

            from lib import storage

            endpoints = {"front": server.front_url, "direct": server.url}
            clients = {way: gcs.Client(project="bench", client_options={"api_endpoint": url})
                       for way, url in endpoints.items()}
            headers = {"x-goog-content-length-range": f"0,{len(photo)}", "x-goog-if-generation-match": "0"}
            small = photos.image_bytes("JPEG", 96, 96)
            ops = ("put", "download", "small_upload")
            times: dict[str, list[float]] = {f"{op}_{way}": [] for op in ops for way in clients}
            for _ in range(args.runs):
                for way, client in clients.items():
                    blob = client.bucket(BUCKET).blob(f"raw/{uuid.uuid4().hex}")
                    url = storage.v4_signed_url(BUCKET, blob.name, "PUT", 300,
                                                {"Content-Type": "image/jpeg", **headers}, endpoint=endpoints[way])
                    started = time.perf_counter()
                    requests.put(url, data=photo, headers={"Content-Type": "image/jpeg", **headers},
                                 timeout=60).raise_for_status()
                    times[f"put_{way}"].append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    assert len(blob.download_as_bytes()) == len(photo)
                    times[f"download_{way}"].append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    client.bucket(BUCKET).blob(f"small/{uuid.uuid4().hex}").upload_from_string(
                        small, content_type="image/jpeg")
                    times[f"small_upload_{way}"].append((time.perf_counter() - started) * 1000)
        finally:
            server.stop()
    medians = {key: round(statistics.median(values), 1) for key, values in times.items()}
    print(json.dumps({
        "photo_mb": round(len(photo) / 1e6, 1), "runs": args.runs, "median_ms": medians,
        "ratio_front_to_direct": {op: round(medians[f"{op}_front"] / medians[f"{op}_direct"], 2)
                                  for op in ops},
    }, indent=2))


if __name__ == "__main__":
    main()
