"""GET /interiors-list?saved=&limit=&cursor= -> {interiors (newest first), next_cursor}."""

from lib import interiors, storage
from lib.http import http_function, json_response, parse_query


@http_function(methods=["GET"], auth=True)
def interiors_list(request, user):
    query = parse_query(request, interiors.ListQuery)
    docs, next_cursor = interiors.list_for(user["_id"], query)
    views = storage.signed_links(lambda: [interiors.view(d, summary=True) for d in docs])
    return json_response({"interiors": views, "next_cursor": next_cursor})
