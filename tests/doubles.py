"""Test doubles of the outside services we cannot run here, as local HTTP servers speaking their documented
APIs (never patches of our code): Replicate's predictions API, the detector service, and the Cloud Run Admin
API endpoint that Cloud Tasks calls. Each binds 127.0.0.1 on a free port and records what it received."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def jpeg(width: int = 320, height: int = 240, colour: tuple[int, int, int] = (120, 90, 60), seed: int = 0) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(img)
    draw.rectangle([width // 8, height // 2, width // 2, height - 10], fill=((seed * 53) % 255, 80, 160))
    draw.ellipse([width * 5 // 8, height // 8, width - 10, height // 2], fill=(30, (seed * 97) % 255, 60))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 running in a daemon thread; subclasses implement handle()."""

    def __init__(self) -> None:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = double.handle(self.command, self.path, dict(self.headers), body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _dispatch  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes):  # pragma: no cover
        raise NotImplementedError


class ReplicateDouble(_Server):
    """Replicate's predictions API (https://replicate.com/docs/reference/http).

    `plan` is consumed one entry per create call (default "ok"):
      "ok"        finishes within the create call when `Prefer: wait` is sent, else after `polls` GETs
      "slow"      stays `processing` for `slow_seconds`, then succeeds
      "never"     stays `processing` forever (until canceled)
      "nsfw"      fails with an NSFW error;  "failed" fails with a generic error;  "canceled"/"aborted"
      "list"      succeeds with a list output [control map, image]
      "malformed" answers 201 with a body that is not JSON
      "no-output" succeeds without output
      an int      answers that HTTP status (e.g. 500, 402, 429 with Retry-After: 0, 422)
    """

    def __init__(self, token: str = "r8_test_token", polls: int = 1, slow_seconds: float = 1.0) -> None:
        super().__init__()
        self.token, self.polls, self.slow_seconds = token, polls, slow_seconds
        self.plan: list[Any] = []
        self.predictions: dict[str, dict[str, Any]] = {}
        self.creates: list[dict[str, Any]] = []   # every create call's {path, headers, body}
        self.canceled: list[str] = []
        self.gets = 0

    def _prediction(self, pid: str) -> dict[str, Any]:
        p = self.predictions[pid]
        public = {k: v for k, v in p.items() if not k.startswith("_")}
        return public

    def _advance(self, p: dict[str, Any], waited: bool) -> None:
        mode = p["_mode"]
        if p["status"] in ("succeeded", "failed", "canceled", "aborted"):
            return
        if mode == "never":
            p["status"] = "processing"
            return
        if mode == "slow" and time.monotonic() - p["_created"] < self.slow_seconds:
            p["status"] = "processing"
            return
        if mode in ("ok", "list", "no-output") and not waited and p["_polls"] < self.polls:
            p["_polls"] += 1
            p["status"] = "processing"
            return
        base = f"{self.url}/files/{p['id']}.jpg"
        if mode == "nsfw":
            p.update(status="failed", error="NSFW content detected. Try running it again, or try a different prompt.")
        elif mode == "failed":
            p.update(status="failed", error="CUDA out of memory")
        elif mode in ("canceled", "aborted"):
            p.update(status=mode)
        elif mode == "list":
            p.update(status="succeeded", output=[f"{self.url}/files/control.jpg", base])
        elif mode == "no-output":
            p.update(status="succeeded", output=None)
        else:
            p.update(status="succeeded", output=base)

    def handle(self, method, path, headers, body):
        if path.startswith("/files/"):
            seed = sum(path.encode()) % 255
            return 200, {"Content-Type": "image/jpeg"}, jpeg(seed=seed)
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, {"detail": "Unauthenticated"}
        if method == "POST" and path.endswith("/predictions"):
            with self.lock:
                payload = json.loads(body or b"{}")
                self.creates.append({"path": path, "headers": headers, "body": payload})
                mode = self.plan.pop(0) if self.plan else "ok"
            if isinstance(mode, int):
                extra = {"Retry-After": "0"} if mode == 429 else {}
                return mode, extra, {"title": "error", "detail": f"status {mode}", "status": mode}
            if mode == "malformed":
                return 201, {}, b"<html>not json"
            pid = f"p{len(self.creates)}x"
            prediction = {
                "id": pid, "model": payload.get("version", path), "input": payload.get("input"), "status": "starting",
                "output": None, "error": None, "logs": "", "created_at": "2026-01-01T00:00:00Z",
                "urls": {"get": f"{self.url}/v1/predictions/{pid}", "cancel": f"{self.url}/v1/predictions/{pid}/cancel",
                         "stream": f"{self.url}/stream/{pid}"},
                "_mode": mode, "_polls": 0, "_created": time.monotonic(),
            }
            self.predictions[pid] = prediction
            waited = "wait" in (headers.get("Prefer") or "")
            self._advance(prediction, waited)
            done = prediction["status"] in ("succeeded", "failed", "canceled", "aborted")
            return (200 if done and waited else 201), {}, self._prediction(pid)
        if method == "GET" and path.startswith("/v1/predictions/"):
            pid = path.rsplit("/", 1)[-1]
            if pid not in self.predictions:
                return 404, {}, {"detail": "Not found"}
            with self.lock:
                self.gets += 1
                self._advance(self.predictions[pid], waited=False)
            return 200, {}, self._prediction(pid)
        if method == "POST" and path.endswith("/cancel"):
            pid = path.split("/")[-2]
            with self.lock:
                self.canceled.append(pid)
                if pid in self.predictions:
                    self.predictions[pid]["status"] = "canceled"
            return 200, {}, self._prediction(pid) if pid in self.predictions else {}
        return 404, {}, {"detail": "Not found"}


class DetectorDouble(_Server):
    """The old detector service: POST image bytes -> [{label, confidence, bbox [x,y,w,h], embedding}].
    `reply` is what it answers (a list, raw bytes, or an int status)."""

    def __init__(self, reply: Any = None) -> None:
        super().__init__()
        self.reply = reply if reply is not None else [
            {"label": "sofa", "confidence": 0.91, "bbox": [10, 20, 100, 50], "embedding": [0.1, 0.2, 0.3]},
        ]
        self.received: list[dict[str, Any]] = []

    def handle(self, method, path, headers, body):
        self.received.append({"path": path, "headers": headers, "size": len(body)})
        if isinstance(self.reply, int):
            return self.reply, {}, {"error": "status"}
        return 200, {}, self.reply


class CloudRunDouble(_Server):
    """The Cloud Run Admin API's `POST /v2/projects/P/locations/R/jobs/J:run` (what Cloud Tasks calls).

    `overrides_allowed=False` is a caller granted only run.jobs.run (roles/run.invoker on the job, as the tasks
    identity is in terraform): like Cloud Run, a request carrying `overrides` (even empty ones) is refused with
    403 PERMISSION_DENIED, since it needs run.jobs.runWithOverrides."""

    def __init__(self, *, overrides_allowed: bool = True) -> None:
        super().__init__()
        self.overrides_allowed = overrides_allowed
        self.runs: list[dict[str, Any]] = []
        self.received = threading.Event()

    def handle(self, method, path, headers, body):
        request = json.loads(body or b"{}")
        self.runs.append({"method": method, "path": path, "headers": headers, "body": request})
        self.received.set()
        if "overrides" in request and not self.overrides_allowed:
            return 403, {}, {"error": {"code": 403, "status": "PERMISSION_DENIED", "message":
                                       "Permission 'run.jobs.runWithOverrides' denied on resource"}}
        return 200, {}, {"name": "operations/run-1", "metadata": {"name": "executions/e1"}}
