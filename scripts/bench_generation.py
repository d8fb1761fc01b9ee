"""Benchmark: time from the generate request to `done` with the local providers, split by stage.

Starts a fresh local stack (scripts.localstack.run_local_server: run_local.py with the demo catalog), creates one
account, then for each run uploads a photo of its own (the same drawn room, one mark on the wall differs) and
generates on it twice, over HTTP like the frontend: the photo's first generation, and a second one (the next
style a person tries), which reuses the local generator's room analysis of the photo (lib/local/generator.py).
For each it records: the 202's latency, request -> done as the client sees it (polling every 50 ms), and the
job's own seconds per stage (generating, detecting, matching, finishing). The remainder of request -> done is
queueing + job process start-up. Prints a JSON summary with medians, per variant count, of "first" and "again".

By default the local job runner hands each execution to a warm worker (imports and local models loaded ahead;
lib/local/job_worker.py). `--compare-cold` starts a second stack with LOCAL_WARM_JOBS=0 (a fresh Python process
per execution, loading onnxruntime and the models, as a Cloud Run Job execution would) and alternates the runs
between the two, so both sides see the same machine load. `--compare-tree DIR` does the same with a stack run
from another checkout (e.g. `git archive <commit> | tar -x -C DIR`): before and after a change, side by side.

    .venv/bin/python scripts/bench_generation.py --runs 3 --variants 1 2 [--compare-cold] [--compare-tree DIR]
        [--pause 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.journey import Journey, room_photo  # noqa: E402

ROUNDS = ("first", "again")  # the photo's first generation; a second one on the same photo
from scripts.localstack import ROOT, run_local_server  # noqa: E402


def _generate_once(journey: Journey, upload: dict, style: str, room_type: str, variants: int) -> dict:
    journey.stages, journey.timings = {}, {}
    interior = journey.generate(upload["id"], style, room_type, variants=variants)
    job = interior.get("timings") or {}
    total = journey.timings["generate_to_done_s"]
    return {"request_s": journey.timings["generate_request_s"], "to_done_s": total, **job,
            "queue_and_startup_s": round(total - sum(job.values()), 3)}


def _photo(n: int) -> bytes:
    """The journey's drawn room with a small mark of its own on the wall: another photo for every run."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(room_photo())).convert("RGB")
    image.paste((200 + n % 40, 190 + n * 7 % 40, 170 + n * 13 % 40), (40, 40, 56, 56))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _summary(rows: list[dict]) -> dict:
    keys = rows[0].keys()
    return {"runs": len(rows), "median": {k: round(statistics.median(r[k] for r in rows), 3) for k in keys},
            "all": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--compare-cold", action="store_true", help="also a stack with LOCAL_WARM_JOBS=0")
    parser.add_argument("--compare-tree", type=Path, help="also a stack run from the checkout in this folder")
    parser.add_argument("--pause", type=float, default=3.0,
                        help="seconds between generations (a person looks at the result before the next one)")
    args = parser.parse_args()
    # one account makes every generation: the quotas a person has would stop a long run. No generation sweep
    # (every 60 s a fresh process that claims whatever is queued): a beat that lands on a run times the sweep.
    limits = {"GENERATION_QUOTA": "10000", "GENERATIONS_PER_ADDRESS_PER_HOUR": "10000", "LOCAL_SWEEP_SECONDS": "0"}
    sides = {"warm": limits, **({"cold": {**limits, "LOCAL_WARM_JOBS": "0"}} if args.compare_cold else {})}
    roots = {side: ROOT for side in sides}
    if args.compare_tree:
        if not (args.compare_tree / "scripts" / "run_local.py").is_file():
            parser.error(f"{args.compare_tree} is not a checkout of this project (no scripts/run_local.py)")
        sides["other tree"], roots["other tree"] = limits, args.compare_tree.resolve()
    with tempfile.TemporaryDirectory(prefix="zipkku-bench-") as tmp, contextlib.ExitStack() as stack:
        journeys = {}
        for side, env in sides.items():
            url = stack.enter_context(run_local_server(Path(tmp) / side, env=env, root=roots[side]))
            journey = Journey(url)
            journey.account()
            style, room_type = journey.pick_style()
            journeys[side] = (journey, style, room_type)
        results: dict[str, dict] = {}
        photos = 0
        for variants in args.variants:
            rows: dict[tuple[str, str], list[dict]] = {(side, r): [] for side in sides for r in ROUNDS}
            for _ in range(args.runs):
                photos += 1
                for side in sides:  # alternated: both sides see the same load
                    journey, style, room_type = journeys[side]
                    upload = journey.upload(_photo(photos))
                    for name in ROUNDS:
                        time.sleep(args.pause)
                        rows[side, name].append(_generate_once(journey, upload, style, room_type, variants))
            for (side, name), measured in rows.items():
                results[f"{side}: {variants}_variant(s), {name}"] = _summary(measured)
        _, style, room_type = journeys["warm"]
        print(json.dumps({"style": style, "room_type": room_type, "photo_px": "960x720", "results": results},
                         indent=2))


if __name__ == "__main__":
    main()
