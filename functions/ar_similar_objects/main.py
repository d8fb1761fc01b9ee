"""POST /ar-similar-objects {label} (or GET ?label=) -> {objects: [{id, label, model_url, image_url, position,
rotation, scale, width, depth, height}]}: the label's .glb models with the median dimensions (cm) of its products
(compatible with the old /api/ar/similar-object). Unknown label -> 404 naming the known labels."""

from lib import catalog, storage
from lib.config import get_settings
from lib.http import cached_json_response, http_function, parse_json, parse_query


@http_function(methods=["GET", "POST"])
def ar_similar_objects(request):
    parse = parse_json if request.method == "POST" else parse_query
    query = parse(request, catalog.ArQuery)
    models, typical = catalog.ar_models_for(query.label)
    return cached_json_response(
        request, [models, typical, catalog.signing_epoch()],
        lambda: {"label": query.label,
                 "objects": storage.signed_links(lambda: [catalog.public_ar_object(m, typical) for m in models])},
        max_age=get_settings().catalog_cache_seconds,
    )
