"""Start a Cloud Run Job execution: `run_job("import-catalog", args=[...], env={...}, task_count=2)`.

- settings.job_runner == "cloudrun": the Cloud Run Admin API (`google-cloud-run` JobsClient.run_job, imported
  lazily) with container overrides (args, env) and an optional task count. We do not wait for the execution:
  the call returns the execution's name as soon as Cloud Run accepted it.
- "local" (default): `jobs/<name_with_underscores>/main.py` started as subprocesses of this process, one per
  task, with the same environment variables Cloud Run sets (CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION,
  CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_COUNT). Non-blocking: a background thread waits for a slot (at most
  settings.local_job_concurrency executions at once, the rest queue in order), runs the tasks and records the
  exit codes; logs go to <local_dir>/logs/jobs/<execution>.log. Running children are stopped by PID when this
  process exits. `wait(execution_id)` lets tests and scripts block until an execution finished.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.config import get_settings

ROOT = Path(__file__).resolve().parent.parent


def run_job(job_name: str, args: list[str] | None = None, env: dict[str, str] | None = None,
            task_count: int | None = None) -> str:
    """Start one execution of `job_name` (hyphenated deploy name); returns its execution id/name."""
    if task_count is not None and task_count < 1:
        raise ValueError("task_count must be at least 1")
    if get_settings().job_runner == "cloudrun":
        return _run_cloud(job_name, list(args or []), dict(env or {}), task_count)
    return _run_local(job_name, list(args or []), dict(env or {}), task_count or 1)


# --- Cloud Run Admin API ---------------------------------------------------------------------------------

def job_resource(job_name: str) -> str:
    s = get_settings()
    return f"projects/{s.gcp_project}/locations/{s.gcp_region}/jobs/{job_name}"


def run_job_url(job_name: str) -> str:
    """The Admin API's jobs.run endpoint (Cloud Tasks posts to it for the queued jobs)."""
    return f"{get_settings().cloud_run_api_url.rstrip('/')}/v2/{job_resource(job_name)}:run"


def run_job_body(args: list[str], env: dict[str, str], task_count: int | None) -> dict[str, Any]:
    """The RunJobRequest body: override the container's args/env (and the task count)."""
    overrides: dict[str, Any] = {"containerOverrides": [
        {"args": args, "env": [{"name": k, "value": v} for k, v in sorted(env.items())]}
    ]}
    if task_count is not None:
        overrides["taskCount"] = task_count
    return {"overrides": overrides}


def _run_cloud(job_name: str, args: list[str], env: dict[str, str], task_count: int | None) -> str:
    import json

    from google.cloud import run_v2

    body = {"name": job_resource(job_name), **run_job_body(args, env, task_count)}
    request = run_v2.RunJobRequest.from_json(json.dumps(body))
    operation = _jobs_client().run_job(request=request)
    metadata = getattr(operation, "metadata", None)  # the Execution being started
    return getattr(metadata, "name", "") or operation.operation.name


_clients: dict[str, object] = {}


def _jobs_client():
    """REST transport (no gRPC channel to warm up) against settings.cloud_run_api_url; an http:// URL is a
    local test double and gets anonymous credentials."""
    url = get_settings().cloud_run_api_url.rstrip("/")
    if url not in _clients:
        from google.api_core.client_options import ClientOptions
        from google.cloud import run_v2

        credentials = None
        if url.startswith("http://"):
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        _clients[url] = run_v2.JobsClient(transport="rest", credentials=credentials,
                                          client_options=ClientOptions(api_endpoint=url))
    return _clients[url]


# --- local subprocesses ----------------------------------------------------------------------------------

@dataclass
class LocalExecution:
    id: str
    job: str
    task_count: int
    log_path: Path
    done: threading.Event = field(default_factory=threading.Event)
    exit_codes: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    started_at: float | None = None  # time.monotonic() when it got a slot
    finished_at: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.done.is_set() and all(code == 0 for code in self.exit_codes)


_executions: dict[str, LocalExecution] = {}
_slots: dict[int, threading.Semaphore] = {}
_slots_lock = threading.Lock()


def job_script(job_name: str) -> Path:
    return ROOT / "jobs" / job_name.replace("-", "_") / "main.py"


def _slot() -> threading.Semaphore:
    limit = get_settings().local_job_concurrency
    with _slots_lock:
        return _slots.setdefault(limit, threading.Semaphore(limit))


def _run_local(job_name: str, args: list[str], env: dict[str, str], task_count: int) -> str:
    script = job_script(job_name)
    if not script.is_file():
        raise FileNotFoundError(f"no job at {script.relative_to(ROOT)}")
    settings = get_settings()
    execution_id = f"{job_name}-{uuid.uuid4().hex[:10]}"
    logs = Path(settings.local_dir).resolve() / "logs" / "jobs"
    logs.mkdir(parents=True, exist_ok=True)
    execution = LocalExecution(execution_id, job_name, task_count, logs / f"{execution_id}.log")
    _executions[execution_id] = execution
    base_env = {
        **os.environ, **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
        "CLOUD_RUN_JOB": job_name, "CLOUD_RUN_EXECUTION": execution_id, "CLOUD_RUN_TASK_COUNT": str(task_count),
    }
    slot = _slot()

    def supervise() -> None:
        with slot, open(execution.log_path, "ab") as log:
            execution.started_at = time.monotonic()
            for index in range(task_count):
                execution.procs.append(subprocess.Popen(
                    [sys.executable, str(script), *args], cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env={**base_env, "CLOUD_RUN_TASK_INDEX": str(index)},
                ))
            execution.exit_codes = [proc.wait() for proc in execution.procs]
            execution.finished_at = time.monotonic()
        execution.done.set()

    threading.Thread(target=supervise, name=f"job-{execution_id}", daemon=True).start()
    return execution_id


def wait(execution_id: str, timeout: float | None = None) -> LocalExecution:
    """Block until a local execution finished (TimeoutError otherwise)."""
    execution = _executions[execution_id]
    if not execution.done.wait(timeout):
        raise TimeoutError(f"{execution_id} still running after {timeout}s")
    return execution


@atexit.register
def _stop_children() -> None:
    for execution in list(_executions.values()):
        for proc in execution.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
