"""CloudEvent google.cloud.storage.object.v1.finalized (catalog bucket): a catalog file dropped under the
catalog prefix starts the import_catalog job for it (once per object generation). Other objects are ignored;
bad events are logged, never raised (a raise makes Eventarc redeliver)."""

from lib import catalog_import, storage
from lib.http import cloud_event_function


@cloud_event_function(parse=storage.finalized_object)
def on_catalog_uploaded(obj):
    outcome = catalog_import.handle_catalog_object(obj)
    return f"catalog object {obj.get('bucket')}/{obj.get('name')}: {outcome}"
