"""POST /uploads-direct multipart `file` -> 201 {upload} already processed (synchronously, same checks and
normalization as signed uploads). For small clients and for the old `POST /interiors/image`."""

from lib import errors, uploads
from lib.config import get_settings
from lib.http import client_address, http_function, json_response

# The photo limit plus room for the multipart envelope (boundaries, part headers).
MULTIPART_OVERHEAD = 64 * 1024


@http_function(methods=["POST"], auth=True, max_body_bytes=get_settings().max_upload_bytes + MULTIPART_OVERHEAD,
               multipart_file="file", response=uploads.UploadAnswer, status=201, errors=(400, 413, 415, 422, 429),
               tags=["uploads"], summary="Upload a photo as multipart `file`, processed synchronously",
               description="429 UPLOAD_RATE_LIMITED over UPLOADS_PER_HOUR new uploads per user or "
                           "UPLOADS_PER_ADDRESS_PER_HOUR per client address.")
def uploads_direct(request, user):
    if request.mimetype != "multipart/form-data":
        raise errors.UnsupportedMediaType("Send the photo as multipart/form-data with a 'file' part.")
    part = request.files.get("file")
    if part is None:
        raise errors.ValidationFailed(
            "The request is not valid.",
            details=[{"field": "file", "message": "a 'file' part is required", "type": "missing"}],
        )
    doc = uploads.create_direct(user["_id"], part.read(), part.mimetype, client_address(request))
    return json_response(uploads.UploadAnswer(upload=uploads.public_upload(doc)), 201)
