"""GET /openapi -> the OpenAPI 3.1 document describing every HTTP function (cacheable)."""

from lib import openapi as spec
from lib.http import cached_json_response, http_function


@http_function(methods=["GET"])
def openapi(request):
    doc = spec.document()
    return cached_json_response(request, doc, lambda: doc, max_age=300)
