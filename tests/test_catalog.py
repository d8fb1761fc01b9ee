"""Catalog read functions over a small seeded catalog (the demo generator: 10 labels x 12 products), on the real
stack: SecantusDB, fake-gcs-server (signed URLs fetched with requests) and the Qdrant REST stand-in.

The catalog is seeded once for the module into its own database and vector collection; these tests only read."""

from __future__ import annotations

import statistics

import pytest
import requests

from lib import db, vectors
from lib.config import get_settings
from lib.local import glb
from lib.local.detector import label_centroids
from scripts import demo_catalog
from tests.conftest import reading_module_catalog, seeded_demo_catalog

LABELS = ["sofa", "armchair", "chair", "bed", "desk", "table", "wardrobe", "bookshelf", "lamp", "rug"]
PER_LABEL = 12


@pytest.fixture(scope="module")
def seeded(stack):
    with seeded_demo_catalog("catalog", per_label=PER_LABEL, labels=LABELS) as (env, result):
        yield {**result, "env": env}


@pytest.fixture(autouse=True)
def fresh_database(seeded):
    """Overrides conftest's per-test database: every test here reads the one seeded catalog."""
    yield from reading_module_catalog(seeded["env"])


def get(fn, function, headers=None, **params):
    return fn(function).get("/", query_string=params, headers=headers or {})


def error_code(response):
    return response.get_json()["error"]["code"]


# --- seeding -----------------------------------------------------------------------------------------------

def test_seed_counts(seeded):
    assert seeded["products"] == len(LABELS) * PER_LABEL
    assert seeded["invalid"] == seeded["failed"] == 0
    assert db.collection("products").count_documents({}) == len(LABELS) * PER_LABEL
    assert vectors.count() == len(LABELS) * PER_LABEL
    assert vectors.collection_name().endswith("__local-stylecolorshape-v1__229")


def test_demo_generator_is_deterministic():
    a, b = demo_catalog.make_products(3, ["lamp"]), demo_catalog.make_products(3, ["lamp"])
    assert a == b
    assert demo_catalog.draw_product(a[1]) == demo_catalog.draw_product(b[1])
    assert demo_catalog.make_model("bed") == demo_catalog.make_model("bed")
    assert len(demo_catalog.make_products(90)) >= 1000
    assert len(demo_catalog.STYLES) >= 8 and len(demo_catalog.ROOM_TYPES) == 6 and len(demo_catalog.LABELS) >= 10
    assert len({demo_catalog.draw_style(s) for s in demo_catalog.STYLES}) == len(demo_catalog.STYLES)


# --- GLB ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("label", list(demo_catalog.LABELS))
def test_every_model_is_a_valid_true_to_size_glb(label):
    data = demo_catalog.make_model(label)
    document, binary = glb.read_glb(data)
    assert document["asset"]["version"] == "2.0"
    assert len(data) % 4 == 0 and len(binary) == document["buffers"][0]["byteLength"]
    lo, hi = glb.bounds(document)
    width, depth, height = demo_catalog.LABELS[label]["dims"]
    assert hi[0] - lo[0] == pytest.approx(width / 100, abs=1e-4)
    assert hi[1] - lo[1] == pytest.approx(height / 100, abs=1e-4)
    assert hi[2] - lo[2] == pytest.approx(depth / 100, abs=1e-4)
    assert lo[1] == pytest.approx(0.0, abs=1e-6)  # stands on the floor
    for accessor in document["accessors"]:
        view = document["bufferViews"][accessor["bufferView"]]
        size = {"VEC3": 12, "SCALAR": 2}[accessor["type"]]
        assert accessor["count"] * size == view["byteLength"]


@pytest.mark.parametrize("mangle", [
    lambda d: d[:10], lambda d: b"xxxx" + d[4:], lambda d: d + b"\0\0\0\0",
    lambda d: d[:12] + (7).to_bytes(4, "little") + d[16:],
])
def test_read_glb_rejects_broken_containers(mangle):
    with pytest.raises(ValueError):
        glb.read_glb(mangle(demo_catalog.make_model("chair")))


# --- styles ------------------------------------------------------------------------------------------------

def test_styles_list(fn):
    response = get(fn, "styles_list")
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["styles"]) >= 8 and len(body["room_types"]) == 6
    room_ids = {r["id"] for r in body["room_types"]}
    for style in body["styles"]:
        assert set(style["room_types"]) <= room_ids and style["palette"]
    image = requests.get(body["styles"][0]["image_url"], timeout=10)
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"


def test_one_style_by_name_or_id(fn):
    by_name = get(fn, "styles_list", name="japandi").get_json()["style"]
    assert by_name["id"] == "japandi"
    assert get(fn, "styles_list", name="Mid-century modern").get_json()["style"]["id"] == "mid-century"
    missing = get(fn, "styles_list", name="baroque")
    assert missing.status_code == 404 and error_code(missing) == "STYLE_NOT_FOUND"
    assert "japandi" in missing.get_json()["error"]["message"]


