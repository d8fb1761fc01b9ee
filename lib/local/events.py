"""Pub/Sub without Google (EVENTS=local; lib.events.publish calls it): a push subscription in miniature.

Each message becomes the CloudEvent Eventarc delivers for a Pub/Sub message (lib.events.pubsub_cloud_event),
POSTed in binary content mode to every function subscribed to the topic at LOCAL_EVENTS_PUSH_URL, the dev
server that `make run` (and the test session) serves every function from, under its URL path. So the
subscriber runs exactly as it does behind a real push subscription, in its own server, and lib never loads a
function. A subscriber's failure (non-2xx, unreachable) is logged, never raised: the publisher's work is
already done, as with real Pub/Sub. Without a push URL a message has no subscription and is dropped, as
Pub/Sub drops a message published to a topic nobody subscribes to.
"""

from __future__ import annotations

import logging

import requests
from cloudevents.conversion import to_binary

from lib import db, discovery
from lib.config import get_settings
from lib.events import pubsub_cloud_event

log = logging.getLogger("zipkku.events")

# settings field naming a topic -> the CloudEvent functions subscribed to it (mirrors terraform's triggers)
SUBSCRIBERS: dict[str, list[str]] = {
    "interior_finished_topic": ["on_interior_finished"],
}
PUSH_TIMEOUT_SECONDS = 30


def subscribers(topic: str) -> list[str]:
    settings = get_settings()
    return [name for field, names in SUBSCRIBERS.items() if getattr(settings, field) == topic for name in names]


def publish(topic: str, data: bytes, attributes: dict[str, str]) -> str:
    """Deliver the message to every subscriber of `topic` (synchronously); returns the message id."""
    message_id = db.new_id()
    names = subscribers(topic)
    base_url = get_settings().local_events_push_url.rstrip("/")
    if names and not base_url:
        log.warning("LOCAL_EVENTS_PUSH_URL is not set: message %s on %s reaches no subscriber", message_id, topic)
        return message_id
    headers, body = to_binary(pubsub_cloud_event(topic, data, attributes, message_id))
    for name in names:
        url = base_url + discovery.url_path(name)
        try:
            response = requests.post(url, data=body, headers=headers, timeout=PUSH_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            log.error("local subscriber %s unreachable for message %s: %s", name, message_id, type(exc).__name__)
            continue
        if not response.ok:
            log.error("local subscriber %s answered %s for message %s", name, response.status_code, message_id)
    return message_id
