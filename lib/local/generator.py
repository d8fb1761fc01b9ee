"""Local stand-in for the AI generator: offline and deterministic, and what it returns reads as a redesign of
the same room.

1. Find the room's wall, floor and furniture with the local detector's analysis (lib.local.detector.analyse)
   and label each piece by the catalog's label centroids. The same photo gives every variant of an interior
   and every later generation of it, so the analysis is kept (see RoomAnalyses): in memory, and on disk under
   <LOCAL_DIR>/cache/room-analysis/ for the next process (each generation's job runs in a fresh one).
2. Recolour the wall and the floor toward the style's palette (lib.catalog styles), keeping their light and
   texture (each pixel keeps its brightness relative to the surface's); windows and whatever is not wall,
   floor or furniture stay as they are.
3. Replace each piece of furniture by a catalog product of that label in the chosen style: the old piece is
   painted over with the wall and floor behind it, the product's picture (its background cut away) is drawn
   into the piece's box, standing on the same spot. The seed picks which products and which palette colours.

`strength` moves between the photo and the full restyle: the surfaces' colour shifts in proportion, and up to
0.5 only that share of the pieces (the largest first) is replaced: 0 returns the photo, 0.25 replaces half of
them, 0.5 and above all. The detector then finds the drawn products in the variant, so its parts lead to the
products it shows. It is a stand-in for local runs, tests and demos, not a diffusion model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import math
import os
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from lib.config import get_settings
from lib.providers import INVALID_IMAGE, GenerationRequest, ProviderError, open_rgb

MIN_EDGE_PX = 64
FULL_REPLACEMENT_STRENGTH = 0.5  # from here on every piece is replaced
PRODUCTS_PER_PIECE = 24          # the seed picks among this many products of the label and style
_CACHE_SIZE = 64
SURFACE_LIKE = 45  # a pixel this close to a surface's colour (sum over RGB) is that surface

log = logging.getLogger("zipkku.local.generator")


def fallback_palette(style: str) -> list[str]:
    """A deterministic palette for a style the catalog does not know (light first)."""
    digest = hashlib.sha256(style.encode()).digest()
    colours = [tuple(digest[3 * i:3 * i + 3]) for i in range(4)]
    colours.sort(key=lambda c: -sum(c))
    return ["#" + bytes(c).hex() for c in colours]


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return red, green, blue


def cut_out(picture) -> tuple[Any, Any]:
    """A catalog picture's object: its pixels (RGB array, cropped to the object) and its mask. The background
    is the median colour of the picture's border; the object is what differs from it."""
    import numpy as np

    image = np.asarray(picture.convert("RGB"), dtype=np.int16)
    background = np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0)
    mask = np.abs(image - background).sum(axis=2) > 30
    if mask.sum() < 16:
        mask[:] = True
    ys, xs = np.nonzero(mask)
    crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return image[crop].astype(np.uint8), mask[crop]


def _lru_get(cache: OrderedDict, key, create):
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = create()
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


@functools.cache
def _analysis_code() -> str:
    """The analysis's code (lib/local/detector.py): an analysis stored by other code is never reused."""
    from lib.local import detector

    return hashlib.sha256(Path(detector.__file__).read_bytes()).hexdigest()


