"""Start a Cloud Run Job execution: `run_job("import-catalog", args=[...], env={...}, shard_count=2)`.

A "shard" is what Cloud Run calls a task of an execution (CLOUD_RUN_TASK_INDEX of CLOUD_RUN_TASK_COUNT); we say
shard so that "task" only ever means a Cloud Tasks task (lib.tasks).

- settings.job_runner == "cloudrun": the Cloud Run Admin API (`google-cloud-run` JobsClient.run_job, imported
  lazily) with container overrides (args, env) and an optional shard count. We do not wait for the execution:
  the call returns the execution's name as soon as Cloud Run accepted it.
- "local" (default): lib.local.job_runner starts `jobs/<name>/main.py` as subprocesses with the environment
  Cloud Run sets. Imported only when configured, so production never loads it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from google.auth.credentials import AnonymousCredentials

from lib import clients
from lib.config import get_settings


def run_job(job_name: str, args: list[str] | None = None, env: dict[str, str] | None = None,
            shard_count: int | None = None) -> str:
    """Start one execution of `job_name` (hyphenated deploy name); returns its execution id/name."""
    if shard_count is not None and shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    if get_settings().job_runner == "cloudrun":
        return _run_cloud(job_name, list(args or []), dict(env or {}), shard_count)
    from lib.local import job_runner  # local stand-in: never imported in production

    return job_runner.run_job(job_name, list(args or []), dict(env or {}), shard_count or 1)


def current_shard() -> tuple[int, int]:
    """(index, count) of the shard this job process is: Cloud Run's CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT
    (0 of 1 outside an execution)."""
    count = max(1, int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1") or 1))
    index = int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0") or 0)
    return index, count


# --- Cloud Run Admin API ---------------------------------------------------------------------------------

def job_resource(job_name: str) -> str:
    s = get_settings()
    return f"projects/{s.gcp_project}/locations/{s.gcp_region}/jobs/{job_name}"


def run_job_url(job_name: str) -> str:
    """The Admin API's jobs.run endpoint (Cloud Tasks posts to it for the queued jobs)."""
    return f"{get_settings().cloud_run_api_url.rstrip('/')}/v2/{job_resource(job_name)}:run"


def run_job_body(args: list[str], env: dict[str, str], shard_count: int | None) -> dict[str, Any]:
    """The RunJobRequest body: override the container's args/env (and the number of shards: Cloud Run's
    taskCount)."""
    overrides: dict[str, Any] = {"containerOverrides": [
        {"args": args, "env": [{"name": k, "value": v} for k, v in sorted(env.items())]}
    ]}
    if shard_count is not None:
        overrides["taskCount"] = shard_count
    return {"overrides": overrides}


def _run_cloud(job_name: str, args: list[str], env: dict[str, str], shard_count: int | None) -> str:
    from google.cloud import run_v2  # heavy client: loaded by the few functions that start jobs

    body = {"name": job_resource(job_name), **run_job_body(args, env, shard_count)}
    request = run_v2.RunJobRequest.from_json(json.dumps(body))
    operation = _jobs_client().run_job(request=request)
    metadata = getattr(operation, "metadata", None)  # the Execution being started
    return getattr(metadata, "name", "") or operation.operation.name


def _jobs_client():
    """REST transport (no gRPC channel to warm up) against settings.cloud_run_api_url; an http:// URL is a
    local test double and gets anonymous credentials."""
    url = get_settings().cloud_run_api_url.rstrip("/")

    def create():
        from google.api_core.client_options import ClientOptions  # google-api-core loads grpc: only on first use
        from google.cloud import run_v2

        credentials = None
        if url.startswith("http://"):
            credentials = AnonymousCredentials()
        return run_v2.JobsClient(transport="rest", credentials=credentials,
                                 client_options=ClientOptions(api_endpoint=url))

    return clients.cached(("cloudrun", url), create)
