"""GET /openapi -> the OpenAPI 3.1 document describing every HTTP function (cacheable).

lib.openapi generates it from what each function declares on @http_function. Those declarations live in the
functions themselves, so this function collects them from its sibling folders where they exist (the local
stack, the tests, packaging); a deployed function has only its own folder and lib/, so scripts/package.py
generates the document at build time and ships it as openapi.json beside this file."""

import functools
import importlib.util
import json
import sys
from pathlib import Path

from lib import discovery
from lib import openapi as spec
from lib.http import Contract, cached_json_response, http_function

BUILT = Path(__file__).with_name("openapi.json")


def declared_contracts() -> dict[str, Contract]:
    """function name -> its declared contract, for every HTTP function (CloudEvent ones declare none)."""
    found = {}
    for name in discovery.function_names():
        module_name = f"zipkku_functions.{name}"  # a name of its own: the dev server loads each as `main`
        module = sys.modules.get(module_name)
        if module is None:
            source = importlib.util.spec_from_file_location(module_name, discovery.function_source(name))
            assert source is not None and source.loader is not None
            module = importlib.util.module_from_spec(source)
            sys.modules[module_name] = module
            source.loader.exec_module(module)
        contract = getattr(getattr(module, name), "contract", None)
        if isinstance(contract, Contract):
            found[name] = contract
    return found


@functools.cache
def _document_text() -> str:
    return BUILT.read_text() if BUILT.exists() else json.dumps(spec.document(declared_contracts()))


def current_document() -> dict:
    """The document this function serves (a fresh copy)."""
    return json.loads(_document_text())


@http_function(methods=["GET"], response=spec.OpenApiDocument, cached=True, offline=True, tags=["meta"],
               summary="This document")
def openapi(request):
    doc = current_document()
    return cached_json_response(request, doc, lambda: doc, max_age=300)
