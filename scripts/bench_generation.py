"""Benchmark: time from the generate request to `done` with the local providers, split by stage.

Starts a fresh local stack (scripts.localstack.run_local_server: run_local.py with the demo catalog), creates one
account and upload, then runs N generations one after another for each variant count, over HTTP like the
frontend. For each it records: the 202's latency, request -> done as the client sees it (polling every 50 ms),
and the job's own seconds per stage (generating, detecting, matching, finishing). The remainder of request ->
done is queueing + job process start-up (a fresh Python process loading onnxruntime, as a Cloud Run Job
execution would). Prints a JSON summary with medians.

    .venv/bin/python scripts/bench_generation.py --runs 3 --variants 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.journey import Journey, room_photo  # noqa: E402
from scripts.localstack import run_local_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zipkku-bench-") as tmp, run_local_server(Path(tmp) / "stack") as url:
        journey = Journey(url)
        journey.account()
        upload = journey.upload(room_photo())
        style, room_type = journey.pick_style()
        results = {}
        for variants in args.variants:
            rows = []
            for _ in range(args.runs):
                journey.stages, journey.timings = {}, {}
                interior = journey.generate(upload["id"], style, room_type, variants=variants)
                job = interior.get("timings") or {}
                total = journey.timings["generate_to_done_s"]
                rows.append({"request_s": journey.timings["generate_request_s"], "to_done_s": total, **job,
                             "queue_and_startup_s": round(total - sum(job.values()), 3)})
            keys = rows[0].keys()
            results[f"{variants}_variant(s)"] = {
                "runs": len(rows), "median": {k: round(statistics.median(r[k] for r in rows), 3) for k in keys},
                "all": rows,
            }
        print(json.dumps({"style": style, "room_type": room_type, "photo_px": "960x720", "results": results},
                         indent=2))


if __name__ == "__main__":
    main()
