"""GET /products-similar ?product_id=&limit=&label= -> {products: [... with score]}: the nearest products by image
embedding (one vector query, same label as the product unless ?label= says otherwise); the product itself first."""

from lib import catalog, storage
from lib.config import get_settings
from lib.http import cached_json_response, http_function


@http_function(methods=["GET"], query=catalog.SimilarQuery, response=catalog.SimilarProducts, errors=(404, 409),
               cached=True, tags=["catalog"], summary="Products that look like a product",
               description="409 NOT_EMBEDDED while the product has no vector yet (its import is still running).")
def products_similar(request, query):
    results = catalog.similar_products(query)
    return cached_json_response(
        request, [[(p, round(s, 6)) for p, s in results], catalog.signing_epoch()],
        lambda: catalog.SimilarProducts(product_id=query.product_id,
                                        products=storage.signed_links(
                                            lambda: [catalog.public_product(p, s) for p, s in results])),
        max_age=get_settings().catalog_cache_seconds,
    )
