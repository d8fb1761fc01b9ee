"""GET /uploads-get?id= -> {upload: {id, status, reason?, image_url?, thumbnail_url?, width?, height?}}."""

from lib import storage, uploads
from lib.http import http_function, json_response, parse_query


@http_function(methods=["GET"], auth=True)
def uploads_get(request, user):
    query = parse_query(request, uploads.GetQuery)
    doc = uploads.get_for_user(user["_id"], query.id)
    return json_response({"upload": storage.signed_links(lambda: uploads.public_upload(doc))})
