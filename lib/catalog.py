"""The catalog's reads: styles and room types, product search, similar products, AR models.

Documents (Mongo):
  styles      {_id: slug, name, description, image_url: gs://, room_types: [slug], palette: [hex]}
  room_types  {_id: slug, name}
  products    {_id, label, name, brand, price, currency, product_url, image_urls: [gs:// or https],
               dimensions {width_cm, depth_cm, height_cm}, styles, source, import_id, created_at, updated_at}
  ar_models   {_id, label, name, model_url: gs://...glb, image_url, position, rotation, scale,
               dimensions {width_cm, depth_cm, height_cm}  (the model's own, true-to-size)}
  label_stats {_id: label, dimensions {width_cm, depth_cm, height_cm} (medians of its products), counted_at}
Vectors live in Qdrant (lib.vectors). Stored refs are gs:// strings, signed only here, on the way out.
Replies are cached by browsers/CDNs via lib.http.cached_json_response; the ETag basis includes a "signing
epoch" that changes every half signed-URL lifetime, so a revalidated cached reply never holds expired URLs.
"""

from __future__ import annotations

import contextlib
import re
import statistics
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pymongo.errors import DuplicateKeyError

from lib import cursors, db, errors, storage
from lib.answers import Answer
from lib.text import PlainText
from lib.vectors import DIMENSION_KEYS as DIMENSIONS  # one list of dimension fields for Mongo and Qdrant

LABEL_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"


# --- request models ----------------------------------------------------------------------------------------

def _lowercase(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# "Sofa " -> "sofa" wherever a label is asked for (constraints before the validator, or the OpenAPI schema
# loses them)
Label = Annotated[str, BeforeValidator(_lowercase)]
LabelFilter = Annotated[str, Field(pattern=LABEL_PATTERN), BeforeValidator(_lowercase)]


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StylesQuery(_Query):
    name: PlainText | None = Field(default=None, min_length=1, max_length=80)


class SearchQuery(_Query):
    label: LabelFilter | None = None
    q: PlainText | None = Field(default=None, min_length=1, max_length=100)
    max_width_cm: float | None = Field(default=None, gt=0, le=10_000)
    max_depth_cm: float | None = Field(default=None, gt=0, le=10_000)
    max_height_cm: float | None = Field(default=None, gt=0, le=10_000)
    min_price: float | None = Field(default=None, ge=0)
    max_price: float | None = Field(default=None, ge=0)
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200)


class SimilarQuery(_Query):
    product_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    limit: int = Field(default=10, ge=1, le=50)
    label: LabelFilter | None = None


class ArQuery(_Query):
    label: Label = Field(min_length=1, max_length=40)


# --- answers ----------------------------------------------------------------------------------------------

class Dimensions(Answer):
    """Outer size in centimeters: width (left to right, facing the front), depth (front to back), height."""
    width_cm: float | None = Field(default=None, description="Width in cm (left to right, seen from the front)")
    depth_cm: float | None = Field(default=None, description="Depth in cm (front to back)")
    height_cm: float | None = Field(default=None, description="Height in cm (floor to top)")


class Style(Answer):
    id: str
    name: str
    description: str
    image_url: str | None = Field(description="A reference picture of the style (a signed, short-lived URL)")
    room_types: list[str] = Field(description="Ids of the room types the style is offered for")
    palette: list[str] = Field(description="The style's colours as CSS hex strings, e.g. #d9cbb4")


class RoomType(Answer):
    id: str
    name: str


class StylesAnswer(Answer):
    """GET /styles-list without `name`: every style and room type."""
    styles: list[Style]
    room_types: list[RoomType]


class StyleAnswer(Answer):
    """GET /styles-list?name=...: that one style."""
    style: Style


# Two disjoint shapes (each refuses the other's fields): `styles` + `room_types` without `?name=`, `style` with it.
StylesListAnswer = Annotated[StylesAnswer | StyleAnswer, Field(description=(
    "Without `name`: StylesAnswer {styles, room_types}. With `name`: StyleAnswer {style}. Tell them apart by "
    "which key is present (`'style' in answer`)."))]


