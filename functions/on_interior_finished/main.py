"""CloudEvent (Pub/Sub `interior-finished`): record an in-app notification for the interior's owner.

Idempotent per interior and status (lib.notifications): a redelivered message (Pub/Sub delivers at least once)
and a re-published one (the job's sweep) record nothing new. Malformed messages are logged and dropped, never
raised: a raise would make Pub/Sub redeliver them forever.
"""

from lib import events, notifications
from lib.http import cloud_event_function


@cloud_event_function(parse=events.message_payload)
def on_interior_finished(message):
    message_id, payload = message
    outcome = notifications.record_interior_finished(message_id, payload)
    return f"interior.finished {message_id} for {payload.get('interior_id')}: {outcome}"