class RoomAnalyses:
    """The room analysis (layout and labelled pieces) of each photo, computed once and kept on disk.

    Each generation's job runs in a fresh process (a Cloud Run Job execution; locally a worker that takes one
    execution), so a user who tries several styles on one photo would pay the analysis every time. The key is
    a digest of everything the analysis depends on: the photo's pixels and size (a different or changed photo
    never reuses one), the catalog's label centroids and the embedder (the labels and embeddings of the pieces),
    the number of pieces kept and the analysis's code. One .npz file per key (arrays only, read without
    pickle), written to a temporary name and renamed, so concurrent jobs never read half a file; an unreadable
    entry is computed again. Local stand-in only: the production generator (Replicate) analyses nothing.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(photo, centroids: dict[str, list[float]]) -> str:
        from lib.embed import embedder_identity

        digest = hashlib.sha256()
        described = {"code": _analysis_code(), "size": photo.size, "mode": photo.mode,
                     "embedder": embedder_identity(), "parts": get_settings().detector_max_parts}
        digest.update(json.dumps(described, sort_keys=True).encode())
        digest.update(json.dumps(centroids, sort_keys=True).encode())
        digest.update(photo.tobytes())
        return digest.hexdigest()

    def get(self, key: str, compute):
        """The stored analysis of `key`, or `compute()`'s, stored."""
        path = self.folder / f"{key}.npz"
        stored = self._load(path)
        if stored is not None:
            log.debug("room analysis %s reused", key[:12])
            return stored
        layout, pieces = compute()
        log.debug("room analysis %s computed", key[:12])
        with contextlib.suppress(OSError):  # a read-only or full disk costs the next job the analysis, no more
            self._save(path, layout, pieces)
        return layout, pieces

    @staticmethod
    def _save(path: Path, layout, pieces) -> None:
        import numpy as np

        objects = layout.objects
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.npz")
        try:
            np.savez_compressed(
                temporary, scale=np.float64(layout.scale), size=np.asarray(layout.size, dtype=np.int64),
                horizon=np.int64(layout.horizon), wall=layout.wall, floor=layout.floor, windows=layout.windows,
                boxes=np.asarray([o.box for o in objects], dtype=np.int64).reshape(-1, 4),
                masks=np.asarray([o.mask for o in objects], dtype=bool).reshape(-1, *layout.wall.shape),
                labels=np.asarray([p[1] for p in pieces], dtype=str),
                confidences=np.asarray([p[2] for p in pieces], dtype=np.float64),
                embeddings=np.asarray([p[3] for p in pieces], dtype=np.float32) if pieces else np.zeros((0, 0)))
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    @staticmethod
    def _load(path: Path):
        import numpy as np

        from lib.local.detector import RoomLayout, RoomObject

        try:
            with np.load(path, allow_pickle=False) as data:
                objects = [RoomObject((int(x), int(y), int(w), int(h)), mask)
                           for (x, y, w, h), mask in zip(data["boxes"], data["masks"], strict=True)]
                width, height = (int(v) for v in data["size"])
                layout = RoomLayout(float(data["scale"]), (width, height), data["wall"], data["floor"],
                                    int(data["horizon"]), data["windows"], objects)
                pieces = [(obj, str(label), float(confidence), embedding.tolist()) for obj, label, confidence, embedding
                          in zip(objects, data["labels"], data["confidences"], data["embeddings"], strict=False)]
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - a damaged entry (a crash while writing elsewhere, a full disk) is redone
            log.warning("room analysis %s unreadable; computing it again", path.name)
            return None
        return layout, pieces


