"""Cloud Run Jobs as local subprocesses (JOB_RUNNER=local; lib.cloudrun.run_job calls it).

`jobs/<name_with_underscores>/main.py` runs as subprocesses of this process, one per shard, with the same
environment variables Cloud Run sets (CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX,
CLOUD_RUN_TASK_COUNT). Non-blocking: a background thread waits for a slot (at most
settings.local_job_concurrency executions at once, the rest queue in order), runs the shards and records the
exit codes; logs go to <local_dir>/logs/jobs/<execution>.log, and one line when an execution starts and one
when it ends go to this process's log (the `make run` terminal). Running children are stopped by PID when this
process exits, and get SIGTERM from the kernel if it dies without the chance (lib/local/process.py).
`wait(execution_id)` lets tests and scripts block until an execution finished.

A job script that sets `WARM_LOCAL_JOB = True` (the generation job) gets a warm worker
(lib/local/job_worker.py): one process per job, started ahead of time with the job's imports and local models
loaded, which takes the first shard of the next execution (not the local sweep's); a new one is
started when that execution has finished (`LOCAL_WARM_JOBS=0` turns this off). Each process still runs one
execution only, as on Cloud Run. A waiting worker exits when this process goes (its stdin closes); it is not
tied to the thread that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lib import discovery
from lib.config import get_settings
from lib.local.process import die_with_parent

ROOT = discovery.ROOT
log = logging.getLogger("zipkku.jobs")


@dataclass
class LocalExecution:
    id: str
    job: str
    shard_count: int
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
_warm: dict[str, subprocess.Popen] = {}  # job name -> a worker waiting for its execution
_warm_lock = threading.Lock()
_slots: dict[int, threading.Semaphore] = {}
_slots_lock = threading.Lock()


def _slot() -> threading.Semaphore:
    limit = get_settings().local_job_concurrency
    with _slots_lock:
        return _slots.setdefault(limit, threading.Semaphore(limit))


def run_job(job_name: str, args: list[str], env: dict[str, str], shard_count: int, *, announce: bool = True,
            warm: bool = True) -> str:
    """Start `shard_count` subprocesses of the job in the background; returns the execution id. With
    `announce`, its start and end are logged (the local sweep announces only the runs that found work). With
    `warm`, the first shard goes to the job's warm worker if one waits (the sweep, which nobody waits on,
    passes False and starts fresh)."""
    script = discovery.job_script(job_name)
    if not script.is_file():
        raise FileNotFoundError(f"no job at {script.relative_to(ROOT)}")
    settings = get_settings()
    execution_id = f"{job_name}-{uuid.uuid4().hex[:10]}"
    logs = Path(settings.local_dir).resolve() / "logs" / "jobs"
    logs.mkdir(parents=True, exist_ok=True)
    execution = LocalExecution(execution_id, job_name, shard_count, logs / f"{execution_id}.log")
    _executions[execution_id] = execution
    base_env = {
        **os.environ, **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
        "CLOUD_RUN_JOB": job_name, "CLOUD_RUN_EXECUTION": execution_id, "CLOUD_RUN_TASK_COUNT": str(shard_count),
    }
    slot = _slot()

    def supervise() -> None:
        with slot, open(execution.log_path, "ab") as out:
            execution.started_at = time.monotonic()
            if announce:
                log.info("job %s started%s (log: %s)", execution_id, f": {' '.join(args)}" if args else "",
                         _shown(execution.log_path))
            for index in range(shard_count):
                shard_env = {**base_env, "CLOUD_RUN_TASK_INDEX": str(index)}
                worker = _take_warm(job_name) if index == 0 and warm else None
                if worker is not None and _hand_over(worker, args, shard_env, execution.log_path):
                    execution.procs.append(worker)
                    continue
                # this thread waits for the child, so the parent-death signal fires only if the process dies
                execution.procs.append(subprocess.Popen(
                    [sys.executable, str(script), *args], cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=shard_env, preexec_fn=die_with_parent(),
                ))
            execution.exit_codes = [proc.wait() for proc in execution.procs]
            execution.finished_at = time.monotonic()
        if announce:
            _announce_end(execution)
        # the next execution's worker loads once this one is done, not competing with it for the cores
        prewarm(job_name)
        execution.done.set()

    threading.Thread(target=supervise, name=f"job-{execution_id}", daemon=True).start()
    return execution_id


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def summary(execution: LocalExecution) -> dict | None:
    """The JSON summary line a job prints last (jobs/*/main.py), from its log; None if there is none."""
    try:
        with open(execution.log_path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 8192))
            lines = file.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict) and "job" in value:
                return value
    return None


def _announce_end(execution: LocalExecution) -> None:
    seconds = (execution.finished_at or 0) - (execution.started_at or 0)
    if all(code == 0 for code in execution.exit_codes):
        result = summary(execution) or {}
        counts = ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool))
        log.info("job %s finished in %.1f s%s", execution.id, seconds, f": {counts}" if counts else "")
    else:
        log.warning("job %s failed after %.1f s (exit %s); see %s", execution.id, seconds,
                    ",".join(map(str, execution.exit_codes)), _shown(execution.log_path))


def _wants_warm(job_name: str) -> bool:
    if not get_settings().local_warm_jobs:
        return False
    script = discovery.job_script(job_name)
    return script.is_file() and "\nWARM_LOCAL_JOB = True" in script.read_text(encoding="utf-8")


def prewarm(job_name: str) -> None:
    """Start the warm worker of `job_name` unless one is waiting (no-op for jobs that do not ask for one)."""
    if not _wants_warm(job_name):
        return
    with _warm_lock:
        current = _warm.get(job_name)
        if current is not None and current.poll() is None:
            return
        log_path = _warm_log(job_name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:  # its start-up; the execution's own log follows
            _warm[job_name] = subprocess.Popen(
                [sys.executable, "-m", "lib.local.job_worker", str(discovery.job_script(job_name))], cwd=str(ROOT),
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ,
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))},
            )


def _warm_log(job_name: str) -> Path:
    return Path(get_settings().local_dir).resolve() / "logs" / "jobs" / f"warm-{job_name}.log"


def _take_warm(job_name: str) -> subprocess.Popen | None:
    with _warm_lock:
        worker = _warm.pop(job_name, None)
    if worker is not None and worker.poll() is not None:
        # it failed while loading (an exit before its execution is never the normal case): say so, or every
        # execution silently pays the fresh start the worker exists to save
        log.warning("the warm %s worker exited with %s before taking work; a fresh process runs it (see %s)",
                    job_name, worker.returncode, _shown(_warm_log(job_name)))
        return None
    return worker


def _hand_over(worker: subprocess.Popen, args: list[str], env: dict[str, str], log_path: Path) -> bool:
    """Give the warm worker its execution; False if it died meanwhile (the caller starts a fresh process)."""
    if worker.stdin is None:  # started without a pipe: it cannot take work
        return False
    try:
        worker.stdin.write(json.dumps({"args": args, "env": env, "log": str(log_path)}).encode() + b"\n")
        worker.stdin.close()
        return True
    except (BrokenPipeError, OSError):
        with contextlib.suppress(ProcessLookupError):
            worker.kill()
        return False


def wait(execution_id: str, timeout: float | None = None) -> LocalExecution:
    """Block until a local execution finished (TimeoutError otherwise)."""
    execution = _executions[execution_id]
    if not execution.done.wait(timeout):
        raise TimeoutError(f"{execution_id} still running after {timeout}s")
    return execution


@atexit.register
def _stop_children() -> None:
    for worker in list(_warm.values()):
        with contextlib.suppress(ProcessLookupError):
            worker.terminate()
    for execution in list(_executions.values()):
        for proc in execution.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()


def execution_ids() -> list[str]:
    """Every execution this process started, oldest first (tests find the one an enqueue started)."""
    return list(_executions)
