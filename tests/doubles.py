"""Test doubles of the outside services we cannot run here, as local HTTP servers speaking their documented
APIs (never patches of our code): Replicate's predictions API, the detector service, Cloud Vision's
images:annotate, Vertex AI's multimodalembedding :predict, and the Cloud Run Admin API endpoint that Cloud
Tasks calls. Each binds 127.0.0.1 on a free port and records what it received."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections.abc import Callable
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


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the default backlog of 5 drops concurrent connects (1 s SYN retries)


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
                if status is None:  # the connection drops before any answer (the work may have been done)
                    self.close_connection = True
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _dispatch  # noqa: N815

        self.server = _Listener(("127.0.0.1", 0), Handler)
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
      "lost-answer" creates the prediction (it runs, and is billed) but the connection drops before the answer
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
            if mode == "lost-answer":
                prediction["_mode"] = "ok"
                return None, {}, b""
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


# --- Google's managed AI APIs -------------------------------------------------------------------------------

def google_error(status: int, google_status: str, message: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Google's JSON error shape (https://cloud.google.com/apis/design/errors)."""
    extra = {"Retry-After": "0"} if status == 429 else {}
    return status, extra, {"error": {"code": status, "message": message, "status": google_status}}


class _GoogleApiDouble(_Server):
    """What every Google API front end does before the method: a Bearer token it accepts (`accepts_token`,
    e.g. scripts/iam_double.py's tokens; 401 UNAUTHENTICATED), `deny` (403 PERMISSION_DENIED, as without the
    role or with the API disabled), a per-minute quota (429 RESOURCE_EXHAUSTED), `plan` (statuses to answer the
    next calls with: 429, 500, 503, or "malformed" for a 200 that is not JSON) and `latency` per call."""

    quota_metric = "requests"

    def __init__(self, accepts_token: Callable[[str], bool], latency: float = 0.0,
                 quota_per_minute: int | None = None) -> None:
        super().__init__()
        self.accepts_token, self.latency, self.quota_per_minute = accepts_token, latency, quota_per_minute
        self.plan: list[Any] = []
        self.deny = False
        self.calls: list[dict[str, Any]] = []   # every authenticated call: path and decoded JSON body
        self.in_flight = self.max_in_flight = 0
        self._recent: list[float] = []

    def handle(self, method, path, headers, body):
        sent = {k.lower(): v for k, v in headers.items()}
        token = (sent.get("authorization") or "").removeprefix("Bearer ").strip()
        if not token or not self.accepts_token(token):
            return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. "
                                "Expected OAuth 2 access token, login cookie or other valid authentication credential.")
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.latency)
            return self._after_auth(method, path, body)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _after_auth(self, method, path, body):
        with self.lock:
            planned = self.plan.pop(0) if self.plan else None
            now = time.monotonic()
            self._recent = [t for t in self._recent if t > now - 60]
            if planned is None and self.quota_per_minute is not None:
                if len(self._recent) >= self.quota_per_minute:
                    planned = 429
                else:
                    self._recent.append(now)
        if self.deny or planned == 403:
            return google_error(403, "PERMISSION_DENIED", "Permission denied on resource project (or the API is "
                                "not enabled for it).")
        if planned == 429:
            return google_error(429, "RESOURCE_EXHAUSTED", f"Quota exceeded for quota metric '{self.quota_metric}' "
                                "and limit 'requests per minute'.")
        if isinstance(planned, int) and planned >= 500:
            return google_error(planned, "UNAVAILABLE" if planned == 503 else "INTERNAL",
                                "The service is currently unavailable." if planned == 503 else "Internal error.")
        if planned == "malformed":
            return 200, {}, b"<html>upstream connect error</html>"
        try:
            payload = json.loads(body)
        except ValueError:
            return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        with self.lock:
            self.calls.append({"method": method, "path": path, "body": payload})
        return self.method(path, payload, planned)

    def method(self, path: str, payload: Any, planned: Any):  # pragma: no cover
        raise NotImplementedError


