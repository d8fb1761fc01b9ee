"""GET /interiors-get?id= -> {interior} with status, progress and, when done, variants, parts, products, AR."""

from lib import interiors, storage
from lib.http import http_function, json_response, parse_query


@http_function(methods=["GET"], auth=True)
def interiors_get(request, user):
    query = parse_query(request, interiors.GetQuery)
    doc = interiors.get_owned(user["_id"], query.id)
    return json_response({"interior": storage.signed_links(lambda: interiors.view(doc))})
