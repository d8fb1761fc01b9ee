"""products-search's text and filters on a hand-written catalog (each test its own database on SecantusDB):
every word of `q` must start a word of the product's name, brand or label, in any case and with or without
accents; it combines with label, price and dimensions; pages stay stable while the catalog changes."""

from __future__ import annotations

import pytest

from lib import catalog, catalog_import, db


def product(pid, name, label="sofa", brand="Hjem", price=500.0, width=200.0, **extra):
    return {"_id": pid, "label": label, "name": name, "brand": brand, "price": price, "currency": "EUR",
            "dimensions": {"width_cm": width, "depth_cm": 90.0, "height_cm": 80.0}, **extra}


def write(*docs):
    catalog.upsert_products([{**d, "search_tokens": catalog.search_tokens(d)} for d in docs])


def ids(fn, **params):
    response = fn("products_search").get("/", query_string={"limit": 100, **params})
    assert response.status_code == 200, response.get_json()
    return [p["id"] for p in response.get_json()["products"]]


@pytest.fixture
def shop():
    write(product("p1", "Café Oak sofa"),
          product("p2", "Oakley floor lamp", label="lamp", brand="Lumen", price=80.0, width=40.0),
          product("p3", "Soft velvet armchair", label="armchair", brand="Kaze", price=300.0, width=80.0),
          product("p4", "Mid-Century oak desk", label="desk", brand="Hjem", price=250.0, width=120.0),
          product("p5", "Cloak rack", label="rack", brand="Other", price=40.0, width=60.0))


@pytest.mark.parametrize(("q", "expected"), [
    ("oak", ["p1", "p2", "p4"]),  # a word or the start of one ("Oakley"), never its middle ("Cloak")
    ("OAK", ["p1", "p2", "p4"]),
    ("oa", ["p1", "p2", "p4"]),
    ("oak sof", ["p1"]),  # every word must match
    ("sofa oak", ["p1"]),  # in any order
    ("cafe", ["p1"]), ("CAFÉ", ["p1"]), ("café", ["p1"]),  # accents and case do not matter
    ("hjem", ["p1", "p4"]),  # the brand
    ("armchair", ["p3"]), ("lamp", ["p2"]),  # the label
    ("mid-century", ["p4"]), ("century mid", ["p4"]),  # punctuation separates words
    ("oak x", ["p1", "p2", "p4"]),  # one-letter words are left out
    ("ak", []), ("loak", []), ("oakx", []),
])
def test_text_matches_words_and_their_starts(fn, shop, q, expected):
    assert ids(fn, q=q) == expected


@pytest.mark.parametrize("q", ["x", "-", "a b"])
def test_a_query_without_a_searchable_word_is_400(fn, shop, q):
    response = fn("products_search").get("/", query_string={"q": q})
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["field"] == "q"


def test_long_words_match_on_their_first_fifteen_characters(fn):
    write(product("p1", "Superextraordinarily comfy sofa"))
    assert ids(fn, q="superextraordinarily") == ids(fn, q="superextraordin") == ["p1"]
    assert ids(fn, q="superextraordinaire") == ["p1"]  # same first 15 characters: an accepted false positive


def test_text_combines_with_label_price_and_dimensions(fn, shop):
    write(product("p6", "Oak bench sofa", price=900.0, width=150.0), product("p7", "Oak wide sofa", width=260.0))
    assert ids(fn, q="oak", label="sofa") == ["p1", "p6", "p7"]
    assert ids(fn, q="oak", label="sofa", max_price=600) == ["p1", "p7"]
    assert ids(fn, q="oak", label="sofa", max_price=600, max_width_cm=220) == ["p1"]
    assert ids(fn, q="oak", min_price=100, max_price=600) == ["p1", "p4", "p7"]
    assert ids(fn, q="oak sofa", max_width_cm=200) == ["p1", "p6"]
    assert ids(fn, label="sofa", min_price=600) == ["p6"]
    assert ids(fn, min_price=60, max_price=260) == ["p2", "p4"]
    assert ids(fn, q="oak", label="lamp", max_width_cm=30) == []


