"""The catalog: styles and room types (the one resolver of their names), products (search, similar, the one
read by id, the import's write), AR models. The only module that opens the collections below.

Documents (Mongo):
  styles      {_id: slug, name, description, image_url: gs://, room_types: [slug], palette: [hex]}
  room_types  {_id: slug, name}
  products    {_id, label, name, brand, price, currency, product_url, image_urls: [gs:// or https],
               dimensions {width_cm, depth_cm, height_cm}, styles, source, import_id, created_at, updated_at,
               search_tokens: [the words of name, brand and label, and their prefixes] (see search_tokens),
               search_version: the SEARCH_VERSION those tokens follow}
  ar_models   {_id, label, name, model_url: gs://...glb, image_url, position, rotation, scale,
               dimensions {width_cm, depth_cm, height_cm}  (the model's own, true-to-size)}
  label_stats {_id: label, dimensions {width_cm, depth_cm, height_cm} (medians of its products),
               centroid: [float] (mean unit vector of its products in `vectors`, the Qdrant collection),
               counted_at}
Vectors live in Qdrant (lib.vectors). Stored refs are gs:// strings, signed only here, on the way out.
Replies are cached by browsers/CDNs via lib.http.cached_json_response; the ETag basis includes a "signing
epoch" that changes every half signed-URL lifetime, so a revalidated cached reply never holds expired URLs.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import statistics
import unicodedata
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pymongo import ASCENDING, IndexModel, ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from lib import cursors, db, errors, storage, vectors
from lib.answers import Answer
from lib.text import PlainText
from lib.vectors import DIMENSION_KEYS as DIMENSIONS  # one list of dimension fields for Mongo and Qdrant

LABEL_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"

STYLES = db.declare("styles")
ROOM_TYPES = db.declare("room_types")
# Every index ends in _id, the order pages come in: with equality on the fields before it, a page is an index
# walk in page order, bounded by the cursor and the search's _id windows (see search_products). The price
# indexes serve MongoDB/Atlas's planner where a price range holds fewer products than the walk would read
# (SecantusDB plans the windows' equalities alone); label_id also serves style_pictures.
PRODUCTS = db.declare("products", [
    IndexModel([("label", ASCENDING), ("_id", ASCENDING)], name="label_id"),
    IndexModel([("label", ASCENDING), ("search_tokens", ASCENDING), ("_id", ASCENDING)], name="label_tokens"),
    IndexModel([("search_tokens", ASCENDING), ("_id", ASCENDING)], name="tokens"),
    IndexModel([("search_version", ASCENDING), ("_id", ASCENDING)], name="version_id"),
    IndexModel([("label", ASCENDING), ("price", ASCENDING), ("_id", ASCENDING)], name="label_price"),
    IndexModel([("price", ASCENDING), ("_id", ASCENDING)], name="price_id"),
])
AR_MODELS = db.declare("ar_models", [IndexModel([("label", ASCENDING)], name="label")])
LABEL_STATS = db.declare("label_stats")


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
    q: PlainText | None = Field(default=None, min_length=1, max_length=100, description=(
        "Words, or starts of words, of the product's name, brand or label; all required, in any order, case "
        "and accents ignored ('oak sof' finds 'Café Oak Sofa'). One-letter words are left out."))
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
    """A 3D model (binary glTF, .glb) to place in the room with AR, scaled to a real size: in an interior's
    detected part, the size of the part's best-matching product; elsewhere the typical size of its label."""
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
    scale: Xyz = Field(description="Factors to multiply the model by on each axis (x: width, y: height, "
                                   "z: depth) so it measures width x height x depth: `width / model_dimensions."
                                   "width_cm` and so on; 1 keeps the model's own size. Apply it before placing")
    sized_to: Literal["product", "label", "model"] = Field(description=(
        "What width, depth and height are: `product`, the dimensions of `product_id` (an interior's part: its "
        "best-matching product); `label`, the median of the label's products; `model`, the model's own size "
        "(nothing better known)"))
    product_id: str | None = Field(description="The product the model is sized to (sized_to=product), else null")
    width: float = Field(description="Width in cm the scaled model has (what it is: see sized_to)")
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
    styles = list(db.collection(STYLES).find({}).sort("_id", 1))
    room_types = list(db.collection(ROOM_TYPES).find({}).sort("_id", 1))
    return styles, room_types


