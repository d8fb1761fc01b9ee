"""Quota arithmetic, the task queue (local adapter, and the Cloud Tasks adapter against gcloud-tasks-emulator)
and events (in-process, and Pub/Sub against its emulator where installed)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from lib import cloudrun, db, errors, events, interiors, quota, tasks
from lib.config import get_settings
from lib.local import job_runner
from scripts.localstack import PubSubEmulator, TasksEmulator
from tests.doubles import CloudRunDouble


@pytest.fixture
def env(stack, settings_env):
    return settings_env


# --- quota -----------------------------------------------------------------------------------------------

def test_quota_takes_until_the_limit_then_refuses_with_retry_after(env):
    env(generation_quota=2, generation_quota_period_seconds=3600)
    first = quota.take("u1")
    assert quota.take("u1") == first
    with pytest.raises(errors.TooManyRequests) as caught:
        quota.take("u1")
    assert caught.value.code == "QUOTA_EXCEEDED" and 3590 <= int(caught.value.headers["Retry-After"]) <= 3600
    assert quota.usage("u1") == {"used": 2, "limit": 2, "resets_at": first}
    assert quota.refund("u1", first) and quota.usage("u1")["used"] == 1
    assert quota.take("u2")  # users are independent


def test_a_refund_belongs_to_its_period(env):
    env(generation_quota=1)
    old = quota.take("u1")
    db.collection("quota_usage").update_one({"_id": "u1"}, {"$set": {"resets_at": db.utcnow() - timedelta(seconds=1)}})
    assert quota.usage("u1")["used"] == 0  # the period is over
    new = quota.take("u1")  # a new period starts with this unit
    assert new != old and quota.usage("u1")["used"] == 1
    assert not quota.refund("u1", old)  # a late refund from the old period gives nothing back
    assert quota.refund("u1", new) and not quota.refund("u1", new)  # and never below zero
    assert not quota.refund("u1", None)


def test_zero_quota_refuses(env):
    env(generation_quota=0)
    with pytest.raises(errors.TooManyRequests):
        quota.take("u1")


def test_concurrent_takes_give_exactly_the_limit(env):
    """12 simultaneous first requests with 5 units: exactly 5 succeed (never more, and no spurious 429 while
    another request is creating the period). Races are rare, so 30 users get the chance to show one."""
    env(generation_quota=5)
    for n in range(30):
        user = f"u{n}"
        wins, failures, barrier = [], [], threading.Barrier(12)

        def take(user=user, wins=wins, failures=failures, barrier=barrier):
            barrier.wait()
            try:
                quota.take(user)
                wins.append(1)
            except errors.TooManyRequests:
                pass
            except Exception as exc:  # noqa: BLE001 - recorded so the assertion shows it
                failures.append(repr(exc))

        threads = [threading.Thread(target=take) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert failures == [], user
        assert len(wins) == 5 and quota.usage(user)["used"] == 5, user


# --- tasks: local adapter ---------------------------------------------------------------------------------

def test_local_queue_refuses_a_duplicate_task_name_and_runs_the_job(env):
    before = set(job_runner.execution_ids())
    name = tasks.enqueue_job("generate-interior", task_id="interior-abc", args=["--interior", "abc"])
    assert name.endswith("/queues/generate-interior/tasks/interior-abc")
    with pytest.raises(tasks.TaskExists):
        tasks.enqueue_job("generate-interior", task_id="interior-abc", args=["--interior", "abc"])
    executions = [e for e in job_runner.execution_ids() if e not in before]
    assert len(executions) == 1
    execution = job_runner.wait(executions[0], timeout=60)
    assert execution.succeeded  # an unknown interior is skipped, not a crash
    with pytest.raises(ValueError):
        tasks.enqueue_job("generate-interior", task_id="bad id/with slash")


def test_local_queue_reports_a_job_that_cannot_start(env):
    with pytest.raises(tasks.EnqueueFailed):
        tasks.enqueue_job("no-such-job", task_id="t-1")
    assert db.collection("local_tasks").count_documents({}) == 0  # a later retry may enqueue again


# --- tasks: Cloud Tasks adapter against gcloud-tasks-emulator ---------------------------------------------

@pytest.fixture
def cloud_tasks(env, tmp_path):
    settings = get_settings()
    emulator = TasksEmulator(settings.gcp_project, settings.gcp_region, settings.tasks_queue_name,
                             log_path=tmp_path / "tasks.log").start()
    cloud_run = CloudRunDouble().start()
    env(task_queue="cloudtasks", tasks_emulator_host=emulator.host, cloud_run_api_url=cloud_run.url,
        tasks_service_account="tasks@zipkku-local.iam.gserviceaccount.com")
    yield cloud_run
    cloud_run.stop()
    emulator.stop()


def test_cloud_tasks_dispatches_a_cloud_run_jobs_run_request(cloud_tasks):
    tasks.ensure_queue()  # idempotent: the emulator already has it
    name = tasks.enqueue_job("generate-interior", task_id="interior-xyz", args=["--interior", "xyz"],
                             env={"TRACE": "1"})
    assert name == f"{tasks.queue_path()}/tasks/interior-xyz"
    assert cloud_tasks.received.wait(15), "the emulator never dispatched the task"
    run = cloud_tasks.runs[0]
    s = get_settings()
    assert run["method"] == "POST"
    assert run["path"] == f"/v2/projects/{s.gcp_project}/locations/{s.gcp_region}/jobs/generate-interior:run"
    assert run["body"] == {"overrides": {"containerOverrides": [
        {"args": ["--interior", "xyz"], "env": [{"name": "TRACE", "value": "1"}]}]}}


def test_a_generation_task_can_only_start_the_job_as_it_is(env, tmp_path):
    """A generation request asks for nothing but a run of generate-interior: no arguments, no environment, so
    the identity the queue starts it with needs only run.jobs.run (roles/run.invoker on the job) and code in a
    public function cannot start the worker with chosen settings. The run claims queued interiors from Mongo."""
    settings = get_settings()
    emulator = TasksEmulator(settings.gcp_project, settings.gcp_region, settings.tasks_queue_name,
                             log_path=tmp_path / "tasks.log").start()
    cloud_run = CloudRunDouble(overrides_allowed=False).start()
    try:
        env(task_queue="cloudtasks", tasks_emulator_host=emulator.host, cloud_run_api_url=cloud_run.url)
        interiors.enqueue({"_id": "int-42"})
        assert cloud_run.received.wait(15), "the emulator never dispatched the task"
        run = cloud_run.runs[0]
        assert run["path"].endswith("/jobs/generate-interior:run")
        assert run["body"] == {}, "a generation task must not carry overrides"
    finally:
        cloud_run.stop()
        emulator.stop()


def test_cloud_tasks_task_definition_and_queue_retry_policy(cloud_tasks, env):
    env(tasks_max_attempts=7, tasks_min_backoff_seconds=2.5, tasks_max_backoff_seconds=60)
    queue = tasks.queue_definition()
    assert queue["retry_config"] == {"max_attempts": 7, "min_backoff": {"seconds": 2, "nanos": 500_000_000},
                                     "max_backoff": {"seconds": 60, "nanos": 0}}
    assert cloudrun.run_job_body([], {}, 3) == {"overrides": {"containerOverrides": [{"args": [], "env": []}],
                                                           "taskCount": 3}}


def test_cloud_tasks_unreachable_is_enqueue_failed(env):
    from scripts.localstack import free_port

    env(task_queue="cloudtasks", tasks_emulator_host=f"127.0.0.1:{free_port()}")
    with pytest.raises(tasks.EnqueueFailed):
        tasks.enqueue_job("generate-interior", task_id="interior-1")


# --- events ----------------------------------------------------------------------------------------------

def test_local_events_deliver_a_pubsub_cloud_event_to_subscribers(env, make_user):
    user = make_user()["user"]
    db.collection("interiors").insert_one({"_id": "i-1", "user_id": user["id"], "style": "boho",
                                           "room_type": "living_room"})
    message_id = events.publish(get_settings().interior_finished_topic,
                                {"interior_id": "i-1", "user_id": user["id"], "status": "done"},
                                kind="interior.finished")
    note = db.collection("notifications").find_one({"user_id": user["id"]})
    assert message_id and note["interior_id"] == "i-1" and note["message"] == "Your boho living room is ready."
    assert events.publish("some-other-topic", {"x": 1}, kind="other")  # no subscriber: still published


def test_local_events_reach_no_unreachable_subscriber_and_never_raise(env, make_user, caplog):
    """Like Pub/Sub: the publisher's work is done once the message is published; a subscriber that is down is
    the subscription's problem (logged), never the publisher's."""
    from scripts.localstack import free_port

    user = make_user()["user"]
    env(local_events_push_url=f"http://127.0.0.1:{free_port()}")
    with caplog.at_level("ERROR", logger="zipkku.events"):
        assert events.publish(get_settings().interior_finished_topic,
                              {"interior_id": "i-2", "user_id": user["id"], "status": "done"}, kind="interior.finished")
    assert db.collection("notifications").count_documents({"user_id": user["id"]}) == 0
    assert "on_interior_finished unreachable" in caplog.text


def _pubsub(stack) -> PubSubEmulator:
    emulator = next((c for c in stack.components if isinstance(c, PubSubEmulator)), None)
    if emulator is None:
        pytest.skip("the Pub/Sub emulator is not installed on this machine")
    return emulator


def test_pubsub_publisher_contract_against_the_emulator(env, stack):
    from google.cloud import pubsub_v1

    emulator = _pubsub(stack)
    emulator.create_topic("interior-finished-contract")
    subscription = emulator.create_subscription("interior-finished-contract-sub", "interior-finished-contract")
    env(events="pubsub", pubsub_emulator_host=emulator.host)
    message_id = events.publish("interior-finished-contract", {"interior_id": "i-9", "status": "failed"},
                                kind="interior.finished")
    subscriber = pubsub_v1.SubscriberClient()
    try:
        response = subscriber.pull(subscription=subscription, max_messages=5, timeout=10)
        messages = [m.message for m in response.received_messages]
        subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
    finally:
        subscriber.close()
    assert [m.message_id for m in messages] == [message_id]
    assert json.loads(messages[0].data) == {"interior_id": "i-9", "status": "failed"}
    assert dict(messages[0].attributes) == {"kind": "interior.finished"}