def test_pages_cover_every_match_once_in_order_while_the_catalog_changes(fn):
    write(*[product(f"s{i:02d}", f"Oak sofa {i}", price=100.0 + i) for i in range(0, 40, 2)],
          product("other", "Pine sofa"))
    seen, cursor = [], None
    while True:
        params = {"q": "oak", "label": "sofa", "max_price": 1000, "limit": 3, **({"cursor": cursor} if cursor else {})}
        body = fn("products_search").get("/", query_string=params).get_json()
        seen += [p["id"] for p in body["products"]]
        if len(seen) == 6:  # mid-way: one product before the cursor and one after it appear, one is renamed
            write(product("s01", "Oak sofa 1"), product("s37", "Oak sofa 37"), product("s30", "Pine sofa 30"))
        cursor = body["next_cursor"]
        if not cursor:
            break
    expected = [f"s{i:02d}" for i in range(0, 40, 2) if i != 30] + ["s37"]
    assert seen == sorted(expected)  # nothing twice, nothing skipped that still matches, in id order


def test_products_written_without_tokens_are_found_after_the_backfill(fn, shop):
    db.collection("products").insert_one(product("legacy", "Old oak wardrobe", label="wardrobe"))
    assert "legacy" not in ids(fn, q="oak")
    assert catalog.backfill_search_tokens() == 1
    assert catalog.backfill_search_tokens() == 0
    assert ids(fn, q="oak wardrobe") == ["legacy"]
    assert ids(fn, q="oak") == ["legacy", "p1", "p2", "p4"]


@pytest.mark.parametrize("params", [
    {"q": "oak"}, {"q": "oak sofa", "label": "sofa"}, {"q": "oak", "label": "sofa", "min_price": 10},
    {"label": "sofa"}, {"label": "sofa", "min_price": 10, "max_width_cm": 100}, {"min_price": 10}, {},
    {"max_depth_cm": 50},
])
def test_every_window_of_a_search_is_an_index_range(stack, shop, params):
    """SecantusDB scans the collection for a filter its planner cannot serve (100k products then take seconds),
    and fetches everything inside the bounds it can: each window must be equalities plus one _id range."""
    indexed, _rest = catalog.search_stages(catalog.SearchQuery(**params))
    window = {**indexed, "_id": {"$gte": "00010000", "$lt": "00210000"}}
    plan = db.collection("products").find(window).sort("_id", 1).explain()["queryPlanner"]["winningPlan"]
    stages, index = [], None
    while plan:
        stages.append(plan["stage"])
        index = plan.get("keyPattern") or index
        plan = plan.get("inputStage")
    assert "IXSCAN" in stages and "COLLSCAN" not in stages, stages
    assert list(index) == [*indexed, "_id"], index  # the equalities, then the window


# --- pages over many products: the _id windows -------------------------------------------------------------

def many(count=600):
    """Products with ids as the import makes them (hex digests, spread over the id space), a few more at the
    edges of the first windows (an id equal to a window's bound, just below it, or not hex at all), and
    criteria that let through about one in seven: the page's walk spans many windows."""
    ids = [catalog_import.product_id("test", f"https://shop.example/{i}") for i in range(count)]
    ids += ["00010000", "0000ffffffffffffffffffff", "00000000", "+first", "Zebra-9", "zz-last"]
    docs = []
    for n, pid in enumerate(ids):
        label = ("sofa", "lamp", "desk")[n % 3]
        name = f"{('Oak', 'Pine', 'Teak')[n % 7 % 3]} {('round', 'tall')[n % 2]} {label} {n}"
        docs.append(product(pid, name, label=label, price=float(50 + (n * 37) % 900), width=float(40 + n % 7 * 30)))
    for i in range(0, len(docs), 100):  # each write well within the request timeout on a loaded machine
        write(*docs[i:i + 100])
    return docs


