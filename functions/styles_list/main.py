"""GET /styles-list -> {styles, room_types}; ?name=<id or name> -> {style} (the old `style-info`), 404 if unknown."""

from lib import catalog, storage
from lib.config import get_settings
from lib.http import cached_json_response, http_function


@http_function(methods=["GET"], query=catalog.StylesQuery, response=catalog.StylesListAnswer, errors=(404,),
               cached=True, tags=["catalog"], summary="Styles and room types (or one style with ?name=)",
               description="Without `name`: {styles, room_types}. With `name` (an id or a display name): {style}, "
                           "or 404 STYLE_NOT_FOUND naming the known styles.")
def styles_list(request, query):
    max_age = get_settings().catalog_cache_seconds
    if query.name:
        style = catalog.find_style(query.name)
        return cached_json_response(request, [style, catalog.signing_epoch()],
                                    lambda: catalog.StyleAnswer(style=catalog.public_style(style)), max_age=max_age)
    styles, room_types = catalog.styles_and_room_types()
    return cached_json_response(
        request, [styles, room_types, catalog.signing_epoch()],
        lambda: catalog.StylesAnswer(styles=storage.signed_links(lambda: [catalog.public_style(s) for s in styles]),
                                     room_types=[catalog.public_room_type(r) for r in room_types]),
        max_age=max_age,
    )