def _spelling(value: str) -> str:
    """What a style or room type name means regardless of case and separators: "Mid-Century  modern",
    "mid_century_modern" and "MID CENTURY MODERN" all read "mid century modern"."""
    return " ".join(re.split(r"[\s_-]+", value.strip().lower())).strip()


def _resolve(docs: Collection, value: str) -> dict | None:
    """The document whose id or display name is `value` in any spelling (case, spaces, hyphens, underscores).
    The list is small (tens of entries), so after the exact id it is read whole and compared here."""
    wanted = _spelling(value)
    words = wanted.split()
    exact = docs.find_one({"_id": {"$in": [value, "-".join(words), "_".join(words)]}})
    if exact is not None or not wanted:
        return exact
    return next((d for d in docs.find({}).sort("_id", 1)
                 if wanted in (_spelling(d["_id"]), _spelling(str(d.get("name") or "")))), None)


def resolve_style(value: str) -> dict | None:
    """The one way to find a style from what a person typed or a document stored (see `_resolve`)."""
    return _resolve(db.collection(STYLES), value)


def resolve_room_type(value: str) -> dict | None:
    return _resolve(db.collection(ROOM_TYPES), value)


def find_style(name: str) -> dict:
    """The style `name` resolves to; 404 with the known names otherwise."""
    style = resolve_style(name)
    if style is None:
        known = ", ".join(s["_id"] for s in db.collection(STYLES).find({}, {"_id": 1}).sort("_id", 1))
        raise errors.NotFound(f"No style named '{name[:80]}'. Known styles: {known or 'none yet'}.",
                              code="STYLE_NOT_FOUND")
    return style


def style_for_room(style: str, room_type: str) -> tuple[dict, dict]:
    """The style and room type documents a generation asks for; 422 when either is unknown or they do not
    fit each other."""
    style_doc = resolve_style(style)
    if style_doc is None:
        raise errors.Unprocessable(f"Unknown style '{style}'.", code="UNKNOWN_STYLE",
                                   details=[{"field": "style", "message": "no such style", "type": "unknown_style"}])
    room_doc = resolve_room_type(room_type)
    if room_doc is None:
        raise errors.Unprocessable(f"Unknown room type '{room_type}'.", code="UNKNOWN_ROOM_TYPE",
                                   details=[{"field": "room_type", "message": "no such room type",
                                             "type": "unknown_room_type"}])
    fits = style_doc.get("room_types")
    if fits and room_doc["_id"] not in fits and room_doc.get("name") not in fits:
        raise errors.Unprocessable(
            f"The style '{style_doc.get('name', style)}' is not offered for a {room_doc.get('name', room_type)}.",
            code="STYLE_ROOM_MISMATCH",
            details=[{"field": "style", "message": "does not fit the room type", "type": "style_room_mismatch"}])
    return style_doc, room_doc


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


# --- text search: words and their prefixes, in an indexed array ---------------------------------------------
# A product matches `q` when every word of `q` starts a word of its name, brand or label ("oak sof" finds
# "Oak sofa"), whatever the case and accents ("Café" = "cafe"). The import stores each product's words and
# their prefixes (SEARCH_PREFIX_MIN..SEARCH_PREFIX_MAX characters) in `search_tokens`, a multikey index serves
# the lookup, and the same query runs on Atlas and on the local SecantusDB (neither `$text` nor Atlas Search's
# `$search` exists there). Longer words are matched on their first SEARCH_PREFIX_MAX characters.

SEARCH_PREFIX_MIN = 2
SEARCH_PREFIX_MAX = 15
SEARCHED_FIELDS = ("name", "brand", "label")
SEARCH_VERSION = 1  # bump when the rule above changes: the backfill then rewrites every older product's tokens