def expected(docs, label=None, q=None, min_price=None, max_price=None, max_width_cm=None, **_):
    words = catalog.query_tokens(q) if q else []
    return sorted(d["_id"] for d in docs
                  if (label is None or d["label"] == label)
                  and all(w in catalog.search_tokens(d) for w in words)
                  and (min_price is None or d["price"] >= min_price) and (max_price is None or d["price"] <= max_price)
                  and (max_width_cm is None or d["dimensions"]["width_cm"] <= max_width_cm))


def every_page(fn, **params):
    seen, cursor, pages = [], None, 0
    while True:
        body = fn("products_search").get("/", query_string={**params, **({"cursor": cursor} if cursor else {})})
        assert body.status_code == 200, body.get_json()
        page = [p["id"] for p in body.get_json()["products"]]
        cursor, pages = body.get_json()["next_cursor"], pages + 1
        assert len(page) == params["limit"] or cursor is None  # only the last page is short
        assert page or pages == 1  # and a last page is never empty, unless it is the only one
        seen += page
        if cursor is None:
            return seen


@pytest.mark.parametrize("params", [
    {"limit": 7}, {"limit": 100}, {"label": "sofa", "limit": 5}, {"q": "oak", "limit": 6},
    {"q": "oak tall", "label": "lamp", "limit": 3},
    {"label": "desk", "max_price": 200, "max_width_cm": 100, "limit": 4},
    {"min_price": 900, "limit": 2},  # about one in a hundred: most windows hold no match
    {"q": "teak", "label": "sofa", "min_price": 100, "max_price": 300, "limit": 1},
])
def test_pages_across_windows_hold_every_match_once_in_order(fn, params):
    docs = many()
    want = expected(docs, **params)
    assert want, "the case must match something"
    assert every_page(fn, **params) == want


def test_a_page_starting_at_a_window_bound_or_after_an_id_that_is_not_hex(fn):
    docs = many(200)
    every = expected(docs)
    for after in ("00010000", "0000ffffffffffffffffffff", "+first", "Zebra-9", every[len(every) // 2]):
        body = fn("products_search").get("/", query_string={"limit": 5, "cursor": catalog.encode_cursor(after)})
        assert [p["id"] for p in body.get_json()["products"]] == [i for i in every if i > after][:5]


@pytest.mark.parametrize("params", [
    {"label": "sofa", "max_price": 10}, {"q": "oak", "max_width_cm": 1}, {"max_price": 1}, {"label": "chair"},
    {"q": "walnut"},
])
def test_a_search_that_matches_nothing_after_many_windows_is_one_empty_page(fn, params):
    many(300)
    body = fn("products_search").get("/", query_string={**params, "limit": 5}).get_json()
    assert body == {"products": [], "next_cursor": None}


def test_the_last_page_is_exactly_full_and_says_so(fn):
    docs = many(300)
    want = expected(docs, label="lamp", q="pine")
    search = {"label": "lamp", "q": "pine"}
    body = fn("products_search").get("/", query_string={**search, "limit": len(want)}).get_json()
    assert [p["id"] for p in body["products"]] == want and body["next_cursor"] is None
    body = fn("products_search").get("/", query_string={**search, "limit": len(want) - 1}).get_json()
    assert [p["id"] for p in body["products"]] == want[:-1] and body["next_cursor"]


def test_the_backfill_brings_products_of_an_older_search_version_up_to_date(fn, shop):
    products = db.collection("products")
    products.update_one({"_id": "p1"}, {"$set": {"search_version": 0, "search_tokens": ["stale"]}})
    products.update_one({"_id": "p2"}, {"$unset": {"search_version": ""}})
    assert ids(fn) == ["p3", "p4", "p5"]  # a search without label or words lists the products of this version
    assert catalog.backfill_search_tokens() == 2
    assert ids(fn) == ["p1", "p2", "p3", "p4", "p5"] and ids(fn, q="cafe oak") == ["p1"]
