"""GET /interiors-get?id= -> {interior} with status, progress and, when done, variants, parts, products, AR."""

from lib import interiors, storage
from lib.http import http_function, json_response


@http_function(methods=["GET"], auth=True, query=interiors.GetQuery, response=interiors.InteriorAnswer,
               errors=(404,), tags=["interiors"], summary="An interior's status, progress and results")
def interiors_get(request, user, query):
    doc = interiors.get_owned(user["_id"], query.id)
    return json_response(interiors.InteriorAnswer(interior=storage.signed_links(lambda: interiors.view(doc))))
