"""CloudEvent google.cloud.storage.object.v1.finalized (catalog bucket): a catalog file dropped under the
catalog prefix starts the import_catalog job for it (once per object generation). Other objects are ignored;
bad events are logged, never raised (a raise makes Eventarc redeliver)."""

import json
import logging

import functions_framework

from lib import catalog_import
from lib.log import setup_logging

setup_logging()
log = logging.getLogger("zipkku.on_catalog_uploaded")

FINALIZED = "google.cloud.storage.object.v1.finalized"


@functions_framework.cloud_event
def on_catalog_uploaded(cloud_event):
    if cloud_event["type"] != FINALIZED:
        log.warning("ignoring event of type %s", cloud_event["type"])
        return
    data = cloud_event.data
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            data = None
    if not isinstance(data, dict):
        log.warning("ignoring finalized event %s without an object resource", cloud_event["id"])
        return
    outcome = catalog_import.handle_catalog_object(data)
    log.info("catalog object %s/%s: %s", data.get("bucket"), data.get("name"), outcome)
