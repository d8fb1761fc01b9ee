"""CloudEvent google.cloud.storage.object.v1.finalized (Eventarc, uploads bucket): check and normalize a
freshly uploaded photo, mark its upload ready or rejected. Events for other objects are ignored; bad input
is recorded on the upload, never raised (a raise makes Eventarc redeliver)."""

from lib import storage, uploads
from lib.http import cloud_event_function


@cloud_event_function(parse=storage.finalized_object)
def on_upload_finalized(obj):
    outcome = uploads.handle_finalized(obj)
    return f"{obj.get('bucket')}/{obj.get('name')} generation {obj.get('generation')}: {outcome}"
