"""One local HTTP server with every function mounted at /<hyphenated-name>.

Functions are discovered by lib.discovery (functions/*/main.py, the folder name is the entry point), so a new
function needs no registration. Each is loaded exactly as Cloud Run loads it, through functions-framework's
create_app, and mounted with werkzeug's DispatcherMiddleware.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib import discovery  # noqa: E402


class _EmptyPathToRoot:
    """`/auth-login` arrives at the mounted app with an empty PATH_INFO, which Flask would 308; make it '/'."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return self.app(environ, start_response)


def _not_found(environ, start_response):
    body = b'{"error":{"code":"NOT_FOUND","message":"No function at this path.","details":[]}}'
    start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def build_app(root: Path = ROOT, names: Iterable[str] | None = None):
    """Every function under `root` (or only `names`) mounted at its URL path; (WSGI app, mounted paths)."""
    import functions_framework
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    mounts = {}
    for name in discovery.function_names(root) if names is None else names:
        app = functions_framework.create_app(target=name, source=str(discovery.function_source(name, root)))
        # Wrapped one by one: DispatcherMiddleware empties PATH_INFO only when it hands over to the mount.
        mounts[discovery.url_path(name)] = _EmptyPathToRoot(app)
    return DispatcherMiddleware(_not_found, mounts), sorted(mounts)


def serve(host: str, port: int) -> None:
    from werkzeug.serving import run_simple

    app, paths = build_app()
    print(f"zipkku dev server on http://{host}:{port} with {len(paths)} functions: {' '.join(paths)}", flush=True)
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    serve(args.host, args.port)
