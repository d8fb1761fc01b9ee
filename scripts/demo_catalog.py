"""The demo catalog, generated deterministically (same bytes every run, nothing downloaded).

- 10 styles, each with a palette, a texture and a 512 px reference image drawn here (the local generator
  uses it for style transfer, so every style looks distinct);
- 6 room types;
- 12 labels; for each, `per_label` products (default 90: 1,080 in all) with a drawn 256 px JPEG: the label's
  silhouette in an oblique view, proportioned by the product's own dimensions, in a material (fabric, wood,
  metal, leather, rattan, velvet) with its colour and texture; names, brands, prices and true dimensions vary;
- one true-to-size low-poly binary glTF (.glb) per label, built from the same boxes the images are drawn from.

`seed()` uploads the objects to the catalog bucket (outside the catalog prefix, so no import is triggered),
writes styles, room types and AR models, and imports the products through the same code as the import job
(lib.catalog_import.import_records: validation, stable ids, embeddings, Mongo + Qdrant). It is idempotent:
`seed_if_needed()` skips when the catalog_meta marker matches and the vector collection is populated.

    python scripts/demo_catalog.py --per-label 90          # seed the running local stack (needs its env)
    python scripts/demo_catalog.py --out /tmp/demo --per-label 5    # write files only (CSV + images + .glb)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.local.glb import Box, build_glb  # noqa: E402

VERSION = 1  # bump when the generator's output changes, so seed_if_needed re-seeds
SOURCE = "demo"
PRODUCT_PREFIX = "demo/products/"
MODEL_PREFIX = "demo/models/"
STYLE_PREFIX = "demo/styles/"

ROOM_TYPES = [
    ("living-room", "Living room"), ("bedroom", "Bedroom"), ("dining-room", "Dining room"),
    ("home-office", "Home office"), ("kitchen", "Kitchen"), ("kids-room", "Kids' room"),
]

# id, name, description, palette (hex), texture, room types
STYLES = [
    ("modern", "Modern", "Clean lines, neutral base with bold accents.",
     ["#f2f2f0", "#2b2b2b", "#d64541", "#9aa5b1"], "blocks", ["living-room", "bedroom", "dining-room", "home-office",
                                                               "kitchen"]),
    ("scandinavian", "Scandinavian", "Light woods, white walls, soft textiles, hygge.",
     ["#faf7f2", "#d9c7a7", "#a3b1a0", "#6b7b8c"], "stripes", ["living-room", "bedroom", "dining-room",
                                                                "kids-room", "kitchen"]),
    ("industrial", "Industrial", "Raw brick, black steel, reclaimed wood.",
     ["#5a3a2e", "#8c4b32", "#2f2f2f", "#b0a89a"], "bricks", ["living-room", "home-office", "kitchen"]),
    ("bohemian", "Bohemian", "Layered patterns, warm colours, plants and rattan.",
     ["#c0504d", "#e8a33d", "#6a8d4f", "#7b3f61"], "dots", ["living-room", "bedroom", "kids-room"]),
    ("minimalist", "Minimalist", "Few objects, calm whites and greys, empty space.",
     ["#ffffff", "#e6e6e6", "#bdbdbd", "#3d3d3d"], "plain", ["living-room", "bedroom", "home-office", "kitchen"]),
    ("mid-century", "Mid-century modern", "Walnut, tapered legs, mustard and teal.",
     ["#7a4b2a", "#d9a441", "#1f6f6f", "#e8d9c0"], "arcs", ["living-room", "dining-room", "home-office"]),
    ("coastal", "Coastal", "Sand, sea blues, whitewashed wood, linen.",
     ["#f4ead5", "#9fc5d6", "#2f6f9f", "#ffffff"], "waves", ["living-room", "bedroom", "kids-room"]),
    ("japandi", "Japandi", "Japanese calm meets Nordic function: low, natural, muted.",
     ["#e9e2d6", "#a68a64", "#4a4a40", "#8a9a7b"], "grid", ["living-room", "bedroom", "dining-room"]),
    ("art-deco", "Art deco", "Geometry, gold, emerald and black lacquer.",
     ["#0b3d2e", "#c9a227", "#111111", "#f0e6d2"], "fans", ["living-room", "dining-room", "bedroom"]),
    ("rustic", "Rustic", "Heavy timber, stone, wool and earthy tones.",
     ["#6b4226", "#a0785a", "#d8c3a5", "#4e5b31"], "grain", ["living-room", "kitchen", "dining-room", "bedroom"]),
]

# A label's parts as boxes in fractions of (width x, height y, depth z); the object stands on y=0, z=0 is its
# front. The same boxes make the .glb (scaled to metres) and the drawn product images (oblique projection).
B = tuple[float, float, float, float, float, float]  # x0, x1, y0, y1, z0, z1


def _legs(h: float, t: float = 0.06, inset: float = 0.02) -> list[B]:
    lo, hi = inset, 1 - inset - t
    return [(x, x + t, 0, h, z, z + t) for x in (lo, hi) for z in (lo, hi)]


LABELS: dict[str, dict] = {
    "sofa": {"dims": (210, 92, 84), "price": (399, 2499), "materials": ["fabric", "leather", "velvet"],
             "parts": [(0.07, 0.93, 0.1, 0.45, 0.0, 1.0), (0.07, 0.93, 0.45, 1.0, 0.72, 1.0),
                       (0.0, 0.07, 0.1, 0.66, 0.0, 1.0), (0.93, 1.0, 0.1, 0.66, 0.0, 1.0), *_legs(0.1, 0.04)]},
    "armchair": {"dims": (82, 85, 88), "price": (149, 999), "materials": ["fabric", "leather", "velvet", "rattan"],
                 "parts": [(0.14, 0.86, 0.12, 0.45, 0.0, 1.0), (0.14, 0.86, 0.45, 1.0, 0.75, 1.0),
                           (0.0, 0.14, 0.12, 0.68, 0.0, 1.0), (0.86, 1.0, 0.12, 0.68, 0.0, 1.0),
                           *_legs(0.12, 0.06)]},
    "chair": {"dims": (46, 52, 86), "price": (39, 349), "materials": ["wood", "metal", "fabric", "rattan"],
              "parts": [(0.0, 1.0, 0.5, 0.56, 0.0, 1.0), (0.0, 1.0, 0.56, 1.0, 0.9, 1.0), *_legs(0.5, 0.08, 0.0)]},
    "bed": {"dims": (166, 212, 100), "price": (249, 1999), "materials": ["wood", "fabric", "velvet", "metal"],
            "parts": [(0.0, 1.0, 0.1, 0.4, 0.0, 0.96), (0.03, 0.97, 0.4, 0.56, 0.02, 0.94),
                      (0.0, 1.0, 0.0, 1.0, 0.96, 1.0), (0.1, 0.45, 0.56, 0.64, 0.78, 0.92),
                      (0.55, 0.9, 0.56, 0.64, 0.78, 0.92), *_legs(0.1, 0.04)]},
    "desk": {"dims": (140, 68, 75), "price": (79, 899), "materials": ["wood", "metal"],
             "parts": [(0.0, 1.0, 0.95, 1.0, 0.0, 1.0), (0.0, 0.04, 0.0, 0.95, 0.05, 0.95),
                       (0.66, 1.0, 0.5, 0.95, 0.05, 0.95), (0.96, 1.0, 0.0, 0.5, 0.05, 0.95)]},
    "table": {"dims": (180, 90, 75), "price": (99, 1499), "materials": ["wood", "metal", "stone"],
              "parts": [(0.0, 1.0, 0.93, 1.0, 0.0, 1.0), *_legs(0.93, 0.05, 0.04)]},
    "wardrobe": {"dims": (100, 58, 200), "price": (149, 1299), "materials": ["wood", "painted"],
                 "parts": [(0.0, 1.0, 0.04, 1.0, 0.0, 1.0), (0.02, 0.98, 0.0, 0.04, 0.03, 0.97),
                           (0.47, 0.49, 0.45, 0.6, -0.0, 0.02), (0.51, 0.53, 0.45, 0.6, 0.0, 0.02)]},
    "bookshelf": {"dims": (80, 30, 180), "price": (49, 599), "materials": ["wood", "metal", "painted"],
                  "parts": [(0.0, 0.04, 0.0, 1.0, 0.0, 1.0), (0.96, 1.0, 0.0, 1.0, 0.0, 1.0),
                            (0.04, 0.96, 0.0, 1.0, 0.94, 1.0),
                            *[(0.04, 0.96, y, y + 0.025, 0.0, 0.94) for y in (0.0, 0.24, 0.48, 0.72, 0.975)]]},
    "lamp": {"dims": (40, 40, 160), "price": (25, 399), "materials": ["metal", "fabric", "rattan"],
             "parts": [(0.3, 0.7, 0.0, 0.02, 0.3, 0.7), (0.47, 0.53, 0.02, 0.76, 0.47, 0.53),
                       (0.0, 1.0, 0.76, 1.0, 0.0, 1.0)]},
    "rug": {"dims": (200, 300, 1.2), "price": (39, 899), "materials": ["wool", "fabric"],
            "parts": [(0.0, 1.0, 0.0, 1.0, 0.0, 1.0)]},
    "nightstand": {"dims": (45, 40, 55), "price": (29, 399), "materials": ["wood", "painted", "rattan"],
                   "parts": [(0.0, 1.0, 0.16, 1.0, 0.0, 1.0), *_legs(0.16, 0.07, 0.03),
                             (0.42, 0.58, 0.72, 0.76, -0.0, 0.02)]},
    "dresser": {"dims": (120, 48, 80), "price": (99, 1199), "materials": ["wood", "painted"],
                "parts": [(0.0, 1.0, 0.1, 1.0, 0.0, 1.0), *_legs(0.1, 0.04, 0.02),
                          *[(0.44, 0.56, y, y + 0.03, 0.0, 0.02) for y in (0.3, 0.55, 0.8)]]},
}

MATERIAL_COLOURS = {
    "fabric": ["#8e9aa6", "#c7b299", "#5b6d5b", "#a04e4e", "#3e4a61", "#d8d2c4", "#6e5a7e", "#c98b3c"],
    "leather": ["#5a3825", "#8b5a2b", "#2e2a27", "#a0522d", "#c19a6b"],
    "velvet": ["#1f5f5b", "#7b2d42", "#c9a227", "#3b3f7a", "#d88c9a"],
    "rattan": ["#c8a165", "#b08850", "#d9b98a"],
    "wood": ["#c19a6b", "#8b5a2b", "#5c3b1e", "#e3c99b", "#a67b5b", "#3d2b1f"],
    "metal": ["#2b2b2b", "#b5b5b5", "#c9a227", "#7d8b99", "#f0f0f0"],
    "stone": ["#d9d6cf", "#8a8a84", "#2f2f2f", "#e8e0d5"],
    "painted": ["#f4f4f0", "#2f3e46", "#9ab0a0", "#e7c6b0", "#1d3557", "#f1c453"],
    "wool": ["#b23a48", "#3d5a80", "#e0c097", "#5e6472", "#a3b18a", "#f2e8cf"],
}
BRANDS = ["Nordhaus", "Casa Verde", "Atelier Nove", "Hjem", "Linea", "Oakridge", "Mobilia", "Kaze", "Urbano",
          "Maison Lune", "Birch & Co", "Ferro"]
ADJECTIVES = ["Alva", "Bruno", "Cleo", "Dune", "Elm", "Fjord", "Gala", "Haven", "Iris", "Juno", "Kobe", "Luma",
              "Milo", "Nora", "Orla", "Pico", "Quill", "Rhea", "Sola", "Tova", "Uma", "Vale", "Wren", "Yuki"]


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    red, green, blue = (max(0, min(255, round(c * factor))) for c in rgb)
    return red, green, blue


# --- products ----------------------------------------------------------------------------------------------

@dataclass
class DemoProduct:
    label: str
    index: int
    name: str
    brand: str
    material: str
    colour: str
    dims: tuple[float, float, float]  # width, depth, height cm
    price: float
    styles: list[str]

    @property
    def slug(self) -> str:
        return f"{self.label}-{self.index:04d}"

    @property
    def product_url(self) -> str:
        return f"https://shop.example.com/{self.label}/{self.slug}"


def make_products(per_label: int, labels: list[str] | None = None) -> list[DemoProduct]:
    products = []
    style_ids = [s[0] for s in STYLES]
    for label in labels or list(LABELS):
        spec = LABELS[label]
        rng = random.Random(f"zipkku-demo-{label}")
        for i in range(per_label):
            material = spec["materials"][i % len(spec["materials"])]
            colour = rng.choice(MATERIAL_COLOURS[material])
            w, d, h = spec["dims"]
            dims = (round(w * rng.uniform(0.78, 1.25), 1), round(d * rng.uniform(0.8, 1.2), 1),
                    round(h * rng.uniform(0.82, 1.2), 1) if label != "rug" else 1.2)
            lo, hi = spec["price"]
            price = round(math.exp(rng.uniform(math.log(lo), math.log(hi)))) - 0.01
            brand = rng.choice(BRANDS)
            name = f"{rng.choice(ADJECTIVES)} {material} {label.replace('-', ' ')}"
            products.append(DemoProduct(label, i, f"{brand} {name}", brand, material, colour, dims, price,
                                        sorted(rng.sample(style_ids, 2))))
    return products


def _texture(kind: str, shape: tuple[int, int], rng: random.Random):
    import numpy as np

    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 6.28)
    if kind == "wood":
        return 0.5 * np.sin(yy / rng.uniform(2.0, 4.0) + 2.0 * np.sin(xx / 23.0 + phase))
    if kind in ("fabric", "wool"):
        return 0.35 * ((xx.astype(int) + yy.astype(int)) % 3 == 0) - 0.15
    if kind == "velvet":
        return 0.6 * np.sin(xx / 9.0 + phase) * np.cos(yy / 13.0)
    if kind == "leather":
        return 0.25 * np.sin(xx / 3.1 + phase) * np.sin(yy / 2.7)
    if kind == "rattan":
        return 0.5 * (((xx.astype(int) // 4) + (yy.astype(int) // 4)) % 2) - 0.25
    if kind == "metal":
        return (xx / max(1, w) - 0.5) * 0.9
    if kind == "stone":
        return 0.4 * np.sin(xx / 7.0 + 3 * np.sin(yy / 11.0 + phase))
    return np.zeros((h, w), dtype=np.float32)  # painted


def draw_product(product: DemoProduct, size: int = 256) -> bytes:
    """A JPEG of the product: its label's boxes in an oblique view, scaled by its own dimensions."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(f"img-{product.slug}")
    w, d, h = product.dims
    base = _rgb(product.colour)
    bg = (rng.randint(236, 250),) * 3
    image = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(image)
    parts = LABELS[product.label]["parts"]
    if product.label == "rug":  # a rug is seen from above: a flat rectangle with a border and a motif
        ratio = w / d
        rw, rh = (0.8 * size, 0.8 * size / ratio) if ratio >= 1 else (0.8 * size * ratio, 0.8 * size)
        x0, y0 = (size - rw) / 2, (size - rh) / 2
        draw.rectangle([x0, y0, x0 + rw, y0 + rh], fill=base)
        inner = _shade(base, 0.65)
        draw.rectangle([x0 + rw * 0.08, y0 + rh * 0.08, x0 + rw * 0.92, y0 + rh * 0.92], outline=inner,
                       width=max(2, int(size / 40)))
        cx, cy = x0 + rw / 2, y0 + rh / 2
        draw.polygon([(cx, y0 + rh * 0.25), (x0 + rw * 0.75, cy), (cx, y0 + rh * 0.75), (x0 + rw * 0.25, cy)],
                     fill=_shade(base, 1.3))
    else:
        ox, oy = 0.45 * d / max(w, h, d), 0.3 * d / max(w, h, d)  # oblique offsets per unit of depth
        span_x, span_y = w / max(w, h) + ox, h / max(w, h) + oy
        scale = 0.82 * size / max(span_x, span_y)
        left = (size - span_x * scale) / 2
        bottom = size - (size - span_y * scale) / 2

        def project(x: float, y: float, z: float) -> tuple[float, float]:
            # x, y, z in fractions of the object's w, h, d; deeper (larger z) goes up-right
            px = (x * w / max(w, h) + z * ox) * scale + left
            py = bottom - (y * h / max(w, h) + z * oy) * scale
            return px, py

        for x0, x1, y0, y1, z0, z1 in sorted(parts, key=lambda p: (-p[5], p[2])):
            top = [project(x0, y1, z0), project(x1, y1, z0), project(x1, y1, z1), project(x0, y1, z1)]
            side = [project(x1, y0, z0), project(x1, y0, z1), project(x1, y1, z1), project(x1, y1, z0)]
            front = [project(x0, y0, z0), project(x1, y0, z0), project(x1, y1, z0), project(x0, y1, z0)]
            draw.polygon(side, fill=_shade(base, 0.7))
            draw.polygon(top, fill=_shade(base, 1.18))
            draw.polygon(front, fill=base, outline=_shade(base, 0.55))
    pixels = np.asarray(image, dtype=np.float32)
    mask = (np.abs(pixels - np.asarray(bg, dtype=np.float32)).sum(axis=2) > 6)[..., None]
    texture = _texture(product.material, pixels.shape[:2], rng)[..., None] * 38.0
    noise = np.random.default_rng(product.index + 7919 * len(product.label)).normal(0, 3.0, pixels.shape)
    out = np.clip(pixels + mask * texture + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(out).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


# --- rooms (the detector's benchmark and the demo's photo) ------------------------------------------------

@dataclass
class DrawnObject:
    label: str
    box: tuple[int, int, int, int]  # x, y, width, height in pixels of the room picture


ROOM_LABELS = {  # what stands in each kind of drawn room (a rug lies in the open floor in front)
    "living-room": ["sofa", "armchair", "lamp", "bookshelf", "table", "rug"],
    "bedroom": ["bed", "nightstand", "wardrobe", "dresser", "lamp", "rug"],
    "dining-room": ["table", "chair", "dresser", "lamp", "bookshelf"],
    "home-office": ["desk", "chair", "bookshelf", "lamp", "armchair"],
}
WALL_COLOURS = ["#e2ded4", "#d7dde0", "#efe6d8", "#c9d3c3", "#e8d5c8", "#d9d4e4", "#f2f0ea"]
FLOOR_COLOURS = ["#a88c6e", "#8a6a4a", "#c2a582", "#6f5a49", "#b9b2a7", "#7d7367"]


def _object_pixels(product: DemoProduct, size: int):
    """The drawn product cut out of its picture: RGB array and a mask of the object's pixels."""
    from PIL import Image

    from lib.local.generator import cut_out

    return cut_out(Image.open(io.BytesIO(draw_product(product, size))))


def draw_room(seed: int, width: int = 768, height: int = 576) -> tuple[bytes, list[DrawnObject]]:
    """A drawn room photo and its ground truth: a wall (with a window and a picture frame, which are not
    furniture), a floor, and 2-4 pieces of furniture drawn like the catalog's products (new colours and
    sizes, never one of the catalog's own pictures), standing apart on the floor at their true relative
    sizes. Returns the JPEG and each drawn object's label and box."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(f"room-{seed}")
    kind = sorted(ROOM_LABELS)[seed % len(ROOM_LABELS)]
    wall, floor = _rgb(rng.choice(WALL_COLOURS)), _rgb(rng.choice(FLOOR_COLOURS))
    horizon = int(height * rng.uniform(0.5, 0.62))  # where the wall meets the floor
    image = Image.new("RGB", (width, height), wall)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, horizon, width, height], fill=floor)
    for y in range(horizon + 18, height, 26):  # floorboards
        draw.line([0, y, width, y], fill=_shade(floor, 0.9), width=1)
    draw.rectangle([0, horizon - 8, width, horizon], fill=_shade(wall, 0.86))  # skirting board
    wx = rng.randrange(width // 10, width * 6 // 10)
    draw.rectangle([wx, height // 12, wx + width // 5, horizon * 6 // 10], fill=(196, 222, 240),
                   outline=(250, 250, 250), width=6)  # a window
    fx = (wx + width // 3 + rng.randrange(0, width // 4)) % (width - width // 7)
    draw.rectangle([fx, height // 8, fx + width // 8, height // 8 + width // 11], outline=(92, 70, 52), width=5)

    labels = ROOM_LABELS[kind]
    chosen = rng.sample([label for label in labels if label != "rug"], rng.randint(2, 3))
    if "rug" in labels and rng.random() < 0.5:
        chosen.append("rug")
    px_per_cm = width / rng.uniform(520, 640)
    objects: list[DrawnObject] = []
    pixels = np.asarray(image).copy()
    x = rng.randrange(8, 40)
    for n, label in enumerate(chosen):
        spec = LABELS[label]
        material = rng.choice(spec["materials"])
        w, d, h = (v * rng.uniform(0.85, 1.15) for v in spec["dims"])
        product = DemoProduct(label, 9000 + seed * 10 + n, label, "", material, rng.choice(MATERIAL_COLOURS[material]),
                              (w, d, h if label != "rug" else 1.2), 0.0, [])
        art, mask = _object_pixels(product, 256)
        if label == "rug":  # a rug is seen from above in the catalog: lay it on the floor in perspective
            target_w, target_h = int(w * px_per_cm * 0.8), int((height - horizon) * 0.22)
        else:
            target_w = int(max(w, d * 0.45) * px_per_cm)
            target_h = int(target_w * art.shape[0] / art.shape[1])
        target_w, target_h = max(12, min(target_w, width // 2)), max(8, target_h)
        if label == "rug":
            left, top = rng.randrange(0, max(1, width - target_w)), height - target_h - rng.randrange(6, 24)
            if any(o.box[1] + o.box[3] > top - 6 and o.box[0] < left + target_w and left < o.box[0] + o.box[2]
                   for o in objects):
                continue  # the rug only where nothing stands on it
        else:
            if x + target_w > width - 8:
                break
            left = x
            depth = rng.randrange(4, max(5, (height - horizon) // 4))  # how far in front of the wall
            top = max(0, min(height - target_h - 4, horizon + depth - target_h + int(target_h * 0.15)))
            x += target_w + rng.randrange(24, 70)
        art_img = Image.fromarray(art).resize((target_w, target_h), Image.Resampling.BILINEAR)
        mask_img = Image.fromarray(mask.astype(np.uint8) * 255).resize((target_w, target_h), Image.Resampling.NEAREST)
        region = pixels[top:top + target_h, left:left + target_w]
        m = np.asarray(mask_img)[: region.shape[0], : region.shape[1]] > 0
        region[m] = np.asarray(art_img)[: region.shape[0], : region.shape[1]][m]
        objects.append(DrawnObject(label, (left, top, region.shape[1], region.shape[0])))
    noise = np.random.default_rng(seed).normal(0, 2.5, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue(), objects


# --- styles ------------------------------------------------------------------------------------------------

def draw_style(style: tuple, size: int = 512) -> bytes:
    """The style's reference image: its palette laid out in its texture (a distinct look per style)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    style_id, _, _, palette, texture, _ = style
    rng = random.Random(f"style-{style_id}")
    colours = [_rgb(c) for c in palette]
    image = Image.new("RGB", (size, size), colours[0])
    draw = ImageDraw.Draw(image)
    if texture == "stripes":
        for i, x in enumerate(range(0, size, 32)):
            draw.rectangle([x, 0, x + 20, size], fill=colours[1 + i % 3])
    elif texture == "bricks":
        for row, y in enumerate(range(0, size, 28)):
            for x in range(-(row % 2) * 30, size, 60):
                draw.rectangle([x + 2, y + 2, x + 56, y + 24], fill=colours[rng.randrange(4)])
    elif texture == "dots":
        for _ in range(260):
            x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(6, 28)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colours[rng.randrange(1, 4)])
    elif texture == "plain":
        draw.rectangle([size * 0.6, size * 0.15, size * 0.85, size * 0.85], fill=colours[2])
        draw.line([0, size * 0.9, size, size * 0.9], fill=colours[3], width=3)
    elif texture == "arcs":
        for i in range(7):
            r = 40 + i * 55
            draw.arc([-r, size - r, r, size + r], 270, 360, fill=colours[1 + i % 3], width=24)
    elif texture == "waves":
        for i, y in enumerate(range(0, size, 24)):
            points = [(x, y + 10 * math.sin(x / 30 + i)) for x in range(0, size + 8, 8)]
            draw.line(points, fill=colours[1 + i % 3], width=9)
    elif texture == "grid":
        for x in range(0, size, 64):
            draw.line([x, 0, x, size], fill=colours[2], width=6)
        for y in range(0, size, 96):
            draw.line([0, y, size, y], fill=colours[2], width=6)
        draw.rectangle([64 * 2 + 6, 96 + 6, 64 * 4 - 6, 96 * 3 - 6], fill=colours[3])
    elif texture == "fans":
        for row, y in enumerate(range(0, size + 64, 48)):
            for x in range(-(row % 2) * 48, size + 96, 96):
                for k, r in enumerate((48, 34, 20)):
                    draw.pieslice([x - r, y - r, x + r, y + r], 180, 360, fill=colours[(k + row) % 4])
    elif texture == "grain":
        arr = np.zeros((size, size, 3), dtype=np.float32)
        yy, xx = np.mgrid[0:size, 0:size]
        rings = np.sin((yy / 6.0) + 4 * np.sin(xx / 47.0)) * 0.5 + 0.5
        for c in range(3):
            arr[..., c] = colours[0][c] * rings + colours[1][c] * (1 - rings)
        image = Image.fromarray(arr.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, size * 0.7, size, size], fill=colours[3])
    else:  # blocks
        for _ in range(14):
            x, y = rng.randrange(0, size - 60), rng.randrange(0, size - 60)
            draw.rectangle([x, y, x + rng.randrange(40, 200), y + rng.randrange(40, 200)],
                           fill=colours[rng.randrange(1, 4)])
    image = image.filter(ImageFilter.SMOOTH)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