def _decode_image(data: str):
    """A base64 image as Google decodes it, or None (then the API answers 400 INVALID_ARGUMENT)."""
    import base64
    import binascii

    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(data, validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
        return raw, image.convert("RGB")
    except (binascii.Error, ValueError, TypeError, UnidentifiedImageError, OSError):
        return None


class VisionDouble(_GoogleApiDouble):
    """Cloud Vision `POST /v1/images:annotate` with OBJECT_LOCALIZATION
    (https://cloud.google.com/vision/docs/reference/rest/v1/images/annotate). Enforces its limits: at most 16
    images per request, 20 MB per image (400 INVALID_ARGUMENT), a request that names no feature; an image that
    does not decode is a per-image error {code: 3, "Bad image data."} inside a 200, as the service answers.

    `objects` is what it "sees" in every image: [(name, score, (x0, y0, x1, y1) normalized)]. Answers omit a
    vertex coordinate that is 0, as proto3 JSON does. `plan` also takes "bad-vertices" (coordinates outside
    0..1), "no-responses" (an answer without `responses`) and "image-error" (a per-image INTERNAL error)."""

    quota_metric = "vision.googleapis.com/default_requests"
    DEFAULT_OBJECTS = [("Couch", 0.93, (0.09, 0.39, 0.49, 0.72)), ("Lamp", 0.81, (0.75, 0.19, 0.87, 0.78)),
                       ("Coffee table", 0.77, (0.54, 0.69, 0.73, 0.83)), ("Sofa bed", 0.55, (0.1, 0.4, 0.48, 0.7)),
                       ("Picture frame", 0.7, (0.21, 0.12, 0.4, 0.31)), ("Person", 0.6, (0.0, 0.0, 0.2, 0.9))]

    def __init__(self, accepts_token: Callable[[str], bool], objects: list | None = None, **kwargs: Any) -> None:
        super().__init__(accepts_token, **kwargs)
        self.objects = list(self.DEFAULT_OBJECTS if objects is None else objects)

    def method(self, path, payload, planned):
        if path.split("?")[0] != "/v1/images:annotate":
            return google_error(404, "NOT_FOUND", "Method not found.")
        requests_ = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(requests_, list) or not requests_:
            return google_error(400, "INVALID_ARGUMENT", "No requests specified.")
        if len(requests_) > 16:
            return google_error(400, "INVALID_ARGUMENT", "Too many images per request (max 16).")
        if planned == "no-responses":
            return 200, {}, {}
        responses = []
        for request in requests_:
            features = [f.get("type") for f in request.get("features") or [] if isinstance(f, dict)]
            if not features:
                return google_error(400, "INVALID_ARGUMENT", "No feature specified.")
            content = (request.get("image") or {}).get("content")
            if isinstance(content, str) and len(content) * 3 // 4 > 20 * 1024 * 1024:
                return google_error(400, "INVALID_ARGUMENT", "Request payload size exceeds the limit: 20 MB.")
            if planned == "image-error":
                responses.append({"error": {"code": 13, "message": "Internal server error."}})
                continue
            if not isinstance(content, str) or _decode_image(content) is None:
                responses.append({"error": {"code": 3, "message": "Bad image data."}})
                continue
            if "OBJECT_LOCALIZATION" not in features:
                responses.append({})
                continue
            responses.append({"localizedObjectAnnotations": [
                self._annotation(n, score, box, planned) for n, score, box in self.objects]})
        return 200, {}, {"responses": responses}

    @staticmethod
    def _annotation(name: str, score: float, box: tuple[float, float, float, float], planned: Any) -> dict:
        x0, y0, x1, y1 = (1.4, -0.3, 2.0, 0.5) if planned == "bad-vertices" else box

        def vertex(x: float, y: float) -> dict[str, float]:
            return {k: v for k, v in (("x", x), ("y", y)) if v != 0}  # proto3 JSON omits zero values

        corners = [vertex(x0, y0), vertex(x1, y0), vertex(x1, y1), vertex(x0, y1)]
        mid = "/m/" + hashlib.sha1(name.encode()).hexdigest()[:5]  # noqa: S324 - an identifier
        return {"mid": mid, "name": name, "score": score, "boundingPoly": {"normalizedVertices": corners}}


class VertexEmbeddingDouble(_GoogleApiDouble):
    """Vertex AI `POST /v1/projects/P/locations/L/publishers/google/models/multimodalembedding@001:predict`
    (https://cloud.google.com/vertex-ai/generative-ai/docs/embeddings/get-multimodal-embeddings). Enforces the
    model's limits: one instance per request ("1 instance(s) is allowed per prediction. Actual: N"), dimension
    128/256/512/1408, BMP/GIF/JPG/PNG up to 20 MB, each as 400 INVALID_ARGUMENT; a wrong project or location is a
    404. The embedding is a fixed random projection of the image's 8x8 colour thumbnail, so similar pictures get
    similar vectors (it is no model; it is deterministic). `plan` also takes "short" (a vector of the wrong
    size) and "no-predictions"."""

    quota_metric = "aiplatform.googleapis.com/online_prediction_requests_per_base_model"

    def __init__(self, accepts_token: Callable[[str], bool], project: str, location: str, **kwargs: Any) -> None:
        super().__init__(accepts_token, **kwargs)
        self.path = (f"/v1/projects/{project}/locations/{location}/publishers/google/models/"
                     "multimodalembedding@001:predict")
        self._projections: dict[int, Any] = {}

    def embedding(self, image, dim: int) -> list[float]:
        import numpy as np

        if dim not in self._projections:
            self._projections[dim] = np.random.default_rng(dim).standard_normal((8 * 8 * 3, dim))
        pixels = np.asarray(image.resize((8, 8)), dtype=np.float64).reshape(-1) / 255.0 - 0.5
        return (pixels @ self._projections[dim]).tolist()

    def method(self, path, payload, planned):
        if path.split("?")[0] != self.path:
            return google_error(404, "NOT_FOUND", f"Publisher Model `{path}` not found.")
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            return google_error(400, "INVALID_ARGUMENT", "Instances are required.")
        if len(instances) > 1:
            return google_error(400, "INVALID_ARGUMENT",
                                f"1 instance(s) is allowed per prediction. Actual: {len(instances)}")
        dim = ((payload.get("parameters") or {}).get("dimension")) or 1408
        if dim not in (128, 256, 512, 1408):
            return google_error(400, "INVALID_ARGUMENT", f"Invalid dimension {dim}: 128, 256, 512 or 1408.")
        encoded = ((instances[0] or {}).get("image") or {}).get("bytesBase64Encoded")
        decoded = _decode_image(encoded) if isinstance(encoded, str) else None
        if decoded is None or decoded[1].width * decoded[1].height == 0:
            return google_error(400, "INVALID_ARGUMENT", "Unable to decode the image. Supported formats: BMP, GIF, "
                                "JPG, PNG.")
        if len(decoded[0]) > 20 * 1024 * 1024:
            return google_error(400, "INVALID_ARGUMENT", "The image is larger than 20 MB.")
        if planned == "no-predictions":
            return 200, {}, {"deployedModelId": "0"}
        vector = self.embedding(decoded[1], dim)
        if planned == "short":
            vector = vector[: dim // 2]
        return 200, {}, {"predictions": [{"imageEmbedding": vector}], "deployedModelId": "0"}


class CloudRunJobsDouble(_Server):
    """The Cloud Run Admin API's `POST /v2/projects/P/locations/R/jobs/J:run` that really starts the job: each
    execution runs `jobs/<J>/main.py` as subprocesses with the container overrides it was given (args, env,
    taskCount) and the variables Cloud Run sets (lib.local.job_runner, the local stand-in of an execution).
    Answers the long-running Operation whose metadata is the Execution; an unknown job is a 404 NOT_FOUND, a
    body that is not a RunJobRequest a 400 INVALID_ARGUMENT. `executions` lists the started execution ids."""

    def __init__(self, project: str, location: str) -> None:
        super().__init__()
        self.prefix = f"/v2/projects/{project}/locations/{location}/jobs/"
        self.project, self.location = project, location
        self.runs: list[dict[str, Any]] = []
        self.executions: list[str] = []

    def handle(self, method, path, headers, body):
        from lib import discovery
        from lib.local import job_runner

        path = path.split("?")[0]
        if method != "POST" or not path.startswith(self.prefix) or not path.endswith(":run"):
            return google_error(404, "NOT_FOUND", f"{path} not found.")
        job = path[len(self.prefix):-len(":run")]
        if job.replace("-", "_") not in discovery.job_names():
            return google_error(404, "NOT_FOUND", f"Resource 'projects/{self.project}/locations/{self.location}/"
                                f"jobs/{job}' was not found")
        try:
            overrides = json.loads(body or b"{}").get("overrides") or {}
            container = (overrides.get("containerOverrides") or [{}])[0]
            args = [str(a) for a in container.get("args") or []]
            env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or []}
            shards = int(overrides.get("taskCount") or 1)
        except (ValueError, TypeError, KeyError, AttributeError):
            return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        with self.lock:
            self.runs.append({"job": job, "args": args, "env": env, "shards": shards})
        execution = job_runner.run_job(job, args, env, shards)
        with self.lock:
            self.executions.append(execution)
        name = f"projects/{self.project}/locations/{self.location}/jobs/{job}"
        return 200, {}, {"name": f"projects/{self.project}/locations/{self.location}/operations/{execution}",
                         "metadata": {"@type": "type.googleapis.com/google.cloud.run.v2.Execution",
                                      "name": f"{name}/executions/{execution}", "job": job, "taskCount": shards}}