class Product(Answer):
    """One shape wherever a product appears (search, similar, an interior's detected parts)."""
    id: str
    label: str = Field(description="What kind of furniture it is (sofa, bed, ...), as the detector names it")
    name: str
    brand: str
    price: float | None = Field(description="Price in `currency`, major units (e.g. 499.0 EUR); null if unknown")
    currency: str = Field(description="ISO 4217 code")
    product_url: str | None = Field(description="The shop's page for the product")
    image_url: str | None = Field(description="The first of image_urls, for a card; null without images")
    image_urls: list[str] = Field(description="Product photos (signed, short-lived URLs or the shop's https URLs)")
    dimensions: Dimensions
    styles: list[str] = Field(description="Ids of the styles the product suits")
    score: float | None = Field(default=None, description=(
        "Present where results are ranked: cosine similarity of the image embeddings, -1..1 (1 = identical "
        "look), rounded to 4 decimals; higher is more similar"))


class ProductsPage(Answer):
    products: list[Product]
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page; null on the last page")


class SimilarProducts(Answer):
    product_id: str
    products: list[Product] = Field(description="Nearest first, each with `score`; the product itself first")


class Xyz(Answer):
    x: float
    y: float
    z: float


class ArObject(Answer):
    """A 3D model (binary glTF, .glb) to place in the room with AR, sized for the products of its label."""
    id: str
    label: str
    name: str
    model_url: str = Field(description="The .glb file (a signed, short-lived URL): true to `model_dimensions`, in "
                                       "meters (glTF's unit), +Y up, standing on y=0 and centred on x and z")
    image_url: str | None
    position: Xyz = Field(description="Where to put the model relative to the AR anchor, in meters (x right, y up, "
                                      "z toward the viewer); 0,0,0 places it on the anchor")
    rotation: Xyz = Field(description="Euler angles in degrees about x, y, z applied to the model; 0,0,0 faces "
                                      "the viewer")
    scale: Xyz = Field(description="Factors to multiply the model by on each axis so it measures width x height x "
                                   "depth (x: width, y: height, z: depth); 1 keeps the model's own size")
    width: float = Field(description="Width in cm the scaled model has: the median of the label's products")
    depth: float = Field(description="Depth in cm the scaled model has")
    height: float = Field(description="Height in cm the scaled model has")
    model_dimensions: Dimensions = Field(description="The model's own size in cm, before `scale`")


class ArObjects(Answer):
    label: str
    objects: list[ArObject]


# --- signing on the way out --------------------------------------------------------------------------------

# Links are signed by the one helper for links a client may fetch (cached per signing epoch, which is also
# part of every ETag basis: see the module docstring).
signing_epoch = storage.signing_epoch
_sign = storage.client_url


# --- styles ------------------------------------------------------------------------------------------------

def styles_and_room_types() -> tuple[list[dict], list[dict]]:
    styles = list(db.collection("styles").find({}).sort("_id", 1))
    room_types = list(db.collection("room_types").find({}).sort("_id", 1))
    return styles, room_types


def find_style(name: str) -> dict:
    """By id or case-insensitive display name; 404 with the known names otherwise."""
    styles = db.collection("styles")
    wanted = name.strip().lower()
    style = styles.find_one({"_id": wanted}) or styles.find_one(
        {"name": {"$regex": f"^{re.escape(name.strip())}$", "$options": "i"}})
    if style is None:
        known = ", ".join(s["_id"] for s in styles.find({}, {"_id": 1}).sort("_id", 1))
        raise errors.NotFound(f"No style named '{name[:80]}'. Known styles: {known or 'none yet'}.",
                              code="STYLE_NOT_FOUND")
    return style


def public_style(style: dict) -> Style:
    return Style(id=style["_id"], name=style["name"], description=style.get("description", ""),
                 image_url=_sign(style.get("image_url")), room_types=style.get("room_types", []),
                 palette=style.get("palette", []))