def search_words(text: str) -> list[str]:
    """The words of `text` as search compares them: accents removed, case folded, split on anything that is
    not a letter or digit ("Mid-Century Café" -> ["mid", "century", "cafe"])."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return re.findall(r"[^\W_]+", plain)


def search_tokens(product: dict) -> list[str]:
    """What a product document stores in `search_tokens`: every prefix (SEARCH_PREFIX_MIN..MAX characters) of
    every word of its searched fields, sorted, once each."""
    tokens: set[str] = set()
    for field in SEARCHED_FIELDS:
        for word in search_words(str(product.get(field) or "")):
            tokens.update(word[:n] for n in range(SEARCH_PREFIX_MIN, min(len(word), SEARCH_PREFIX_MAX) + 1))
    return sorted(tokens)


def query_tokens(q: str) -> list[str]:
    """The tokens a product must all hold to match `q`, the longest (most selective) first; words shorter than
    SEARCH_PREFIX_MIN are left out, and a query with no longer word is refused."""
    words = {w[:SEARCH_PREFIX_MAX] for w in search_words(q) if len(w) >= SEARCH_PREFIX_MIN}
    if not words:
        raise errors.ValidationFailed("The request is not valid.", details=[
            {"field": "q", "message": f"q must hold a word of at least {SEARCH_PREFIX_MIN} letters or digits",
             "type": "value_error"}])
    return sorted(words, key=lambda w: (-len(w), w))


def searchable(product: dict) -> dict:
    """The search fields a stored product carries: its tokens, and the version of the rule that made them (every
    product has one, so the (search_version, _id) index lists every searchable product in page order)."""
    return {"search_tokens": search_tokens(product), "search_version": SEARCH_VERSION}


def backfill_search_tokens(batch: int = 1000) -> int:
    """Give `search_tokens` and `search_version` to products written before they existed, by hand, or under an
    older SEARCH_VERSION; returns how many. Run by the demo seed and the import; idempotent, and cheap when there
    is nothing to do (two lookups on the version index)."""
    products = db.collection(PRODUCTS)
    done = 0
    # absent or null (served by the index, where $exists is not), then older
    for stale in ({"search_version": None}, {"search_version": {"$lt": SEARCH_VERSION}}):
        # one read, written in batches: SecantusDB fetches everything in the bounds whatever the limit
        cursor = products.find(stale, {f: 1 for f in SEARCHED_FIELDS}).sort("_id", 1)
        while chunk := list(itertools.islice(cursor, batch)):
            products.bulk_write([UpdateOne({"_id": d["_id"], **stale}, {"$set": searchable(d)}) for d in chunk],
                                ordered=False)
            done += len(chunk)
    return done


# --- one page: a walk over _id windows ----------------------------------------------------------------------
# Pages come in _id order. A search's filter splits in two: equalities that an index serves with _id as its
# next key (label and/or the query's longest word: (label, search_tokens, _id), (search_tokens, _id),
# (label, _id); with neither, (search_version, _id), which holds every product), and the rest (further words,
# price, dimensions), checked on each document. MongoDB/Atlas walks such an index in _id order and stops after
# a page, but SecantusDB (the local stand-in) fetches and decodes every document inside the index bounds before
# it applies a limit: one query per page read all 2,778 "sofa" + "fabric" products of 100,000 (~0.2 s), and a
# search with no label or word the whole collection. So a page is read in consecutive _id windows, each an
# index range bounded on both sides (on Atlas too, where each is a short walk that stops at the limit): the
# first covers 1/65,536 of the id space, each next one is sized by the matches found so far (x32 while none),
# until the page is full or the last, open-ended window is read. Product ids are hex digests
# (lib.catalog_import.product_id), evenly spread, so a window's share of the id space is its share of the
# candidates; any other id is found all the same (the windows partition the string order), only less evenly.

ID_WINDOW_DIGITS = 8  # windows are cut on the first 8 hex digits of an id
ID_SPACE = 16 ** ID_WINDOW_DIGITS
FIRST_WINDOW = ID_SPACE // 65_536
EMPTY_GROWTH = 32


def search_stages(query: SearchQuery) -> tuple[dict, dict]:
    """The search's filter in two parts: the equalities an index serves with _id next (see above), and the rest
    (further words, price, dimensions). MongoDB/Atlas merges consecutive $match stages and plans them as one
    filter; SecantusDB's planner serves a filter of equalities plus ONE range (the window) from an index, and
    scans the collection otherwise, so the rest goes in a second stage."""
    if query.min_price is not None and query.max_price is not None and query.min_price > query.max_price:
        raise errors.ValidationFailed("The request is not valid.", details=[
            {"field": "min_price", "message": "min_price must not exceed max_price", "type": "value_error"}])
    indexed: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    if query.label:
        indexed["label"] = query.label  # label_id, label_tokens
    tokens = query_tokens(query.q) if query.q else []
    if tokens:
        indexed["search_tokens"] = tokens[0]  # label_tokens / tokens
        if len(tokens) > 1:
            rest["search_tokens"] = {"$all": tokens[1:]}
    if not indexed:
        indexed["search_version"] = SEARCH_VERSION  # version_id: every product
    price: dict[str, float] = {}
    if query.min_price is not None:
        price["$gte"] = query.min_price
    if query.max_price is not None:
        price["$lte"] = query.max_price
    if price:
        rest["price"] = price
    for dim in DIMENSIONS:
        limit = getattr(query, f"max_{dim}")
        if limit is not None:
            rest[f"dimensions.{dim}"] = {"$lte": limit}
    return indexed, rest


def _id_position(product_id: str) -> int | None:
    """Where an id lies in the windows' space (its first 8 hex digits), or None for an id that does not start
    with them (then the walk goes on in one open window)."""
    head = product_id[:ID_WINDOW_DIGITS]
    if len(head) == ID_WINDOW_DIGITS and all(c in "0123456789abcdef" for c in head):
        return int(head, 16)
    return None


def _next_width(walked: int, found: int, wanted: int) -> int:
    """The next window: enough id space for the matches still wanted at the density seen so far (a quarter
    more, and at least half the space walked, so the last few matches do not take a window each), or
    EMPTY_GROWTH times what was walked while nothing matched."""
    if not found:
        return walked * EMPTY_GROWTH
    return max(walked // 2, min(walked * EMPTY_GROWTH, math.ceil(walked * (wanted - found) / found * 1.25)))


def search_products(query: SearchQuery) -> tuple[list[dict], str | None]:
    """One page sorted by _id (unique, so pages never overlap or skip); the cursor is the last id seen. Read in
    _id windows (see above): each window's matches come in _id order, and the windows follow each other."""
    indexed, rest = search_stages(query)
    after = decode_cursor(query.cursor) if query.cursor else None
    wanted = query.limit + 1  # one more than the page says whether there is a next page
    ids: dict[str, Any] = {"$gt": after} if after is not None else {}
    start = 0 if after is None else _id_position(after)
    position, width = start, FIRST_WINDOW
    found: list[dict] = []
    while True:
        end = None if position is None or position + width >= ID_SPACE else position + width
        if end is not None:
            ids["$lt"] = f"{end:0{ID_WINDOW_DIGITS}x}"
        pipeline: list[dict] = [{"$match": {**indexed, "_id": ids}}]
        pipeline += [{"$match": rest}] if rest else []
        pipeline += [{"$sort": {"_id": 1}}, {"$limit": wanted - len(found)},
                     {"$project": {"search_tokens": 0, "search_version": 0}}]
        found += db.collection(PRODUCTS).aggregate(pipeline)
        if len(found) >= wanted or end is None:
            break
        width = _next_width(end - start, len(found), wanted)
        ids, position = {"$gte": ids["$lt"]}, end
    next_cursor = encode_cursor(found[query.limit - 1]["_id"]) if len(found) > query.limit else None
    return found[:query.limit], next_cursor


