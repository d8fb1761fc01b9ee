"""Domain events: publish to Pub/Sub in production, push straight to the subscribers locally.

    events.publish(settings.interior_finished_topic, {"interior_id": ..., "status": "done"}, kind="interior.finished")

- "pubsub": google-cloud-pubsub's PublisherClient (created once per process; honours PUBSUB_EMULATOR_HOST), the
  payload as JSON with `kind` as an attribute; returns the message id. Subscriptions (push to the CloudEvent
  functions through Eventarc) are terraform's business.
- "local": lib.local.events (imported only when configured) delivers the same message as a push subscription
  does: the `google.cloud.pubsub.topic.v1.messagePublished` CloudEvent built by `pubsub_cloud_event`, POSTed
  to each subscribed function on the local dev server.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cloudevents.http import CloudEvent

from lib import clients, db
from lib.config import get_settings


def publish(topic: str, payload: dict[str, Any], *, kind: str) -> str:
    """Publish `payload` (JSON) to `topic`; returns the message id."""
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    if get_settings().events == "pubsub":
        return _publish_pubsub(topic, data, {"kind": kind})
    from lib.local import events as local_events  # local stand-in: never imported in production

    return local_events.publish(topic, data, {"kind": kind})


# --- Pub/Sub ---------------------------------------------------------------------------------------------

def _publisher():
    def create():
        import google.cloud.pubsub_v1 as pubsub_v1  # heavy client: loaded on the first publish

        return pubsub_v1.PublisherClient()

    return clients.cached(("pubsub-publisher",), create)


def _publish_pubsub(topic: str, data: bytes, attributes: dict[str, str]) -> str:
    publisher = _publisher()
    future = publisher.publish(publisher.topic_path(get_settings().gcp_project, topic), data, **attributes)
    return future.result(timeout=30)


# --- the CloudEvent a push subscription delivers ---------------------------------------------------------

def pubsub_cloud_event(topic: str, data: bytes, attributes: dict[str, str], message_id: str):
    """The CloudEvent Eventarc delivers for a Pub/Sub message (also used by tests)."""
    project = get_settings().gcp_project
    published = db.utcnow().isoformat().replace("+00:00", "Z")
    return CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished",
         "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}", "id": message_id},
        {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": message_id,
                     "publishTime": published},
         "subscription": f"projects/{project}/subscriptions/{topic}-local"},
    )


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
