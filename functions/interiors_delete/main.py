"""DELETE /interiors-delete?id= (or POST {interior_id}) -> 204; removes the interior and its stored images."""

from lib import interiors
from lib.http import http_function, no_content, parse_json, parse_query


@http_function(methods=["DELETE", "POST"], auth=True)
def interiors_delete(request, user):
    if request.method == "POST":
        interior_id = parse_json(request, interiors.DeleteBody).interior_id
    else:
        interior_id = parse_query(request, interiors.GetQuery).id
    interiors.delete(user["_id"], interior_id)
    return no_content()
