"""GET /products-similar ?product_id=&limit=&label= -> {products: [... with score]}: the nearest products by image
embedding (one vector query, same label as the product unless ?label= says otherwise); the product itself first."""

from lib import catalog, storage
from lib.config import get_settings
from lib.http import cached_json_response, http_function, parse_query


@http_function(methods=["GET"])
def products_similar(request):
    query = parse_query(request, catalog.SimilarQuery)
    results = catalog.similar_products(query)
    return cached_json_response(
        request, [[(p, round(s, 6)) for p, s in results], catalog.signing_epoch()],
        lambda: {"product_id": query.product_id,
                 "products": storage.signed_links(lambda: [catalog.public_product(p, s) for p, s in results])},
        max_age=get_settings().catalog_cache_seconds,
    )