def style_pictures(label: str, style: str | None, limit: int = 24) -> list[tuple[str, str]]:
    """(product id, stored picture ref) of up to `limit` products of the label in the style (any style for
    None), the first by id: the label_id index bounds the read at any catalog size. The local generator
    draws them into rooms."""
    query = {"label": label, **({"styles": style} if style else {})}
    cursor = db.collection(PRODUCTS).find(query, {"image_urls": 1}).sort(
        [("label", 1), ("_id", 1)]).limit(limit)
    return [(d["_id"], d["image_urls"][0]) for d in cursor if d.get("image_urls")]


def products_by_id(ids: Iterable[str]) -> dict[str, dict]:
    """The one way to read products by id: id -> product document (unknown ids are absent)."""
    return {d["_id"]: d for d in db.collection(PRODUCTS).find({"_id": {"$in": sorted(set(ids))}})}


def get_product(product_id: str) -> dict:
    product = products_by_id([product_id]).get(product_id)
    if product is None:
        raise errors.NotFound("No product with this id.", code="PRODUCT_NOT_FOUND")
    return product


def similar_products(query: SimilarQuery) -> list[tuple[dict, float]]:
    """The nearest products to a product's image vector (same label unless `label` says otherwise)."""
    product = get_product(query.product_id)
    vector = vectors.get_vector(product["_id"])
    if vector is None:
        raise errors.Conflict("This product has no image embedding yet; re-run the catalog import.",
                              code="NOT_EMBEDDED")
    hits = vectors.search_similar(vector, label=query.label or product["label"], limit=query.limit)
    return with_products(hits)


