"""Domain events: publish to Pub/Sub in production, deliver in-process locally.

    events.publish(settings.interior_finished_topic, {"interior_id": ..., "status": "done"}, kind="interior.finished")

- "pubsub": google-cloud-pubsub's PublisherClient (created once per process; honours PUBSUB_EMULATOR_HOST), the
  payload as JSON with `kind` as an attribute; returns the message id. Subscriptions (push to the CloudEvent
  functions through Eventarc) are terraform's business.
- "local": the same message wrapped exactly as Eventarc delivers it (a `google.cloud.pubsub.topic.v1.
  messagePublished` CloudEvent with base64 data and a fresh message id) and handed to the CloudEvent functions
  subscribed to the topic in LOCAL_SUBSCRIBERS, in this process. A subscriber's failure is logged, never
  raised: the publisher's work is already done, as with real Pub/Sub.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from lib import db
from lib.config import get_settings

log = logging.getLogger("zipkku.events")

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"

# settings field naming a topic -> the CloudEvent functions subscribed to it (mirrors terraform's triggers)
LOCAL_SUBSCRIBERS: dict[str, list[str]] = {
    "interior_finished_topic": ["on_interior_finished"],
}


def publish(topic: str, payload: dict[str, Any], *, kind: str) -> str:
    """Publish `payload` (JSON) to `topic`; returns the message id."""
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    if get_settings().events == "pubsub":
        return _publish_pubsub(topic, data, {"kind": kind})
    return _publish_local(topic, data, {"kind": kind})


# --- Pub/Sub ---------------------------------------------------------------------------------------------

@functools.cache
def _publisher():
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()


def _publish_pubsub(topic: str, data: bytes, attributes: dict[str, str]) -> str:
    publisher = _publisher()
    future = publisher.publish(publisher.topic_path(get_settings().gcp_project, topic), data, **attributes)
    return future.result(timeout=30)


# --- local, in-process -----------------------------------------------------------------------------------

def pubsub_cloud_event(topic: str, data: bytes, attributes: dict[str, str], message_id: str):
    """The CloudEvent Eventarc delivers for a Pub/Sub message (also used by tests)."""
    from cloudevents.http import CloudEvent

    project = get_settings().gcp_project
    published = db.utcnow().isoformat().replace("+00:00", "Z")
    return CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished",
         "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}", "id": message_id},
        {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": message_id,
                     "publishTime": published},
         "subscription": f"projects/{project}/subscriptions/{topic}-local"},
    )


@functools.cache
def _load_function(name: str):
    spec = importlib.util.spec_from_file_location(f"zipkku_local_fn_{name}", FUNCTIONS_DIR / name / "main.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return getattr(module, name)


def _publish_local(topic: str, data: bytes, attributes: dict[str, str]) -> str:
    settings = get_settings()
    message_id = db.new_id()
    event = pubsub_cloud_event(topic, data, attributes, message_id)
    for field, names in LOCAL_SUBSCRIBERS.items():
        if getattr(settings, field) != topic:
            continue
        for name in names:
            try:
                _load_function(name)(event)
            except Exception:  # noqa: BLE001 - a subscriber's bug must not undo the publisher's work
                log.exception("local subscriber %s failed for message %s", name, message_id)
    return message_id


def message_payload(cloud_event) -> tuple[str, dict[str, Any]]:
    """(message id, decoded JSON payload) of a Pub/Sub CloudEvent; ValueError when it is not one of ours."""
    data = cloud_event.data if isinstance(cloud_event.data, dict) else {}
    message = data.get("message") if isinstance(data.get("message"), dict) else None
    if message is None:
        raise ValueError("not a Pub/Sub message")
    message_id = message.get("messageId") or message.get("message_id") or cloud_event["id"]
    try:
        payload = json.loads(base64.b64decode(message.get("data") or "", validate=True))
    except (ValueError, TypeError):
        raise ValueError("the message data is not base64 JSON") from None
    if not isinstance(payload, dict) or not message_id:
        raise ValueError("the message is not a JSON object with an id")
    return str(message_id), payload
