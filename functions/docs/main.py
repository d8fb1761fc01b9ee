"""GET /docs -> the API reference: the OpenAPI document rendered in the browser by Swagger UI.

Swagger UI comes from its pinned npm package (swagger-ui-dist in scripts/web-assets, vendored into static/ at
install and packaged into this function's zip), so the page loads nothing from a CDN, and its
Content-Security-Policy lets the browser load from this origin only (the online validator badge is off). The
page, its files and the document are all answered here, told apart by `?file=`: a relative link that changes only
the query resolves to this function whatever path it is served under (/docs on the dev server, / at its own URL,
/api/docs behind the load balancer).
"""

import hashlib
from pathlib import Path

import flask

from lib import errors
from lib import openapi as spec
from lib.http import cached_json_response, http_function

STATIC = Path(__file__).with_name("static")
FILES = {  # ?file= -> (file under static/, content type)
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui.css", "text/css"),
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Zipkku API reference</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="?file=swagger-ui.css">
</head>
<body>
<div id="docs"></div>
<script src="?file=swagger-ui-bundle.js"></script>
<script src="?file=init.js"></script>
</body>
</html>
"""

# In a file, not inline, so the policy needs no 'unsafe-inline' for scripts.
INIT = """window.ui = SwaggerUIBundle({
  url: "?file=openapi.json", dom_id: "#docs", validatorUrl: null, deepLinking: true,
  defaultModelsExpandDepth: 0, tryItOutEnabled: false,
});
"""

# Swagger UI sets inline styles and shows data: images; everything else comes from this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _cacheable(request: flask.Request, data: bytes, mimetype: str, max_age: int) -> flask.Response:
    response = flask.Response(data, mimetype=mimetype)
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.set_etag(hashlib.sha256(data).hexdigest()[:32])
    return response.make_conditional(request)


@http_function(methods=["GET"])
def docs(request):
    file = request.args.get("file")
    if file is None:
        response = _cacheable(request, PAGE.encode(), "text/html", 300)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response
    if file == "openapi.json":
        doc = spec.document()
        return cached_json_response(request, doc, lambda: doc, max_age=300)
    if file == "init.js":
        return _cacheable(request, INIT.encode(), "text/javascript", 300)
    if file in FILES:
        name, mimetype = FILES[file]
        path = STATIC / name
        if not path.is_file():  # packaging refuses a zip without it; locally `make web-assets` puts it there
            raise errors.DependencyUnavailable("The docs viewer is not installed here (run `make web-assets`).")
        return _cacheable(request, path.read_bytes(), mimetype, 86400)
    raise errors.NotFound(f"No such file; the docs serve the page and ?file= one of openapi.json, init.js, "
                          f"{', '.join(FILES)}.")
