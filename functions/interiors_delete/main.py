"""DELETE /interiors-delete?id= (or POST {interior_id}) -> 204; removes the interior and its stored images."""

from lib import interiors
from lib.http import Operation, http_function, no_content


@http_function(auth=True, tags=["interiors"], methods={
    "DELETE": Operation("Delete an interior and its stored images (?id=)", query=interiors.GetQuery, status=204,
                        errors=(404,)),
    "POST": Operation("Delete an interior and its stored images", body=interiors.DeleteBody, status=204,
                      errors=(404,)),
})
def interiors_delete(request, user, body=None, query=None):
    interior_id = body.interior_id if body is not None else query.id
    interiors.delete(user["_id"], interior_id)
    return no_content()
