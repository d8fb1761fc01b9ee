"""GET /styles-list -> {styles, room_types}; ?name=<id or name> -> {style} (the old `style-info`), 404 if unknown."""

from lib import catalog, storage
from lib.config import get_settings
from lib.http import cached_json_response, http_function, parse_query


@http_function(methods=["GET"])
def styles_list(request):
    query = parse_query(request, catalog.StylesQuery)
    max_age = get_settings().catalog_cache_seconds
    if query.name:
        style = catalog.find_style(query.name)
        return cached_json_response(request, [style, catalog.signing_epoch()],
                                    lambda: {"style": catalog.public_style(style)}, max_age=max_age)
    styles, room_types = catalog.styles_and_room_types()
    return cached_json_response(
        request, [styles, room_types, catalog.signing_epoch()],
        lambda: {"styles": storage.signed_links(lambda: [catalog.public_style(s) for s in styles]),
                 "room_types": [catalog.public_room_type(r) for r in room_types]},
        max_age=max_age,
    )