class LocalGenerator:
    name = "local"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rooms: OrderedDict = OrderedDict()     # RoomAnalyses.key -> (layout, [(object, label, ...)])
        self._pictures: OrderedDict = OrderedDict()  # picture ref -> cut_out(picture) (None: unreadable)

    def generate(self, request: GenerationRequest, seed: int) -> bytes:
        from PIL import Image

        photo = open_rgb(request.image, "photo")
        if min(photo.size) < MIN_EDGE_PX:
            raise ProviderError(INVALID_IMAGE, f"The photo is too small to redesign ({photo.width}x{photo.height}).",
                                work_started=False)
        photo.thumbnail((get_settings().local_generator_max_edge_px,) * 2, Image.Resampling.LANCZOS)
        strength = max(0.0, min(1.0, request.strength))
        style = self._style(request.style)
        from lib.local.detector import label_centroids

        centroids = label_centroids()
        analyses = RoomAnalyses(Path(get_settings().local_dir).resolve() / "cache" / "room-analysis")
        key = analyses.key(photo, centroids)
        with self._lock:
            layout, pieces = _lru_get(self._rooms, key, lambda: analyses.get(key, lambda: self._room(photo, centroids)))
        result = self._restyle(photo, layout, pieces, style, strength, seed)
        out = io.BytesIO()
        result.save(out, "JPEG", quality=88, optimize=True)
        return out.getvalue()

    # --- what the catalog gives -------------------------------------------------------------------------

    @staticmethod
    def _style(name: str) -> dict:
        from lib import catalog

        style = catalog.resolve_style(name) or {}
        return {"id": style.get("_id"), "palette": style.get("palette") or fallback_palette(name)}

    @staticmethod
    def _room(photo, centroids: dict[str, list[float]]):
        from lib.local.detector import analyse, label_objects

        layout = analyse(photo)
        return layout, label_objects(photo, layout, layout.objects[: get_settings().detector_max_parts], centroids)

    def _picture(self, ref: str):
        from PIL import Image

        from lib import storage

        def load():
            if not ref.startswith("gs://"):
                return None  # a shop's https picture is not fetched at generation time
            try:
                return cut_out(Image.open(io.BytesIO(storage.download_bytes(*storage.parse_ref(ref)))))
            except Exception:  # noqa: BLE001 - a missing or unreadable picture leaves the piece as it is
                return None

        with self._lock:
            return _lru_get(self._pictures, ref, load)

    # --- drawing ----------------------------------------------------------------------------------------

    def _restyle(self, photo, layout, pieces, style: dict, strength: float, seed: int):
        import numpy as np
        from PIL import Image
        from scipy import ndimage

        rng = np.random.default_rng(seed)
        pixels = np.asarray(photo, dtype=np.float32)
        h, w = pixels.shape[:2]

        def full_size(mask):
            return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 0

        palette = sorted((_rgb(c) for c in style["palette"]), key=lambda c: -sum(c))
        wall_colour = np.asarray(palette[0], dtype=np.float32)  # the lightest: walls carry a palette's base
        floor_colour = np.asarray(palette[1 + int(rng.integers(0, max(1, len(palette) - 1)))], dtype=np.float32)
        floor_colour = 0.6 * floor_colour + 0.4 * np.asarray((150, 120, 90), dtype=np.float32)  # still a floor

        # which pieces become which products (a piece without any product of its label stays as it is)
        wanted = len(pieces) if strength >= FULL_REPLACEMENT_STRENGTH else \
            math.ceil(len(pieces) * strength / FULL_REPLACEMENT_STRENGTH)
        replaced = []
        for n, (obj, label, *_) in enumerate(pieces[:wanted]):
            picture = self._product_picture(label, style["id"], seed, n)
            if picture is not None:
                replaced.append((obj, label, picture))
        removed = np.zeros(layout.wall.shape, dtype=bool)
        for obj, *_ in replaced:
            removed |= obj.mask
        removed = full_size(ndimage.binary_dilation(removed, iterations=2)) if replaced else full_size(removed)

        small = np.asarray(photo.resize(layout.size, Image.Resampling.BILINEAR), dtype=np.float32)
        out = pixels.copy()
        lum = pixels.mean(axis=2, keepdims=True)
        above = (np.arange(h) < round(layout.horizon * layout.scale))[:, None]
        windows = full_size(layout.windows)
        keep = full_size(~(layout.wall | layout.floor))  # furniture that stays, windows, anything else
        for surface, colour, side in ((layout.wall, wall_colour, above), (layout.floor, floor_colour, ~above)):
            if not surface.any():
                continue
            old = np.median(small[surface], axis=0)
            old_lum = float(old.mean()) or 1.0
            # the surface, and what looks like it on its side of the horizon (a rim around a piece, the wall
            # inside a picture frame): the new colour in the old light
            like = (np.abs(pixels - old).sum(axis=2) < SURFACE_LIKE) & side
            region = ((full_size(surface) | like) & ~(keep & ~like)) & ~windows
            light = np.clip(lum[region] / old_lum, 0.6, 1.4)
            out[region] = pixels[region] * (1 - strength) + colour * light * strength
            gap = removed & side  # where a removed piece stood: the surface behind it, evenly lit
            out[gap] = old * (1 - strength) + colour * strength

        result = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
        for obj, label, picture in replaced:
            self._draw(result, picture, obj, layout, label)
        return result

    def _product_picture(self, label: str, style: str | None, seed: int, n: int):
        """A product picture of the label in the style (of the label alone when the style has none), picked
        by the seed; None when the catalog has no readable picture of the label."""
        import numpy as np

        from lib import catalog

        choices = (catalog.style_pictures(label, style, PRODUCTS_PER_PIECE) if style else []) or \
            catalog.style_pictures(label, None, PRODUCTS_PER_PIECE)
        if not choices:
            return None
        _, ref = choices[int(np.random.default_rng([seed, n]).integers(0, len(choices)))]
        return self._picture(ref)

    @staticmethod
    def _draw(result, picture, obj, layout, label: str) -> None:
        """The product's picture in the piece's box: as large as fits with its own proportions (a rug fills
        the box: it lies on the floor), centred, standing on the box's bottom."""
        import numpy as np
        from PIL import Image

        art, mask = picture
        x, y, bw, bh = (round(v * layout.scale) for v in obj.box)
        bw, bh = max(1, min(bw, result.width - x)), max(1, min(bh, result.height - y))
        ah, aw = art.shape[:2]
        if label == "rug":
            tw, th = bw, bh
        else:
            fit = min(bw / aw, bh / ah)
            tw, th = max(1, round(aw * fit)), max(1, round(ah * fit))
        left, top = x + (bw - tw) // 2, y + bh - th
        drawn = Image.fromarray(art).resize((tw, th), Image.Resampling.BILINEAR)
        cut = Image.fromarray(mask.astype(np.uint8) * 255).resize((tw, th), Image.Resampling.BILINEAR)
        result.paste(drawn, (left, top), cut)