# --- AR models ---------------------------------------------------------------------------------------------

def model_boxes(label: str, dims: tuple[float, float, float], colour: str) -> list[Box]:
    """The label's parts in metres: x centred, y up from the floor, z centred (front at +z/2)."""
    w, d, h = (v / 100.0 for v in dims)
    base = [c / 255 for c in _rgb(colour)]
    boxes = []
    for i, (x0, x1, y0, y1, z0, z1) in enumerate(LABELS[label]["parts"]):
        shade = 1.0 if i == 0 else 0.85
        boxes.append(Box(
            center=((x0 + x1) / 2 * w - w / 2, (y0 + y1) / 2 * h, d / 2 - (z0 + z1) / 2 * d),
            size=(max(1e-3, (x1 - x0) * w), max(1e-3, (y1 - y0) * h), max(1e-3, (z1 - z0) * d)),
            color=(base[0] * shade, base[1] * shade, base[2] * shade, 1.0),
        ))
    return boxes


def make_model(label: str) -> bytes:
    spec = LABELS[label]
    colour = MATERIAL_COLOURS[spec["materials"][0]][0]
    return build_glb(f"zipkku-{label}", model_boxes(label, spec["dims"], colour))


# --- seeding -----------------------------------------------------------------------------------------------

def _dims_doc(dims: tuple[float, float, float]) -> dict[str, float]:
    return {"width_cm": float(dims[0]), "depth_cm": float(dims[1]), "height_cm": float(dims[2])}