def public_room_type(room_type: dict) -> RoomType:
    return RoomType(id=room_type["_id"], name=room_type["name"])


# --- products ----------------------------------------------------------------------------------------------

# What a product answer carries, wherever it appears (search, similar, an interior's detected parts); an
# interior keeps these fields of the product as they were when it was generated.
PRODUCT_FIELDS = ("label", "name", "brand", "price", "currency", "product_url", "image_urls", "dimensions", "styles")


def public_product(product: dict, score: float | None = None) -> Product:
    """The one shape of a product for clients; `image_url` is the first of `image_urls`, for cards."""
    image_urls = [url for url in (_sign(u) for u in product.get("image_urls") or [] if u) if url]
    out = Product(
        id=product["_id"], label=product["label"], name=product["name"],
        brand=product.get("brand") or "", price=product.get("price"),
        currency=product.get("currency") or "EUR", product_url=product.get("product_url"),
        image_url=image_urls[0] if image_urls else None, image_urls=image_urls,
        dimensions=Dimensions.model_validate(product.get("dimensions") or {}), styles=product.get("styles") or [],
    )
    if score is not None:
        out.score = round(score, 4)
    return out


def encode_cursor(last_id: str) -> str:
    return cursors.encode([last_id])


def decode_cursor(cursor: str) -> str:
    (last_id,) = cursors.decode(cursor, 1)
    return last_id


def search_filter(query: SearchQuery) -> dict:
    if query.min_price is not None and query.max_price is not None and query.min_price > query.max_price:
        raise errors.ValidationFailed("The request is not valid.", details=[
            {"field": "min_price", "message": "min_price must not exceed max_price", "type": "value_error"}])
    flt: dict[str, Any] = {}
    if query.label:
        flt["label"] = query.label  # leads the label_id / label_price indexes
    price: dict[str, float] = {}
    if query.min_price is not None:
        price["$gte"] = query.min_price
    if query.max_price is not None:
        price["$lte"] = query.max_price
    if price:
        flt["price"] = price
    for dim in DIMENSIONS:
        limit = getattr(query, f"max_{dim}")
        if limit is not None:
            flt[f"dimensions.{dim}"] = {"$lte": limit}
    if query.q:
        flt["name_lc"] = {"$regex": re.escape(query.q.lower())}
    return flt


def search_products(query: SearchQuery) -> tuple[list[dict], str | None]:
    """One page sorted by _id (unique, so pages never overlap or skip); the cursor is the last id seen."""
    flt = search_filter(query)
    if query.cursor:
        flt["_id"] = {"$gt": decode_cursor(query.cursor)}
    docs = list(db.collection("products").find(flt).sort("_id", 1).limit(query.limit + 1))
    next_cursor = encode_cursor(docs[query.limit - 1]["_id"]) if len(docs) > query.limit else None
    return docs[:query.limit], next_cursor


def get_product(product_id: str) -> dict:
    product = db.collection("products").find_one({"_id": product_id})
    if product is None:
        raise errors.NotFound("No product with this id.", code="PRODUCT_NOT_FOUND")
    return product


def similar_products(query: SimilarQuery) -> list[tuple[dict, float]]:
    """The nearest products to a product's image vector (same label unless `label` says otherwise)."""
    from lib import vectors

    product = get_product(query.product_id)
    vector = vectors.get_vector(product["_id"])
    if vector is None:
        raise errors.Conflict("This product has no image embedding yet; re-run the catalog import.",
                              code="NOT_EMBEDDED")
    hits = vectors.search_similar(vector, label=query.label or product["label"], limit=query.limit)
    return with_products(hits)


def with_products(hits: list[tuple[str, float]]) -> list[tuple[dict, float]]:
    """(product_id, score) hits -> (product doc, score) in the same order; ids missing in Mongo are dropped."""
    docs = {d["_id"]: d for d in db.collection("products").find({"_id": {"$in": [pid for pid, _ in hits]}})}
    return [(docs[pid], score) for pid, score in hits if pid in docs]