def with_products(hits: list[tuple[str, float]]) -> list[tuple[dict, float]]:
    """(product_id, score) hits -> (product doc, score) in the same order; ids missing in Mongo are dropped."""
    docs = products_by_id(pid for pid, _ in hits)
    return [(docs[pid], score) for pid, score in hits if pid in docs]


# --- AR models ---------------------------------------------------------------------------------------------

def known_labels() -> list[str]:
    return sorted(db.collection(AR_MODELS).distinct("label"))


def median_dimensions(label: str) -> dict[str, float] | None:
    """Median width/depth/height (cm) of the label's products, counted now: reads every product of the label."""
    rows = [d.get("dimensions") or {} for d in db.collection(PRODUCTS).find({"label": label}, {"dimensions": 1})]
    rows = [r for r in rows if all(isinstance(r.get(k), int | float) for k in DIMENSIONS)]
    if not rows:
        return None
    return {k: round(float(statistics.median(r[k] for r in rows)), 1) for k in DIMENSIONS}


def refresh_label_stats(labels: Iterable[str]) -> dict[str, dict[str, float] | None]:
    """Count each label's median dimensions and embedding centroid and store them in `label_stats`. The import
    calls this after it writes products, so AR answers and the local detector read one small document instead
    of every product of the label. A count never overwrites one that started later (two import shards
    finishing together). Returns the dimensions."""
    from lib import vectors

    collection = vectors.collection_name()
    counted: dict[str, dict[str, float] | None] = {}
    for label in sorted(set(labels)):
        started = db.utcnow()
        counted[label] = median_dimensions(label)
        centroid = vectors.label_centroid(label)
        with contextlib.suppress(DuplicateKeyError):  # the filter missed: a later count is already stored
            db.collection(LABEL_STATS).update_one(
                {"_id": label, "$or": [{"counted_at": {"$lte": started}}, {"counted_at": {"$exists": False}}]},
                {"$set": {"dimensions": counted[label], "centroid": centroid, "vectors": collection,
                          "counted_at": started}}, upsert=True)
    return counted


def label_centroids() -> dict[str, list[float]]:
    """label -> the stored centroid of its products' vectors in the collection this process searches (the
    local detector labels by the nearest): one read of small documents at any catalog size. A catalog whose
    products were written without an import (by hand, in tests, before centroids were stored) has them
    counted once, here, and stored."""
    from lib import vectors

    collection = vectors.collection_name()
    query = {"vectors": collection, "centroid": {"$ne": None}}
    stored = list(db.collection(LABEL_STATS).find(query, {"centroid": 1}).sort("_id", 1))
    if not stored:
        refresh_label_stats(db.collection(PRODUCTS).distinct("label"))
        stored = list(db.collection(LABEL_STATS).find(query, {"centroid": 1}).sort("_id", 1))
    return {d["_id"]: d["centroid"] for d in stored}


