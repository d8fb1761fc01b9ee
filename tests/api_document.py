"""The OpenAPI document as GET /openapi serves it, for tests that read it without a server."""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

from lib import discovery


@cache
def _openapi_function() -> Any:
    source = importlib.util.spec_from_file_location("zipkku_functions.openapi", discovery.function_source("openapi"))
    assert source is not None and source.loader is not None
    module = importlib.util.module_from_spec(source)
    source.loader.exec_module(module)
    return module


def api_document() -> dict[str, Any]:
    """A fresh copy of the document generated from every function's declarations."""
    return _openapi_function().current_document()