# --- AR models ---------------------------------------------------------------------------------------------

def known_labels() -> list[str]:
    return sorted(db.collection("ar_models").distinct("label"))


def median_dimensions(label: str) -> dict[str, float] | None:
    """Median width/depth/height (cm) of the label's products, counted now: reads every product of the label."""
    rows = [d.get("dimensions") or {} for d in db.collection("products").find({"label": label}, {"dimensions": 1})]
    rows = [r for r in rows if all(isinstance(r.get(k), int | float) for k in DIMENSIONS)]
    if not rows:
        return None
    return {k: round(float(statistics.median(r[k] for r in rows)), 1) for k in DIMENSIONS}


def refresh_label_stats(labels: Iterable[str]) -> dict[str, dict[str, float] | None]:
    """Count each label's median dimensions and store them in `label_stats`. The import calls this after it
    writes products, so AR answers read one small document instead of every product of the label. A count
    never overwrites one that started later (two import shards finishing together)."""
    counted: dict[str, dict[str, float] | None] = {}
    for label in sorted(set(labels)):
        started = db.utcnow()
        counted[label] = median_dimensions(label)
        with contextlib.suppress(DuplicateKeyError):  # the filter missed: a later count is already stored
            db.collection("label_stats").update_one(
                {"_id": label, "$or": [{"counted_at": {"$lte": started}}, {"counted_at": {"$exists": False}}]},
                {"$set": {"dimensions": counted[label], "counted_at": started}}, upsert=True)
    return counted


def typical_dimensions(label: str) -> dict[str, float] | None:
    """What a typical product of the label measures: the stored median, counted on first use for products
    that were written without an import (by hand, or in tests)."""
    stored = db.collection("label_stats").find_one({"_id": label}, {"dimensions": 1})
    if stored is not None:
        return stored.get("dimensions")
    return refresh_label_stats([label])[label]


def ar_models_for(label: str) -> tuple[list[dict], dict[str, float] | None]:
    models = list(db.collection("ar_models").find({"label": label}).sort("_id", 1))
    if not models:
        known = ", ".join(known_labels()) or "none yet"
        raise errors.NotFound(f"No 3D model for label '{label[:40]}'. Known labels: {known}.",
                              code="LABEL_NOT_FOUND")
    return models, typical_dimensions(label)


def public_ar_object(model: dict, typical: dict[str, float] | None) -> ArObject:
    own = model["dimensions"]
    dims = typical or own
    # the model is true-to-size for its own dimensions; scale it to the label's typical product
    scale = {axis: round(dims[key] / own[key], 4) if own.get(key) else 1.0
             for axis, key in (("x", "width_cm"), ("y", "height_cm"), ("z", "depth_cm"))}
    return ArObject(
        id=model["_id"], label=model["label"], name=model.get("name", model["label"]),
        model_url=_sign(model["model_url"]) or "", image_url=_sign(model.get("image_url")),
        position=Xyz.model_validate(model.get("position", {"x": 0.0, "y": 0.0, "z": 0.0})),
        rotation=Xyz.model_validate(model.get("rotation", {"x": 0.0, "y": 0.0, "z": 0.0})),
        scale=Xyz.model_validate(scale),
        width=dims["width_cm"], depth=dims["depth_cm"], height=dims["height_cm"],
        model_dimensions=Dimensions.model_validate(own),
    )


# --- writes used by the demo seed and operators ------------------------------------------------------------

def upsert_documents(collection: str, docs: list[dict]) -> None:
    """Replace-or-insert by _id, stamping updated_at (styles, room types, AR models)."""
    from pymongo import ReplaceOne

    if not docs:
        return
    now = db.utcnow()
    db.collection(collection).bulk_write(
        [ReplaceOne({"_id": d["_id"]}, {**d, "updated_at": now}, upsert=True) for d in docs], ordered=False)
