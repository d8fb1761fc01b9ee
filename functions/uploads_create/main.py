"""POST /uploads-create {content_type, size_bytes} -> 201 {upload: {id, status: "pending"}, put_url, headers,
expires_at}. PUT the photo to put_url with exactly these headers; the upload becomes ready or rejected."""

from lib import uploads
from lib.http import http_function, json_response, parse_json


@http_function(methods=["POST"], auth=True)
def uploads_create(request, user):
    body = parse_json(request, uploads.CreateBody)
    # The reply carries a signed URL (a credential): http_function marks it private, no-store.
    return json_response(uploads.create_pending(user["_id"], body), 201)
