"""Starting jobs through a queue: Cloud Tasks in production, a local adapter otherwise (TASK_QUEUE).

    tasks.enqueue_job("generate-interior", task_id=f"interior-{id}", args=["--interior", id])

- "cloudtasks": one Cloud Task per unit of work, NAMED after it (`task_id`), so a duplicate enqueue (a browser
  retry, a redelivered request) is refused by the queue (AlreadyExists -> TaskExists). Its HTTP target is the
  Cloud Run Admin API `POST /v2/projects/P/locations/R/jobs/<job>:run` with container overrides (args, env) and
  an OAuth token of TASKS_SERVICE_ACCOUNT, so the queue itself starts the job: rate limiting and retries (the
  queue's retry config, from settings via `queue_definition()`) are Cloud Tasks', not ours.
- "local": the same contract without Google: a task name is recorded in Mongo (`local_tasks`, unique id, so
  duplicates are refused the same way) and the job starts through lib.jobs.run_job as a subprocess.

TASKS_EMULATOR_HOST points the Cloud Tasks client at gcloud-tasks-emulator over an insecure gRPC channel
(contract tests only); CLOUD_RUN_API_URL lets those tests receive the dispatched request locally.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from typing import Any

from lib import db, jobs
from lib.config import get_settings

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")


class TaskExists(Exception):
    """A task with this name was already enqueued: the work is already on its way."""


class EnqueueFailed(Exception):
    """The queue could not take the task (outage, permissions, bad configuration)."""


def enqueue_job(job_name: str, *, task_id: str, args: list[str] | None = None, env: dict[str, str] | None = None,
                task_count: int | None = None) -> str:
    """Start `job_name` once for `task_id`; returns the task's name. Raises TaskExists / EnqueueFailed."""
    if not _TASK_ID.match(task_id):
        raise ValueError("task ids are letters, digits, '-' and '_' (1-500 characters)")
    if get_settings().task_queue == "cloudtasks":
        return _enqueue_cloud(job_name, task_id, args or [], env or {}, task_count)
    return _enqueue_local(job_name, task_id, args or [], env or {}, task_count)


# --- Cloud Tasks -----------------------------------------------------------------------------------------

@functools.cache
def _client_for(emulator_host: str):
    from google.cloud import tasks_v2

    if emulator_host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        return tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(emulator_host)))
    return tasks_v2.CloudTasksClient()


def client():
    return _client_for(get_settings().tasks_emulator_host)


def queue_path() -> str:
    s = get_settings()
    return f"projects/{s.gcp_project}/locations/{s.gcp_region}/queues/{s.tasks_queue_name}"


def queue_definition() -> dict[str, Any]:
    """The queue with its retry policy from settings (terraform declares the same)."""
    s = get_settings()
    return {
        "name": queue_path(),
        "retry_config": {
            "max_attempts": s.tasks_max_attempts,
            "min_backoff": {"seconds": int(s.tasks_min_backoff_seconds),
                            "nanos": int(s.tasks_min_backoff_seconds % 1 * 1e9)},
            "max_backoff": {"seconds": int(s.tasks_max_backoff_seconds),
                            "nanos": int(s.tasks_max_backoff_seconds % 1 * 1e9)},
        },
    }


def ensure_queue() -> None:
    """Create the queue if missing (local/contract use; production queues come from terraform)."""
    from google.api_core import exceptions

    s = get_settings()
    with contextlib.suppress(exceptions.AlreadyExists):
        client().create_queue(parent=f"projects/{s.gcp_project}/locations/{s.gcp_region}", queue=queue_definition())


def _enqueue_cloud(job_name: str, task_id: str, args: list[str], env: dict[str, str],
                   task_count: int | None) -> str:
    from google.api_core import exceptions
    from google.cloud import tasks_v2

    s = get_settings()
    http_request: dict[str, Any] = {
        "http_method": tasks_v2.HttpMethod.POST,
        "url": jobs.run_job_url(job_name),
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(jobs.run_job_body(args, env, task_count)).encode(),
    }
    if s.tasks_service_account:
        http_request["oauth_token"] = {"service_account_email": s.tasks_service_account,
                                       "scope": CLOUD_PLATFORM_SCOPE}
    name = f"{queue_path()}/tasks/{task_id}"
    try:
        client().create_task(parent=queue_path(), task={"name": name, "http_request": http_request}, timeout=10)
    except exceptions.AlreadyExists:
        raise TaskExists(name) from None
    except exceptions.GoogleAPICallError as exc:
        raise EnqueueFailed(f"Cloud Tasks refused the task: {type(exc).__name__}") from exc
    except Exception as exc:  # noqa: BLE001 - transport errors (DNS, TLS, channel) all mean "not enqueued"
        raise EnqueueFailed(f"Cloud Tasks is unreachable: {type(exc).__name__}") from exc
    return name


# --- local -----------------------------------------------------------------------------------------------

def _enqueue_local(job_name: str, task_id: str, args: list[str], env: dict[str, str],
                   task_count: int | None) -> str:
    from pymongo.errors import DuplicateKeyError

    name = f"{queue_path()}/tasks/{task_id}"
    try:
        db.collection("local_tasks").insert_one(
            {"_id": name, "job": job_name, "args": args, "created_at": db.utcnow()})
    except DuplicateKeyError:
        raise TaskExists(name) from None
    from lib import jobs

    try:
        jobs.run_job(job_name, args=args, env=env, task_count=task_count)
    except Exception as exc:  # noqa: BLE001 - cannot start: forget the name so a later retry may enqueue
        db.collection("local_tasks").delete_one({"_id": name})
        raise EnqueueFailed(f"the local job could not start: {type(exc).__name__}") from exc
    return name
