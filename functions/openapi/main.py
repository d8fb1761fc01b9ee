"""GET /openapi -> the OpenAPI 3.1 document describing every HTTP function (cacheable).

Generated from the functions' declarations (lib.openapi). A deployed function has only its own folder and lib/,
so scripts/package.py generates the document at build time and ships it as openapi.json beside this file."""

import json
from pathlib import Path

from lib import openapi as spec
from lib.http import cached_json_response, http_function

BUILT = Path(__file__).with_name("openapi.json")


@http_function(methods=["GET"], response=spec.OpenApiDocument, cached=True, offline=True, tags=["meta"],
               summary="This document")
def openapi(request):
    doc = json.loads(BUILT.read_text()) if BUILT.exists() else spec.document()
    return cached_json_response(request, doc, lambda: doc, max_age=300)
