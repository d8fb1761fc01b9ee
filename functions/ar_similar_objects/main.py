"""POST /ar-similar-objects {label} (or GET ?label=) -> {objects: [{id, label, model_url, image_url, position,
rotation, scale, width, depth, height}]}: the label's .glb models with the median dimensions (cm) of its products
(compatible with the old /api/ar/similar-object). Unknown label -> 404 naming the known labels."""

from lib import catalog, storage
from lib.config import get_settings
from lib.http import Operation, cached_json_response, http_function

SUMMARY = "3D models for a label with its typical dimensions"


@http_function(tags=["catalog"], methods={
    "GET": Operation(SUMMARY, query=catalog.ArQuery, response=catalog.ArObjects, errors=(404,), cached=True),
    "POST": Operation(SUMMARY, body=catalog.ArQuery, response=catalog.ArObjects, errors=(404,), cached=True),
})
def ar_similar_objects(request, body=None, query=None):
    label = (body or query).label
    models, typical = catalog.ar_models_for(label)
    return cached_json_response(
        request, [models, typical, catalog.signing_epoch()],
        lambda: catalog.ArObjects(label=label, objects=storage.signed_links(
            lambda: [catalog.public_ar_object(m, typical) for m in models])),
        max_age=get_settings().catalog_cache_seconds,
    )