# a NUL inside $regex is refused by MongoDB itself: it must be our 400, never a server error
@pytest.mark.parametrize("params", [{"name": ""}, {"name": "x" * 81}, {"other": "1"}, {"name": "boho\x00"}])
def test_styles_bad_params_are_400(fn, params):
    response = get(fn, "styles_list", **params)
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"


# --- ETag / 304 --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("function,params", [
    ("styles_list", {}), ("products_search", {"label": "sofa"}), ("ar_similar_objects", {"label": "bed"}),
])
def test_reads_carry_etag_and_answer_304(fn, function, params):
    first = get(fn, function, **params)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert "max-age" in first.headers["Cache-Control"]
    again = get(fn, function, headers={"If-None-Match": etag}, **params)
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    weak = get(fn, function, headers={"If-None-Match": f'"other", W/{etag}'}, **params)
    assert weak.status_code == 304
    stale = get(fn, function, headers={"If-None-Match": '"something-else"'}, **params)
    assert stale.status_code == 200 and stale.get_json()


def test_etag_changes_when_the_signing_epoch_turns(fn, monkeypatch):
    """Half a signed-URL lifetime later a revalidation gets fresh links (200), not a 304 for expiring ones."""
    import time
    from types import SimpleNamespace

    from lib import storage

    first = get(fn, "products_search", label="lamp")
    later = time.time() + get_settings().signed_get_ttl_seconds / 2
    monkeypatch.setattr(storage, "time", SimpleNamespace(time=lambda: later, monotonic=time.monotonic,
                                                         sleep=time.sleep))
    turned = get(fn, "products_search", headers={"If-None-Match": first.headers["ETag"]}, label="lamp")
    assert turned.status_code == 200 and turned.headers["ETag"] != first.headers["ETag"]
    assert turned.get_json()["products"]


def test_etag_changes_with_the_query(fn):
    a = get(fn, "products_search", label="sofa").headers["ETag"]
    b = get(fn, "products_search", label="bed").headers["ETag"]
    assert a != b


# --- search ------------------------------------------------------------------------------------------------

def test_search_pages_cover_every_product_once_in_order(fn):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"label": "chair", "limit": 5, **({"cursor": cursor} if cursor else {})}
        body = get(fn, "products_search", **params).get_json()
        seen += [p["id"] for p in body["products"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == PER_LABEL == len(set(seen))
    assert seen == sorted(seen)
    assert set(seen) == {d["_id"] for d in db.collection("products").find({"label": "chair"}, {"_id": 1})}


def test_search_filters(fn):
    body = get(fn, "products_search", label="sofa", max_width_cm=210, max_height_cm=90, min_price=300,
               max_price=2000, limit=100).get_json()
    expected = db.collection("products").count_documents({
        "label": "sofa", "dimensions.width_cm": {"$lte": 210}, "dimensions.height_cm": {"$lte": 90},
        "price": {"$gte": 300, "$lte": 2000}})
    assert 0 < len(body["products"]) == expected < PER_LABEL
    for p in body["products"]:
        assert p["label"] == "sofa" and p["dimensions"]["width_cm"] <= 210 and 300 <= p["price"] <= 2000
        assert p["image_urls"][0].startswith("http") and "X-Goog-Signature" in p["image_urls"][0]
    depth = get(fn, "products_search", max_depth_cm=40, limit=100).get_json()["products"]
    assert depth and all(p["dimensions"]["depth_cm"] <= 40 for p in depth)


def test_search_by_text_and_everything(fn):
    some = db.collection("products").find_one({"label": "lamp"})
    word = next(w for w in some["name"].split()[1:] if w.isalpha())  # "Birch & Co": "&" is no word to search
    body = get(fn, "products_search", q=word.upper(), limit=100).get_json()
    assert some["_id"] in [p["id"] for p in body["products"]]
    assert all(word.lower() in p["name"].lower() for p in body["products"])
    assert get(fn, "products_search", q="zzz-no-such").get_json() == {"products": [], "next_cursor": None}
    everything = get(fn, "products_search", limit=100).get_json()
    assert len(everything["products"]) == 100 and everything["next_cursor"]


def test_signed_product_image_is_fetchable(fn):
    product = get(fn, "products_search", label="desk", limit=1).get_json()["products"][0]
    image = requests.get(product["image_urls"][0], timeout=10)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"max_width_cm": "-3"}, {"max_depth_cm": "wide"},
    {"min_price": "-1"}, {"label": "Not A Label!"}, {"q": ""}, {"unknown": "1"}, {"min_price": "10", "max_price": "5"},
    {"q": "so\x00fa"}, {"q": "sofa\x1b[31m"},
])
def test_search_bad_params_are_400(fn, params):
    response = get(fn, "products_search", **params)
    assert response.status_code == 400, response.get_json()
    assert error_code(response) == "VALIDATION_ERROR"


