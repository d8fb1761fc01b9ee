"""GET /interiors-list?saved=&limit=&cursor= -> {interiors (newest first), next_cursor}."""

from lib import interiors, storage
from lib.http import http_function, json_response


@http_function(methods=["GET"], auth=True, query=interiors.ListQuery, response=interiors.InteriorPage,
               tags=["interiors"], summary="The caller's interiors, newest first")
def interiors_list(request, user, query):
    docs, next_cursor = interiors.list_for(user["_id"], query)
    views = storage.signed_links(lambda: [interiors.summary_view(d) for d in docs])
    return json_response(interiors.InteriorPage(interiors=views, next_cursor=next_cursor))
