"""CloudEvent google.cloud.storage.object.v1.finalized (catalog bucket): a catalog file dropped under the
catalog prefix starts the import_catalog job for it (once per object generation). Other objects are ignored;
bad events are logged, never raised (a raise makes Eventarc redeliver)."""

import logging

import functions_framework

from lib import catalog_import, storage
from lib.log import setup_logging

setup_logging()
log = logging.getLogger("zipkku.on_catalog_uploaded")


@functions_framework.cloud_event
def on_catalog_uploaded(cloud_event):
    obj = storage.finalized_object(cloud_event)
    if obj is None:
        log.warning("ignoring event %s of type %s: not a finalized object", cloud_event["id"], cloud_event["type"])
        return
    outcome = catalog_import.handle_catalog_object(obj)
    log.info("catalog object %s/%s: %s", obj.get("bucket"), obj.get("name"), outcome)
