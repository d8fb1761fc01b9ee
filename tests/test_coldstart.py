"""Cold starts stay small: loading any function the way Cloud Run does imports no heavy client. Storage, Qdrant,
Pillow, ONNX Runtime, numpy and the Cloud Tasks/Pub/Sub/Run clients load on first use, inside the request or
job that needs them (scripts/bench_coldstart.py measures the time with the same probe)."""

from __future__ import annotations

import pytest

from scripts.bench_coldstart import measure
from scripts.devserver import FUNCTIONS_DIR, function_names

EXPECTED_AT_START = {"pymongo", "argon2", "jwt"}  # the database driver and, for auth, token and password code


@pytest.mark.parametrize("name", function_names())
def test_loading_a_function_imports_no_heavy_client(name):
    _, loaded = measure(name, str(FUNCTIONS_DIR / name / "main.py"), repeat=1)
    assert set(loaded) <= EXPECTED_AT_START