@pytest.mark.parametrize("cursor", ["garbage", "eyJ4IjogMX0", "!!!", "e30", "WyJhIiwgImIiXQ", "WzEyXQ"])
def test_search_bad_cursor_is_400(fn, cursor):
    response = get(fn, "products_search", cursor=cursor)
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"
    assert response.get_json()["error"]["details"][0]["field"] == "cursor"  # as interiors-list answers it


def test_search_refuses_other_methods(fn):
    response = fn("products_search").post("/", json={})
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


# --- similar -----------------------------------------------------------------------------------------------

def test_similar_returns_the_product_itself_first(fn):
    product = db.collection("products").find_one({"label": "bed"})
    body = get(fn, "products_similar", product_id=product["_id"], limit=5).get_json()
    results = body["products"]
    assert len(results) == 5
    assert results[0]["id"] == product["_id"] and results[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert all(r["label"] == "bed" for r in results)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_similar_ranks_same_material_and_colour_close():
    """Embedding sanity: a product's nearest other neighbours share its label (the label filter off)."""
    hits_same = 0
    sample = list(db.collection("products").find({}).limit(40))
    for product in sample:
        hits = vectors.search_similar(vectors.get_vector(product["_id"]), label=None, limit=2)
        other = db.collection("products").find_one({"_id": hits[1][0]})
        hits_same += other["label"] == product["label"]
    assert hits_same / len(sample) >= 0.7


def test_similar_with_another_label(fn):
    product = db.collection("products").find_one({"label": "armchair"})
    results = get(fn, "products_similar", product_id=product["_id"], label="sofa", limit=3).get_json()["products"]
    assert len(results) == 3 and all(r["label"] == "sofa" for r in results)
    capitalised = get(fn, "products_similar", product_id=product["_id"], label=" Sofa", limit=3).get_json()
    assert [r["id"] for r in capitalised["products"]] == [r["id"] for r in results]  # as products_search reads it


def test_similar_unknown_product_is_404(fn):
    response = get(fn, "products_similar", product_id="doesnotexist")
    assert response.status_code == 404 and error_code(response) == "PRODUCT_NOT_FOUND"


def test_similar_without_an_embedding_is_409_and_vectors_without_a_product_are_dropped(fn):
    """A product Mongo has but Qdrant lacks -> 409 NOT_EMBEDDED; a point Qdrant has but Mongo lacks is left out.
    (Both are added and removed here, so the seeded catalog stays as it was.)"""
    bed = db.collection("products").find_one({"label": "bed"})
    db.collection("products").insert_one({**bed, "_id": "unembedded-bed"})
    vectors.upsert_products([("ghost-bed", vectors.get_vector(bed["_id"]), {"label": "bed"})])
    try:
        response = get(fn, "products_similar", product_id="unembedded-bed")
        assert response.status_code == 409 and error_code(response) == "NOT_EMBEDDED"
        results = get(fn, "products_similar", product_id=bed["_id"], limit=PER_LABEL + 1).get_json()["products"]
        assert len(results) == PER_LABEL and "ghost-bed" not in [r["id"] for r in results]
    finally:
        db.collection("products").delete_one({"_id": "unembedded-bed"})
        vectors.delete_products(["ghost-bed"])


@pytest.mark.parametrize("params", [
    {}, {"product_id": ""}, {"product_id": "a/b"}, {"product_id": "x", "limit": "0"},
    {"product_id": "x", "limit": "51"}, {"product_id": "x", "label": "BAD LABEL"},
])
def test_similar_bad_params_are_400(fn, params):
    response = get(fn, "products_similar", **params)
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"


# --- AR ----------------------------------------------------------------------------------------------------

def test_ar_objects_carry_median_dimensions_and_a_valid_model(fn):
    response = fn("ar_similar_objects").post("/", json={"label": "Sofa "})
    assert response.status_code == 200
    body = response.get_json()
    assert body["label"] == "sofa" and len(body["objects"]) == 1
    obj = body["objects"][0]
    dims = [d["dimensions"] for d in db.collection("products").find({"label": "sofa"})]
    assert obj["width"] == pytest.approx(statistics.median(d["width_cm"] for d in dims), abs=0.05)
    assert obj["depth"] == pytest.approx(statistics.median(d["depth_cm"] for d in dims), abs=0.05)
    assert obj["height"] == pytest.approx(statistics.median(d["height_cm"] for d in dims), abs=0.05)
    assert obj["scale"]["x"] == pytest.approx(obj["width"] / obj["model_dimensions"]["width_cm"], abs=1e-3)
    assert set(obj["position"]) == set(obj["rotation"]) == {"x", "y", "z"}
    model = requests.get(obj["model_url"], timeout=10)
    assert model.status_code == 200
    document, _ = glb.read_glb(model.content)
    lo, hi = glb.bounds(document)
    assert (hi[0] - lo[0]) * 100 == pytest.approx(obj["model_dimensions"]["width_cm"], abs=0.01)
    assert requests.get(obj["image_url"], timeout=10).status_code == 200


def test_ar_get_form_matches_post(fn):
    post = fn("ar_similar_objects").post("/", json={"label": "lamp"}).get_json()
    got = get(fn, "ar_similar_objects", label="lamp").get_json()
    assert [o["id"] for o in post["objects"]] == [o["id"] for o in got["objects"]]
    assert post["objects"][0]["width"] == got["objects"][0]["width"]


def test_ar_unknown_label_is_404_naming_known_labels(fn):
    response = fn("ar_similar_objects").post("/", json={"label": "piano"})
    assert response.status_code == 404 and error_code(response) == "LABEL_NOT_FOUND"
    message = response.get_json()["error"]["message"]
    assert "piano" in message and "sofa" in message


@pytest.mark.parametrize("kwargs,status,code", [
    ({"json": {}}, 400, "VALIDATION_ERROR"),
    ({"json": {"label": ""}}, 400, "VALIDATION_ERROR"),
    ({"json": {"label": 5}}, 400, "VALIDATION_ERROR"),
    ({"json": {"label": "x" * 41}}, 400, "VALIDATION_ERROR"),
    ({"json": {"label": "sofa", "extra": 1}}, 400, "VALIDATION_ERROR"),
    ({"data": "label=sofa", "content_type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ({"data": "{not json", "content_type": "application/json"}, 400, "INVALID_JSON"),
])
def test_ar_bad_bodies(fn, kwargs, status, code):
    response = fn("ar_similar_objects").post("/", **kwargs)
    assert response.status_code == status and error_code(response) == code


# --- batched vector search over the catalog ----------------------------------------------------------------

def test_batch_search_equals_single_searches():
    products = list(db.collection("products").find({}).limit(6))
    queries = [(vectors.get_vector(p["_id"]), p["label"], None) for p in products]
    queries.append((queries[0][0], "table", {"width_cm": 170, "depth_cm": None}))
    queries.append((queries[1][0], None, (None, None, 80)))
    batch = vectors.search_similar_batch(queries, limit=4)
    singles = [vectors.search_similar(v, label, dims, limit=4) for v, label, dims in queries]
    assert [[pid for pid, _ in hits] for hits in batch] == [[pid for pid, _ in hits] for hits in singles]
    for hits in batch:
        assert hits
    widths = {d["_id"]: d["dimensions"] for d in db.collection("products").find(
        {"_id": {"$in": [pid for pid, _ in batch[-2] + batch[-1]]}})}
    assert all(widths[pid]["width_cm"] <= 170 for pid, _ in batch[-2])
    assert all(widths[pid]["height_cm"] <= 80 for pid, _ in batch[-1])


def test_label_centroids_classify_catalog_images():
    from lib.embed import get_embedder

    centroids = label_centroids()
    assert set(centroids) == set(LABELS)
    import numpy as np

    names = list(centroids)
    matrix = np.asarray([centroids[n] for n in names])
    correct = 0
    fresh = [p for p in demo_catalog.make_products(PER_LABEL + 2, LABELS) if p.index >= PER_LABEL]  # unseen
    vectors_ = get_embedder().embed_images([demo_catalog.draw_product(p) for p in fresh])
    for product, vec in zip(fresh, vectors_, strict=True):
        correct += names[int(np.argmax(matrix @ np.asarray(vec)))] == product.label
    assert correct / len(fresh) >= 0.8


# --- over real HTTP, as `make run` serves it ---------------------------------------------------------------

@pytest.mark.e2e
def test_make_run_serves_the_seeded_catalog(live_server):
    styles = requests.get(f"{live_server}/styles-list/", timeout=10).json()
    assert len(styles["styles"]) >= 8 and len(styles["room_types"]) == 6
    page = requests.get(f"{live_server}/products-search/", params={"label": "sofa", "limit": 3}, timeout=10)
    assert page.status_code == 200 and len(page.json()["products"]) == 3
    first = page.json()["products"][0]
    similar = requests.get(f"{live_server}/products-similar/", params={"product_id": first["id"]}, timeout=10)
    assert similar.json()["products"][0]["id"] == first["id"]
    ar = requests.post(f"{live_server}/ar-similar-objects/", json={"label": "lamp"}, timeout=10)
    assert ar.status_code == 200
    assert glb.read_glb(requests.get(ar.json()["objects"][0]["model_url"], timeout=10).content)
