"""DEMO_CATALOG_SIZE: the seed `make run` runs (scripts/seed.prepare_local) grows the demo catalog with variants
of its products (scripts/scale_catalog.py), here at a small size on the real stack (SecantusDB, the Qdrant REST
stand-in, fake-gcs-server): first to 236 products, then to 536, as a run killed part-way and started again
would; the products it adds are found by products-search and products-similar like the demo's own."""

from __future__ import annotations

import contextlib
import io
import os

import pytest

from lib import db, vectors
from scripts import demo_catalog, scale_catalog, seed
from tests.conftest import module_catalog, reading_module_catalog

PER_LABEL = 3
DEMO = PER_LABEL * len(demo_catalog.LABELS)  # 36
FIRST, SIZE = DEMO + 200, DEMO + 500


def prepare(size: int) -> str:
    """One `make run` seed with DEMO_CATALOG_SIZE=size; returns what it printed."""
    os.environ["DEMO_CATALOG_SIZE"] = str(size)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        seed.prepare_local(None)
    return out.getvalue()


def grow_twice() -> dict:
    first = prepare(FIRST)
    between = db.utcnow()
    return {"first": first, "second": prepare(SIZE), "between": between}


@pytest.fixture(scope="module")
def grown(stack):
    with module_catalog("scale", grow_twice, {"DEMO_CATALOG_PER_LABEL": str(PER_LABEL)}) as (env, result):
        yield {"env": env, **result}
    os.environ.pop("DEMO_CATALOG_SIZE", None)


@pytest.fixture(autouse=True)
def fresh_database(grown):
    """Overrides conftest's per-test database: every test here reads the one grown catalog."""
    yield from reading_module_catalog(grown["env"])


def products(**query) -> list[dict]:
    return list(db.collection("products").find(query))


def test_the_catalog_grows_to_the_size_asked_spread_over_every_label(grown):
    assert "demo catalog grown to 236 products" in grown["first"]
    assert "demo catalog grown to 536 products" in grown["second"]
    assert "growing it to DEMO_CATALOG_SIZE with variants of its products: 200/500 written" in grown["second"]
    assert db.collection("products").count_documents({}) == SIZE
    assert vectors.count() == SIZE
    scaled = products(source=scale_catalog.SOURCE)
    assert len(scaled) == SIZE - DEMO
    per_label = {label: sum(p["label"] == label for p in scaled) for label in demo_catalog.LABELS}
    per_source = (SIZE - DEMO) // DEMO  # 13 or 14 variants of each demo product
    assert all(per_source * PER_LABEL <= n <= (per_source + 1) * PER_LABEL for n in per_label.values()), per_label


def test_a_variant_keeps_its_sources_label_styles_and_picture_and_varies_the_rest():
    demo = {p["product_url"]: p for p in products(source=demo_catalog.SOURCE)}
    varied = 0
    for variant in products(source=scale_catalog.SOURCE):
        source = demo[variant["product_url"].rsplit("-v", 1)[0]]
        assert (variant["label"], variant["styles"], variant["image_urls"]) == (
            source["label"], source["styles"], source["image_urls"])
        assert variant["search_tokens"] and variant["label"] in variant["search_tokens"]
        assert abs(variant["price"] - source["price"]) <= 0.16 * source["price"] + 1
        for key, value in source["dimensions"].items():
            assert abs(variant["dimensions"][key] - value) <= 0.09 * value
        varied += variant["name"] != source["name"] or variant["price"] != source["price"]
    assert varied >= 0.9 * (SIZE - DEMO)


def test_growing_again_resumes_after_what_was_written(grown):
    """The second run (a larger size, as a run killed after its first batches) kept the first 200 variants and
    wrote only the rest: the marker after each batch says where to go on."""
    assert '"resumed_at": 200' in grown["second"] and '"variants_added": 300' in grown["second"]
    scaled = products(source=scale_catalog.SOURCE)
    untouched = [p for p in scaled if p["updated_at"] < grown["between"]]
    assert len(untouched) == 200


def test_a_second_run_adds_nothing(grown):
    before = {p["_id"]: p["updated_at"] for p in products()}
    output = prepare(SIZE)
    assert "demo catalog: already seeded" in output and "demo catalog: already grown to 536 products" in output
    assert {p["_id"]: p["updated_at"] for p in products()} == before
    assert vectors.count() == SIZE


def test_the_same_size_gives_the_same_products_and_vectors():
    """Ids, fields and vectors are functions of (source, variant number): a fresh seed writes the same ones."""
    sources = scale_catalog.load_sources(PER_LABEL)
    record = scale_catalog.variant_record(sources[5], 3)
    assert record == scale_catalog.variant_record(sources[5], 3)
    a = scale_catalog.variant_vectors(sources, 1000, 1010)
    assert (a == scale_catalog.variant_vectors(sources, 1000, 1010)).all()
    assert (a[4:] == scale_catalog.variant_vectors(sources, 1004, 1010)).all()  # wherever a run starts
    assert (a * a).sum(axis=1) == pytest.approx([1.0] * 10, abs=1e-5)  # unit length


def test_products_similar_finds_a_variants_source_and_siblings_of_its_label(fn):
    variant = sorted(products(source=scale_catalog.SOURCE, label="armchair"), key=lambda p: p["_id"])[0]
    source_url = variant["product_url"].rsplit("-v", 1)[0]
    response = fn("products_similar").get("/", query_string={"product_id": variant["_id"], "limit": 10})
    assert response.status_code == 200, response.get_json()
    hits = response.get_json()["products"]
    assert len(hits) == 10 and {h["label"] for h in hits} == {"armchair"}
    assert hits[0]["id"] == variant["_id"]
    family = {p["_id"] for p in products(label="armchair") if p["product_url"].startswith(source_url)}
    # the source and its other variants (14 in all here) are nearer than any other armchair
    assert {h["id"] for h in hits} <= family
    assert min(h["score"] for h in hits) > 0.9


def test_products_search_finds_variants(fn):
    variant = sorted(products(source=scale_catalog.SOURCE, label="lamp"), key=lambda p: p["_id"])[-1]
    brand = variant["brand"]
    body = fn("products_search").get("/", query_string={"label": "lamp", "q": brand, "limit": 100}).get_json()
    found = {p["id"] for p in body["products"]}
    assert variant["_id"] in found
    expected = {p["_id"] for p in products(label="lamp", brand=brand)}
    assert found == expected and len(expected - {p["_id"] for p in products(source=demo_catalog.SOURCE)}) >= 1
