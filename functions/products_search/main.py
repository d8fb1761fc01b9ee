"""GET /products-search ?label=&q=&max_width_cm=&max_depth_cm=&max_height_cm=&min_price=&max_price=&limit=&cursor=
-> {products, next_cursor}. Sorted by id with an opaque cursor: pages never overlap or skip."""

from lib import catalog, storage
from lib.config import get_settings
from lib.http import cached_json_response, http_function


@http_function(methods=["GET"], query=catalog.SearchQuery, response=catalog.ProductsPage, cached=True,
               tags=["catalog"], summary="Search products by label, size that fits, price and text",
               description="Pass next_cursor back as cursor for the next page.")
def products_search(request, query):
    products, next_cursor = catalog.search_products(query)
    return cached_json_response(
        request, [products, next_cursor, catalog.signing_epoch()],
        lambda: catalog.ProductsPage(
            products=storage.signed_links(lambda: [catalog.public_product(p) for p in products]),
            next_cursor=next_cursor),
        max_age=get_settings().catalog_cache_seconds,
    )
