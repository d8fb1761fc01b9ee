"""POST /uploads-create {content_type, size_bytes} -> 201 {upload: {id, status: "pending"}, put_url, headers,
expires_at}. PUT the photo to put_url with exactly these headers; the upload becomes ready or rejected."""

from lib import uploads
from lib.http import client_address, http_function, json_response


@http_function(methods=["POST"], auth=True, body=uploads.CreateBody, response=uploads.PendingUpload, status=201,
               errors=(429,), tags=["uploads"], summary="Start a signed direct upload of a room photo",
               description="PUT the bytes to put_url with exactly `headers`. 413/415 for a size or type we do not "
                           "accept; 429 UPLOAD_RATE_LIMITED over UPLOADS_PER_HOUR new uploads per user or "
                           "UPLOADS_PER_ADDRESS_PER_HOUR per client address.")
def uploads_create(request, user, body):
    # The reply carries a signed URL (a credential): http_function marks it private, no-store.
    return json_response(uploads.create_pending(user["_id"], body, client_address(request)), 201)