def typical_dimensions(label: str) -> dict[str, float] | None:
    """What a typical product of the label measures: the stored median, counted on first use for products
    that were written without an import (by hand, or in tests)."""
    stored = db.collection(LABEL_STATS).find_one({"_id": label}, {"dimensions": 1})
    if stored is not None:
        return stored.get("dimensions")
    return refresh_label_stats([label])[label]


def ar_models_for(label: str) -> tuple[list[dict], dict[str, float] | None]:
    models = list(db.collection(AR_MODELS).find({"label": label}).sort("_id", 1))
    if not models:
        known = ", ".join(known_labels()) or "none yet"
        raise errors.NotFound(f"No 3D model for label '{label[:40]}'. Known labels: {known}.",
                              code="LABEL_NOT_FOUND")
    return models, typical_dimensions(label)


def _measured(dimensions: dict[str, Any] | None) -> bool:
    return bool(dimensions) and all((dimensions or {}).get(k, 0) > 0 for k in ("width_cm", "depth_cm", "height_cm"))


def public_ar_object(model: dict, typical: dict[str, float] | None, product: dict[str, Any] | None = None) -> ArObject:
    """The model scaled to `product`'s dimensions when it has them all, else to its label's `typical` ones."""
    own = model["dimensions"]
    if product is not None and _measured(product.get("dimensions")):
        dims, sized_to, product_id = product["dimensions"], "product", product.get("_id") or product.get("id")
    elif _measured(typical):
        dims, sized_to, product_id = typical, "label", None
    else:
        dims, sized_to, product_id = own, "model", None
    # the model is true-to-size for its own dimensions; the client multiplies it by these factors
    scale = {axis: round(dims[key] / own[key], 4) if own.get(key) else 1.0
             for axis, key in (("x", "width_cm"), ("y", "height_cm"), ("z", "depth_cm"))}
    return ArObject(
        id=model["_id"], label=model["label"], name=model.get("name", model["label"]),
        model_url=_sign(model["model_url"]) or "", image_url=_sign(model.get("image_url")),
        position=Xyz.model_validate(model.get("position", {"x": 0.0, "y": 0.0, "z": 0.0})),
        rotation=Xyz.model_validate(model.get("rotation", {"x": 0.0, "y": 0.0, "z": 0.0})),
        scale=Xyz.model_validate(scale), sized_to=sized_to, product_id=product_id,
        width=dims["width_cm"], depth=dims["depth_cm"], height=dims["height_cm"],
        model_dimensions=Dimensions.model_validate(own),
    )


# --- writes used by the demo seed and operators ------------------------------------------------------------

def _replace_by_id(collection: Collection, docs: list[dict]) -> None:
    """Replace-or-insert by _id, stamping updated_at."""
    if not docs:
        return
    now = db.utcnow()
    collection.bulk_write(
        [ReplaceOne({"_id": d["_id"]}, {**d, "updated_at": now}, upsert=True) for d in docs], ordered=False)


def upsert_styles(docs: list[dict]) -> None:
    _replace_by_id(db.collection(STYLES), docs)


def upsert_room_types(docs: list[dict]) -> None:
    _replace_by_id(db.collection(ROOM_TYPES), docs)


def upsert_ar_models(docs: list[dict]) -> None:
    _replace_by_id(db.collection(AR_MODELS), docs)


def upsert_products(docs: list[dict]) -> None:
    """The catalog import's write: each product's fields set by _id (created_at kept from its first import), with
    its search fields (see searchable)."""
    if not docs:
        return
    now = db.utcnow()
    db.collection(PRODUCTS).bulk_write(
        [UpdateOne({"_id": d["_id"]}, {"$set": {**{k: v for k, v in d.items() if k != "_id"}, **searchable(d),
                                                "updated_at": now},
                                       "$setOnInsert": {"created_at": now}}, upsert=True) for d in docs],
        ordered=False)
