"""The local components behind `make run` and the tests, each a real server on 127.0.0.1.

Every component is started as a child process, waited for until its port answers, and stopped by its PID.
`env()` gives the variables that point our code (lib.config) at it, so production and local runs share
every code path. Used by scripts/run_local.py (`make run`) and tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
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


def spawn(argv: list[str], log_path: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a child in its own process group (so stop_process also ends anything it starts)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, **(env or {})},
    )


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


# --- MongoDB: SecantusDB ---------------------------------------------------------------------------------

class MongoServer:
    """SecantusDB (MongoDB wire protocol) as a child process. `storage` is a folder or ":memory:"."""

    def __init__(self, storage: str, log_path: Path | None = None) -> None:
        self.storage = storage
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        # retryWrites=false: SecantusDB slows sharply while it keeps pymongo's retryable-write log.
        return f"mongodb://127.0.0.1:{self.port}/?retryWrites=false&directConnection=true"

    def start(self) -> MongoServer:
        binary = shutil.which("secantusd-py", path=str(VENV_BIN)) or "secantusd-py"
        if self.storage != ":memory:":
            Path(self.storage).mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            [binary, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", self.storage,
             "--log-level", "WARNING"],
            self.log_path,
        )
        wait_for_port(self.port, self.proc, name="SecantusDB")
        return self

    def env(self) -> dict[str, str]:
        return {"MONGODB_URI": self.uri}

    def stop(self) -> None:
        stop_process(self.proc)


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
        except BaseException:
            self.stop()
            raise
        return self

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
