"""GET /uploads-get?id= -> {upload: {id, status, reason?, image_url?, thumbnail_url?, width?, height?}}."""

from lib import storage, uploads
from lib.http import http_function, json_response


@http_function(methods=["GET"], auth=True, query=uploads.GetQuery, response=uploads.UploadAnswer, errors=(404,),
               tags=["uploads"], summary="An upload's status and, when ready, signed image URLs")
def uploads_get(request, user, query):
    doc = uploads.get_for_user(user["_id"], query.id)
    return json_response(uploads.UploadAnswer(upload=storage.signed_links(lambda: uploads.public_upload(doc))))
