"""products-search's text and filters on a hand-written catalog (each test its own database on SecantusDB):
every word of `q` must start a word of the product's name, brand or label, in any case and with or without
accents; it combines with label, price and dimensions; pages stay stable while the catalog changes."""

from __future__ import annotations

import pytest

from lib import catalog, db


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
    {"label": "sofa"}, {"label": "sofa", "min_price": 10, "max_width_cm": 100}, {"min_price": 10},
    {"q": "oak", "label": "sofa", "max_price": 900, "max_width_cm": 100, "cursor": catalog.encode_cursor("p1")},
])
def test_the_indexed_part_of_every_search_is_served_by_an_index(stack, shop, params):
    """SecantusDB scans the collection for a filter its planner cannot serve; 100k products then take seconds."""
    indexed, _rest = catalog.search_stages(catalog.SearchQuery(**params))
    plan = db.collection("products").find(indexed).sort("_id", 1).explain()["queryPlanner"]["winningPlan"]
    stages = []
    while plan:
        stages.append(plan["stage"])
        plan = plan.get("inputStage")
    assert "IXSCAN" in stages and "COLLSCAN" not in stages, stages
