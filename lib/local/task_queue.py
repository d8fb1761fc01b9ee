"""The task queue without Google (TASK_QUEUE=local; lib.tasks.enqueue_job calls it).

The same contract as Cloud Tasks: a task name is recorded in Mongo (`local_tasks`, unique id, so a duplicate
enqueue is refused with TaskExists the same way) and the job starts at once through lib.cloudrun.run_job (a
subprocess with JOB_RUNNER=local).
"""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from lib import cloudrun, db
from lib.tasks import EnqueueFailed, TaskExists


def enqueue_job(job_name: str, name: str, args: list[str], env: dict[str, str], shard_count: int | None) -> str:
    """Record the task `name` and start the job; returns `name`."""
    try:
        db.collection("local_tasks").insert_one(
            {"_id": name, "job": job_name, "args": args, "created_at": db.utcnow()})
    except DuplicateKeyError:
        raise TaskExists(name) from None
    try:
        cloudrun.run_job(job_name, args=args, env=env, shard_count=shard_count)
    except Exception as exc:  # noqa: BLE001 - cannot start: forget the name so a later retry may enqueue
        db.collection("local_tasks").delete_one({"_id": name})
        raise EnqueueFailed(f"the local job could not start: {type(exc).__name__}") from exc
    return name