def image_name(product: DemoProduct) -> str:
    """The product's picture in the catalog bucket."""
    return f"{PRODUCT_PREFIX}{product.label}/{product.slug}.jpg"


def catalog_record(product: DemoProduct, image_ref: str) -> dict:
    """The product as a row of a catalog file (what lib.catalog_import validates and writes)."""
    p = product
    return {
        "name": p.name, "product_url": p.product_url, "image_url": image_ref,
        "width": p.dims[0], "depth": p.dims[1], "height": p.dims[2], "price": p.price, "label": p.label,
        "brand": p.brand, "currency": "EUR", "styles": p.styles,
        "description": f"{p.material.capitalize()} {p.label} in {p.colour}.",
    }


def seed(per_label: int = 90, labels: list[str] | None = None, workers: int = 8,
         progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Upload and write the whole demo catalog; returns counts and timings. `progress(stage, done, total)` is
    called as it goes (stages: draw, upload, import)."""
    from lib import catalog, catalog_import, db, storage
    from lib.config import get_settings

    report = progress or (lambda stage, done, total: None)
    started = time.perf_counter()
    bucket = get_settings().catalog_bucket
    labels = labels or list(LABELS)
    products = make_products(per_label, labels)
    image_names = [image_name(p) for p in products]
    image_refs = [storage.ref(bucket, name) for name in image_names]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        report("draw", 0, len(products))
        images = list(pool.map(draw_product, products))
        drawn = time.perf_counter()
        uploads = [(name, data, "image/jpeg") for name, data in zip(image_names, images, strict=True)]
        style_images = {s[0]: draw_style(s) for s in STYLES}
        uploads += [(f"{STYLE_PREFIX}{sid}.jpg", data, "image/jpeg") for sid, data in style_images.items()]
        models = {label: make_model(label) for label in labels}
        uploads += [(f"{MODEL_PREFIX}{label}.glb", data, "model/gltf-binary") for label, data in models.items()]
        report("upload", 0, len(uploads))
        list(pool.map(lambda u: storage.upload_bytes(bucket, *u), uploads))
    uploaded = time.perf_counter()

    catalog.upsert_room_types([{"_id": rid, "name": name} for rid, name in ROOM_TYPES])
    catalog.upsert_styles([
        {"_id": sid, "name": name, "description": desc, "palette": palette, "texture": texture,
         "room_types": rooms, "image_url": storage.ref(bucket, f"{STYLE_PREFIX}{sid}.jpg")}
        for sid, name, desc, palette, texture, rooms in STYLES])
    first_image: dict[str, str] = {}
    for p, ref in zip(products, image_refs, strict=True):
        first_image.setdefault(p.label, ref)
    catalog.upsert_ar_models([
        {"_id": f"ar-{label}", "label": label, "name": f"Low-poly {label.replace('-', ' ')}",
         "model_url": storage.ref(bucket, f"{MODEL_PREFIX}{label}.glb"), "image_url": first_image.get(label),
         "position": {"x": 0.0, "y": 0.0, "z": 0.0}, "rotation": {"x": 0.0, "y": 0.0, "z": 0.0},
         "scale": {"x": 1.0, "y": 1.0, "z": 1.0}, "dimensions": _dims_doc(LABELS[label]["dims"]),
         "format": "glb"}
        for label in labels])

    by_url = dict(zip(image_refs, images, strict=True))
    records = [(line, catalog_record(p, ref), None)
               for line, (p, ref) in enumerate(zip(products, image_refs, strict=True), start=2)]

    def counted(rows: list) -> Iterator:
        for done, row in enumerate(rows):  # read a batch ahead of the embedding: close enough for a progress line
            report("import", done, len(rows))
            yield row
        report("import", len(rows), len(rows))

    result = catalog_import.import_records(counted(records), source=SOURCE, import_id=f"demo-v{VERSION}",
                                           fetch=by_url.__getitem__)
    imported = time.perf_counter()
    db.collection("catalog_meta").replace_one({"_id": SOURCE}, {
        "version": VERSION, "per_label": per_label, "labels": labels, "products": result["imported"],
        "seeded_at": db.utcnow()}, upsert=True)
    return {
        "products": result["imported"], "invalid": result["invalid"], "failed": result["failed"],
        "styles": len(STYLES), "room_types": len(ROOM_TYPES), "models": len(models),
        "seconds": {"draw": round(drawn - started, 2), "upload": round(uploaded - drawn, 2),
                    "import": round(imported - uploaded, 2), "total": round(imported - started, 2)},
    }


def seed_if_needed(per_label: int = 90, progress: Callable[[str, int, int], None] | None = None) -> dict | None:
    """Seed unless this version is already there (Mongo marker and a populated vector collection)."""
    from lib import catalog, db, vectors

    catalog.backfill_search_tokens()  # a catalog seeded before search_tokens existed stays searchable
    meta = db.collection("catalog_meta").find_one({"_id": SOURCE})
    if meta and meta.get("version") == VERSION and meta.get("per_label") == per_label:
        with contextlib.suppress(Exception):  # an unreadable vector store means: seed again
            if vectors.count() >= meta.get("products", 0) > 0:
                return None
    return seed(per_label, progress=progress)


def write_files(out: Path, per_label: int) -> Path:
    """Write a catalog CSV with local image paths plus the .glb models (for trying the import job by hand)."""
    import csv

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    path = out / "demo.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "product_url", "image_url", "width", "depth", "height", "price", "label", "brand",
                         "styles"])
        for p in make_products(per_label):
            (out / "images" / f"{p.slug}.jpg").write_bytes(draw_product(p))
            writer.writerow([p.name, p.product_url, f"images/{p.slug}.jpg", *p.dims, p.price, p.label, p.brand,
                             "|".join(p.styles)])
    for label in LABELS:
        (out / "models" / f"{label}.glb").write_bytes(make_model(label))
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-label", type=int, default=90)
    parser.add_argument("--out", type=Path, default=None, help="write files here instead of seeding")
    args = parser.parse_args()
    if args.out:
        print(write_files(args.out, args.per_label))
    else:
        print(json.dumps(seed(args.per_label), indent=2))
