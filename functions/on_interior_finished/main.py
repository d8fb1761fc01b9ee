"""CloudEvent (Pub/Sub `interior-finished`): record an in-app notification for the interior's owner.

Idempotent per interior and status (lib.notifications): a redelivered message (Pub/Sub delivers at least once)
and a re-published one (the job's sweep) record nothing new. Malformed messages are logged and dropped, never
raised: a raise would make Pub/Sub redeliver them forever.
"""

import logging

import functions_framework

from lib import events, notifications
from lib.log import setup_logging

setup_logging()
log = logging.getLogger("zipkku.on_interior_finished")


@functions_framework.cloud_event
def on_interior_finished(cloud_event):
    try:
        message_id, payload = events.message_payload(cloud_event)
    except ValueError as exc:
        log.warning("dropping a malformed interior.finished message: %s", exc)
        return
    outcome = notifications.record_interior_finished(message_id, payload)
    log.info("interior.finished %s for %s: %s", message_id, payload.get("interior_id"), outcome)
