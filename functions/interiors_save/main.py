"""POST /interiors-save {interior_id, saved} -> {interior}: add to (or remove from) the user's library."""

from lib import interiors
from lib.http import http_function, json_response, parse_json


@http_function(methods=["POST"], auth=True)
def interiors_save(request, user):
    body = parse_json(request, interiors.SaveBody)
    doc = interiors.set_saved(user["_id"], body.interior_id, body.saved)
    return json_response({"interior": interiors.view(doc)})
