"""A small real catalog (drawn product pictures, embedded and indexed), ready uploads and queued interiors,
for the generation tests. Everything goes through the real components of the local stack."""

from __future__ import annotations

import io
from typing import Any

from scripts.journey import room_photo
from tests.doubles import jpeg

LABELS = {  # label -> (shape, size in the picture, colour)
    "sofa": ("wide", (200, 90), (70, 90, 160)),
    "lamp": ("tall", (40, 200), (230, 200, 60)),
    "table": ("legs", (180, 120), (140, 90, 40)),
}


def product_picture(label: str, variant: int) -> bytes:
    from PIL import Image, ImageDraw

    shape, (w, h), colour = LABELS[label]
    colour = tuple(min(255, c + 20 * variant) for c in colour)
    img = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(img)
    x0, y0 = (256 - w) // 2, (256 - h) // 2
    if shape == "legs":
        draw.rectangle([x0, y0, x0 + w, y0 + 20], fill=colour)
        draw.rectangle([x0 + 5, y0, x0 + 20, y0 + h], fill=colour)
        draw.rectangle([x0 + w - 20, y0, x0 + w - 5, y0 + h], fill=colour)
    else:
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def seed_mini_catalog() -> dict[str, Any]:
    """Styles, room types, 12 products with vectors and one AR model per label."""
    from lib import db, storage, vectors
    from lib.config import get_settings
    from lib.embed import get_embedder

    settings = get_settings()
    style_ref = storage.ref(settings.images_bucket, "styles/boho.jpg")
    storage.upload_bytes(settings.images_bucket, "styles/boho.jpg", jpeg(256, 256, (200, 60, 40), seed=9),
                         "image/jpeg")
    db.collection("room_types").insert_many([{"_id": "living_room", "name": "Living room"},
                                             {"_id": "bedroom", "name": "Bedroom"},
                                             {"_id": "bathroom", "name": "Bathroom"}])
    db.collection("styles").insert_many([
        {"_id": "boho", "name": "Boho", "description": "warm textiles", "image_url": style_ref,
         "room_types": ["living_room", "bedroom"]},
        {"_id": "spa", "name": "Spa", "description": "calm", "room_types": ["bathroom"]},
    ])
    products, pictures = [], []
    for label in LABELS:
        for i in range(4):
            pid = f"test-{label}-{i}"
            products.append({"_id": pid, "label": label, "name": f"{label.title()} {i}", "brand": "Zipkku Test",
                             "price": 100.0 + i, "currency": "EUR", "product_url": f"https://shop.example/{pid}",
                             "image_urls": [f"https://shop.example/{pid}.jpg"],
                             "dimensions": {"width_cm": 100.0, "depth_cm": 50.0, "height_cm": 80.0}})
            pictures.append(product_picture(label, i))
    db.collection("products").insert_many(products)
    embeddings = get_embedder().embed_images(pictures)
    vectors.upsert_products((p["_id"], v, {"label": p["label"], **p["dimensions"], "price": p["price"]})
                            for p, v in zip(products, embeddings, strict=True))
    db.collection("ar_models").insert_many([
        {"_id": f"ar-{label}", "label": label, "name": label, "model_url": f"gs://{settings.catalog_bucket}/ar/{label}.glb",
         "image_url": None, "position": {"x": 0, "y": 0, "z": 0}, "rotation": {"x": 0, "y": 0, "z": 0},
         "dimensions": {"width_cm": 90.0, "depth_cm": 45.0, "height_cm": 75.0}}
        for label in LABELS
    ])
    return {"style": "boho", "room_type": "living_room", "labels": sorted(LABELS)}


def ready_upload(user_id: str, data: bytes | None = None) -> str:
    """A `ready` upload as lib.uploads leaves it: the normalized photo in the images bucket."""
    from lib import db, storage
    from lib.config import get_settings

    settings = get_settings()
    upload_id = db.new_id()
    name = f"uploads/{user_id}/{upload_id}/image.jpg"
    storage.upload_bytes(settings.images_bucket, name, data or room_photo(640, 480), "image/jpeg")
    db.collection("uploads").insert_one({
        "_id": upload_id, "user_id": user_id, "status": "ready", "image": storage.ref(settings.images_bucket, name),
        "width": 640, "height": 480, "created_at": db.utcnow(),
    })
    return upload_id


def queued_interior(user: dict[str, Any], upload_id: str, *, confirm: bool = True, **body: Any) -> dict[str, Any]:
    """A stored `queued` interior (quota taken) as a request leaves it once its enqueue is confirmed (or, with
    confirm=False, before), without a task: the tests run the job themselves."""
    from lib import interiors

    request = interiors.GenerateBody(upload_id=upload_id, room_type=body.pop("room_type", "living_room"),
                                     style=body.pop("style", "boho"), **body)
    doc, _ = interiors.store_request({"_id": user["id"]}, request, None)
    if confirm:
        interiors.confirm_enqueued(doc)
    return doc
