"""CloudEvent google.cloud.storage.object.v1.finalized (Eventarc, uploads bucket): check and normalize a
freshly uploaded photo, mark its upload ready or rejected. Events for other objects are ignored; bad input
is recorded on the upload, never raised (a raise makes Eventarc redeliver)."""

import logging

import functions_framework

from lib import storage, uploads
from lib.log import setup_logging

setup_logging()
log = logging.getLogger("zipkku.on_upload_finalized")


@functions_framework.cloud_event
def on_upload_finalized(cloud_event):
    obj = storage.finalized_object(cloud_event)
    if obj is None:
        log.warning("ignoring event %s of type %s: not a finalized object", cloud_event["id"], cloud_event["type"])
        return
    outcome = uploads.handle_finalized(obj)
    log.info("finalized %s/%s generation %s: %s", obj.get("bucket"), obj.get("name"), obj.get("generation"), outcome)
