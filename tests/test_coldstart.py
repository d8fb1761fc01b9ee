"""Cold starts stay small: loading any function the way Cloud Run does imports no heavy client. Storage, Qdrant,
Pillow, ONNX Runtime, numpy, the Cloud Tasks/Pub/Sub/Run clients and google-cloud-logging load on first use (or
never), inside the request or job that needs them (scripts/bench_coldstart.py measures the time to the first
answer with the same probe)."""

from __future__ import annotations

import pytest

from lib.discovery import function_names, function_source
from scripts.bench_coldstart import loaded_at_start

EXPECTED_AT_START = {"pymongo", "argon2", "jwt"}  # the database driver and, for auth, token and password code


@pytest.mark.parametrize("name", function_names())
def test_loading_a_function_imports_no_heavy_client(name):
    assert set(loaded_at_start(name, str(function_source(name)))) <= EXPECTED_AT_START


# Signing in reads and writes accounts and tokens only: designs, the catalog and the Cloud Storage stack
# (google-auth's transport, requests, urllib3: ~80 ms of CPU) are not on its path.
SIGN_IN = ("auth_signup", "auth_login", "auth_refresh")
NOT_FOR_SIGN_IN = ("lib.interiors", "lib.catalog", "lib.uploads", "lib.storage", "requests", "google.auth")


@pytest.mark.parametrize("name", SIGN_IN)
def test_signing_in_loads_no_design_catalog_or_storage_code(name):
    assert loaded_at_start(name, str(function_source(name)), NOT_FOR_SIGN_IN) == []
