"""One local HTTP server with every function mounted at /<hyphenated-name>.

Functions are discovered by lib.discovery (functions/*/main.py, the folder name is the entry point), so a new
function needs no registration. Each is loaded exactly as Cloud Run loads it, through functions-framework's
create_app, and mounted with werkzeug's DispatcherMiddleware. `/` is a small index linking the API reference
(/docs) and the playground.

The playground (scripts/playground/, a local developer tool, never deployed) is served by `playground_app` on a
port of its own, so its page origin differs from the API's and every call it makes is a CORS request, as the
real frontend's are. Its config.json tells it where the API is.

Logs: in a terminal one readable line per record (`HH:MM:SS LEVEL logger: message`), elsewhere (files, CI) the
same Cloud Logging JSON as production; LOCAL_LOG_FORMAT=text|json chooses. Both are redacted by lib.log's filter.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from wsgiref.types import WSGIApplication

ROOT = Path(__file__).resolve().parent.parent
PLAYGROUND = ROOT / "scripts" / "playground"
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


class _AppendPeerToForwardedFor:
    """What Google's front end does before a request reaches a function: append the address the connection
    came from to X-Forwarded-For, so lib.http.client_address sees the same header shape locally as deployed
    (and a client's own X-Forwarded-For entries never become its address)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR") or "unknown"
        sent = environ.get("HTTP_X_FORWARDED_FOR", "").strip()
        environ["HTTP_X_FORWARDED_FOR"] = f"{sent}, {peer}" if sent else peer
        return self.app(environ, start_response)


def _not_found(environ, start_response):
    body = b'{"error":{"code":"NOT_FOUND","message":"No function at this path.","details":[]}}'
    start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _index_page(playground_url: str | None) -> bytes:
    playground = (f'<li><a href="{html.escape(playground_url)}">Playground</a>: the whole journey from a browser '
                  f'(sign up, upload, generate, products, 3D models, library)</li>' if playground_url else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Zipkku local API</title></head>
<body style="font: 16px system-ui, sans-serif; margin: 2rem">
<h1>Zipkku local API</h1>
<ul>
<li><a href="/docs">API reference</a> (/docs)</li>
<li><a href="/openapi">OpenAPI document</a> (/openapi, JSON)</li>
{playground}
</ul>
<p>Every function is served at /&lt;name-with-hyphens&gt;, e.g. <code>POST /auth-login</code>.</p>
</body></html>
""".encode()


def _fallback(playground_url: str | None):
    """What no function answers: the index at `/`, a JSON 404 elsewhere."""
    page = _index_page(playground_url)

    def app(environ, start_response):
        if environ.get("PATH_INFO") in ("", "/") and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                      ("Content-Length", str(len(page)))])
            return [page]
        return _not_found(environ, start_response)

    return app


def build_app(root: Path = ROOT, names: Iterable[str] | None = None, playground_url: str | None = None):
    """Every function under `root` (or only `names`) mounted at its URL path; (WSGI app, mounted paths)."""
    import functions_framework
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    mounts: dict[str, WSGIApplication] = {}
    for name in discovery.function_names(root) if names is None else names:
        app = functions_framework.create_app(target=name, source=str(discovery.function_source(name, root)))
        # Wrapped one by one: DispatcherMiddleware empties PATH_INFO only when it hands over to the mount.
        mounts[discovery.url_path(name)] = _EmptyPathToRoot(app)
    return _AppendPeerToForwardedFor(DispatcherMiddleware(_fallback(playground_url), mounts)), sorted(mounts)


def playground_app(api_url: str):
    """scripts/playground/ as static files, plus /config.json naming the API's base URL."""
    from werkzeug.middleware.shared_data import SharedDataMiddleware

    config = json.dumps({"api": api_url}).encode()

    def config_or_404(environ, start_response):
        if environ.get("PATH_INFO") == "/config.json":
            start_response("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                                      ("Content-Length", str(len(config)))])
            return [config]
        if environ.get("PATH_INFO") in ("", "/"):
            environ["PATH_INFO"] = "/index.html"
            return static(environ, start_response)
        return _not_found(environ, start_response)

    # cache_timeout=0 + ETags: an edited page is picked up on reload.
    static = SharedDataMiddleware(config_or_404, {"/": str(PLAYGROUND)}, cache_timeout=0)
    return static


class PlaygroundServer:
    """The playground on 127.0.0.1:`port` (0: any free port) in a thread of this process. Bound at creation, so
    its origin is known (and can be allowed by CORS) before anything else starts."""

    def __init__(self, port: int, api_url: str) -> None:
        import socket

        from werkzeug.serving import make_server

        # Bound here, so a port in use is an OSError to handle (werkzeug's own bind would print and exit).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
            self.server = make_server("127.0.0.1", port, playground_app(api_url), threaded=True, fd=sock.fileno(),
                                      request_handler=_request_handler())
        finally:
            sock.close()  # the server holds its own duplicate of the socket
        self.thread = threading.Thread(target=self.server.serve_forever, name="playground", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"

    def start(self) -> PlaygroundServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits for serve_forever, so only once that runs
            self.server.shutdown()
            self.thread.join(timeout=10)
        self.server.server_close()


def configure_logging(fmt: str | None = None) -> str:
    """Route this process's logs (see the module doc); returns the format chosen."""
    from lib import log

    fmt = fmt or os.environ.get("LOCAL_LOG_FORMAT") or ("text" if sys.stdout.isatty() else "json")
    log.setup_logging()  # the JSON handler every function installs; replaced below for a terminal
    if fmt == "text":
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, log.StructuredJsonHandler):
                root.removeHandler(handler)
        handler = logging.StreamHandler(sys.stdout)
        handler.addFilter(log.RedactingFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    return fmt


def _request_handler():
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.urls import uri_to_iri

    class RequestLog(WSGIRequestHandler):
        """One line per request, `GET /path -> 200 (12 ms)`: werkzeug's own line carries ANSI colour codes
        (escaped into noise inside JSON) and a second timestamp."""

        def handle_one_request(self) -> None:
            self._started = time.monotonic()
            super().handle_one_request()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            try:
                line = f"{self.command} {uri_to_iri(self.path)}"
            except AttributeError:  # no path: the request line was bad
                line = self.requestline
            line = line.translate(self._control_char_table)
            took = (time.monotonic() - getattr(self, "_started", time.monotonic())) * 1000
            logging.getLogger("werkzeug").info("%s -> %s (%.0f ms)", line, code, took)

    return RequestLog


def serve(host: str, port: int, playground_url: str | None = None) -> None:
    """Serve every function until interrupted (KeyboardInterrupt returns)."""
    from werkzeug.serving import make_server

    app, paths = build_app(playground_url=playground_url)
    server = make_server(host, port, app, threaded=True, request_handler=_request_handler())
    print(f"zipkku dev server on http://{host}:{port} with {len(paths)} functions: {' '.join(paths)}", flush=True)
    print(f"API reference: http://{host}:{port}/docs", flush=True)
    if playground_url:
        print(f"playground:    {playground_url}/", flush=True)
    server.serve_forever()  # werkzeug's: returns on KeyboardInterrupt, closing the socket


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    configure_logging()
    serve(args.host, args.port)
