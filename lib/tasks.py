"""Starting jobs through a queue: Cloud Tasks in production, a local adapter otherwise (TASK_QUEUE).

    tasks.enqueue_job("generate-interior", task_id=f"interior-{id}")   # no args: the run claims queued work

- "cloudtasks": one Cloud Task per unit of work, NAMED after it (`task_id`), so a duplicate enqueue (a browser
  retry, a redelivered request) is refused by the queue (AlreadyExists -> TaskExists). Its HTTP target is the
  Cloud Run Admin API `POST /v2/projects/P/locations/R/jobs/<job>:run` (container overrides only when args or
  env are given) and, when TASKS_SERVICE_ACCOUNT is set, an OAuth token of that account, so the queue itself
  starts the job: rate limiting and retries (the queue's retry config, from settings via `queue_definition()`)
  are Cloud Tasks'. In production TASKS_SERVICE_ACCOUNT is empty: the queue's own routing (terraform) fixes the
  URL and the token, so whoever creates tasks needs no actAs on the account that starts the job.
- "local": lib.local.task_queue, the same contract without Google (imported only when configured).

TASKS_EMULATOR_HOST points the Cloud Tasks client at gcloud-tasks-emulator over an insecure gRPC channel
(contract tests only); CLOUD_RUN_API_URL lets those tests receive the dispatched request locally.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from lib import clients, cloudrun
from lib.config import get_settings

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")


class TaskExists(Exception):
    """A task with this name was already enqueued: the work is already on its way."""


class EnqueueFailed(Exception):
    """The queue could not take the task (outage, permissions, bad configuration)."""


def enqueue_job(job_name: str, *, task_id: str, args: list[str] | None = None, env: dict[str, str] | None = None,
                shard_count: int | None = None) -> str:
    """Start `job_name` once for `task_id`; returns the task's name. Raises TaskExists / EnqueueFailed."""
    if not _TASK_ID.match(task_id):
        raise ValueError("task ids are letters, digits, '-' and '_' (1-500 characters)")
    if get_settings().task_queue == "cloudtasks":
        return _enqueue_cloud(job_name, task_id, args or [], env or {}, shard_count)
    from lib.local import task_queue  # local stand-in: never imported in production

    return task_queue.enqueue_job(job_name, task_name(task_id), args or [], env or {}, shard_count)


# --- Cloud Tasks -----------------------------------------------------------------------------------------

def _create_client(emulator_host: str):
    import grpc  # only with the emulator, on the first enqueue
    from google.cloud import tasks_v2  # heavy client: loaded on the first enqueue

    if emulator_host:
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        return tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(emulator_host)))
    return tasks_v2.CloudTasksClient()


def client():
    emulator_host = get_settings().tasks_emulator_host
    return clients.cached(("cloudtasks", emulator_host), lambda: _create_client(emulator_host))


def queue_path() -> str:
    s = get_settings()
    return f"projects/{s.gcp_project}/locations/{s.gcp_region}/queues/{s.tasks_queue_name}"


def task_name(task_id: str) -> str:
    return f"{queue_path()}/tasks/{task_id}"


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
    from google.api_core import exceptions  # google-api-core loads grpc: only on first use

    s = get_settings()
    with contextlib.suppress(exceptions.AlreadyExists):
        client().create_queue(parent=f"projects/{s.gcp_project}/locations/{s.gcp_region}", queue=queue_definition())


def _enqueue_cloud(job_name: str, task_id: str, args: list[str], env: dict[str, str],
                   shard_count: int | None) -> str:
    from google.api_core import exceptions  # google-api-core loads grpc: only on first use
    from google.cloud import tasks_v2

    s = get_settings()
    http_request: dict[str, Any] = {
        "http_method": tasks_v2.HttpMethod.POST,
        "url": cloudrun.run_job_url(job_name),
        "headers": {"Content-Type": "application/json"},
        # A run without overrides sends no `overrides` at all: even an empty one needs run.jobs.runWithOverrides.
        "body": json.dumps(cloudrun.run_job_body(args, env, shard_count) if args or env or shard_count
                           else {}).encode(),
    }
    if s.tasks_service_account:
        http_request["oauth_token"] = {"service_account_email": s.tasks_service_account,
                                       "scope": CLOUD_PLATFORM_SCOPE}
    name = task_name(task_id)
    try:
        client().create_task(parent=queue_path(), task={"name": name, "http_request": http_request}, timeout=10)
    except exceptions.AlreadyExists:
        raise TaskExists(name) from None
    except exceptions.GoogleAPICallError as exc:
        raise EnqueueFailed(f"Cloud Tasks refused the task: {type(exc).__name__}") from exc
    except Exception as exc:  # noqa: BLE001 - transport errors (DNS, TLS, channel) all mean "not enqueued"
        raise EnqueueFailed(f"Cloud Tasks is unreachable: {type(exc).__name__}") from exc
    return name
