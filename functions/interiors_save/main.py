"""POST /interiors-save {interior_id, saved} -> {interior}: add to (or remove from) the user's library."""

from lib import interiors
from lib.http import http_function, json_response


@http_function(methods=["POST"], auth=True, body=interiors.SaveBody, response=interiors.InteriorAnswer,
               errors=(404,), tags=["interiors"], summary="Save an interior to the library (or unsave it)")
def interiors_save(request, user, body):
    doc = interiors.set_saved(user["_id"], body.interior_id, body.saved)
    return json_response(interiors.InteriorAnswer(interior=interiors.view(doc)))
