"""Local stand-in for the furniture detector: offline and deterministic, it finds objects and labels them by
the catalog itself.

1. Segment a small copy of the photo into regions of similar colour (scikit-image's Felzenszwalb graph
   segmentation).
2. Room surfaces are not parts: a large region that runs along the left, right or top edge of the picture and
   spans much of its width is wall, floor or ceiling. The lowest of them is the floor; where it starts is the
   horizon.
3. Everything else is foreground; touching regions merge into one object (connected components after closing
   small gaps). An object must reach below the horizon (furniture stands on the floor: a window or a picture on
   the wall is not furniture) and be neither tiny nor most of the picture.
4. Each object's crop, its background replaced by a plain light grey like a catalog picture, goes through the
   configured embedder (lib.embed); its label is the nearest label centroid of the catalog's embeddings, which
   the catalog import stores (lib.catalog.label_centroids), so labelling costs the same at any catalog size.
   Confidence is that cosine similarity.

The generator (lib.local.generator) reuses `analyse` to know the room's wall, floor and furniture. It knows
nothing about what a photo shows beyond colour regions: on a real photo it returns plausible regions (large
coloured things standing on the floor), not a trained detector's objects. Production uses the detector
service (YOLO + CLIP) over HTTP.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lib.config import get_settings
from lib.providers import Detection, open_rgb

ANALYSIS_EDGE_PX = 320   # segmentation runs on this size; boxes are scaled back to the photo
SURFACE_MIN_AREA = 0.003  # a wall/floor/ceiling region (or a skirting board, a cornice) covers 0.3%...
SURFACE_MIN_SPAN = 0.45  # ...and spans at least 45% of its width
SURFACE_COLOUR_STEP = 0.08  # neighbours this close in mean colour (sum over RGB in 0-1) are one surface
WINDOW_MIN_BRIGHTNESS = 0.72  # mean of RGB in 0-1
STRIP_MAX_HEIGHT = 0.05  # a skirting board is at most this high (fraction of the picture)
OBJECT_MIN_AREA = 0.004  # smaller foreground is clutter, not furniture
OBJECT_MAX_AREA = 0.6
FLAT_MAX_ASPECT = 0.33  # height / width of something lying on the floor
CROP_BACKGROUND = (242, 242, 242)  # the catalog pictures' light grey
CROP_EDGE_PX = 256


@dataclass
class RoomObject:
    box: tuple[int, int, int, int]  # x, y, width, height in pixels of the analysed (small) picture
    mask: Any                       # bool array of the analysed picture's shape


@dataclass
class RoomLayout:
    scale: float         # photo pixels per analysed pixel
    size: tuple[int, int]  # analysed width, height
    wall: Any            # bool masks of the analysed picture
    floor: Any
    horizon: int         # first analysed row of the floor (the height when no floor was found)
    windows: Any         # bool mask: bright regions on the wall (kept as they are by a redesign)
    objects: list[RoomObject] = field(default_factory=list)


def label_centroids() -> dict[str, list[float]]:
    """The catalog's stored label centroids for the vectors this process searches (lib.catalog)."""
    from lib import catalog

    return catalog.label_centroids()


def _segments(pixels):
    from skimage.segmentation import felzenszwalb

    area = pixels.shape[0] * pixels.shape[1]
    return felzenszwalb(pixels, scale=100, sigma=0.8, min_size=max(20, area // 1000))


def _between_surfaces(segments, extent, segment: int, surface_of) -> bool:
    """Whether the surfaces are right above and right below most of this strip's columns."""
    y0, y1, x0, x1 = extent[0].start, extent[0].stop, extent[1].start, extent[1].stop
    if y0 == 0 or y1 >= segments.shape[0]:
        return False
    columns = (segments[y0:y1, x0:x1] == segment).any(axis=0)
    above = surface_of[segments[max(0, y0 - 2), x0:x1]][columns].mean()
    below = surface_of[segments[min(segments.shape[0] - 1, y1 + 1), x0:x1]][columns].mean()
    return bool(above > 0.5 and below > 0.5)


def _floor(segments, surface_of, areas, colours, mean_y):
    """The floor's regions (the largest surface in the lower part and those of its colour) and the horizon:
    the floor's first row in the freest fifth of the picture's columns (the height when there is no floor)."""
    import numpy as np

    h = segments.shape[0]
    floor_of = np.zeros(len(surface_of), dtype=bool)
    lower = np.nonzero(surface_of & (mean_y > 0.45 * h))[0]
    if not len(lower):
        return floor_of, h
    main = lower[int(np.argmax(areas[lower]))]
    floor_of[lower[np.abs(colours[lower] - colours[main]).sum(axis=1) < 3 * SURFACE_COLOUR_STEP]] = True
    floor = floor_of[segments]
    has = floor.any(axis=0)
    # furniture hides the floor's first rows in many columns: the free columns tell where it starts
    return floor_of, int(np.percentile(np.argmax(floor[:, has], axis=0), 20)) if has.any() else h


def analyse(photo) -> RoomLayout:
    """Wall, floor and the objects standing in the room of an RGB PIL image (see the module docstring)."""
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    small = photo.copy()
    small.thumbnail((ANALYSIS_EDGE_PX, ANALYSIS_EDGE_PX), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.float32) / 255.0
    h, w = pixels.shape[:2]
    segments = _segments(pixels)
    count = int(segments.max()) + 1
    index = np.arange(count)
    areas = np.bincount(segments.ravel(), minlength=count)
    colours = np.stack([ndimage.mean(pixels[..., c], segments, index) for c in range(3)], axis=1)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    mean_y = ndimage.mean(rows, segments, index)
    extents = ndimage.find_objects(segments + 1)
    spans = np.asarray([e[1].stop - e[1].start for e in extents])
    heights = np.asarray([e[0].stop - e[0].start for e in extents])
    edges = np.zeros(count, dtype=bool)
    edges[np.unique(np.concatenate([segments[:, 0], segments[:, -1], segments[0]]))] = True
    surface_of = edges & (areas >= SURFACE_MIN_AREA * h * w) & (spans >= SURFACE_MIN_SPAN * w)
    pairs = np.unique(np.sort(np.concatenate([
        np.stack([segments[:, :-1].ravel(), segments[:, 1:].ravel()], axis=1),
        np.stack([segments[:-1].ravel(), segments[1:].ravel()], axis=1)]), axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    strips = (heights <= STRIP_MAX_HEIGHT * h) & (spans >= 3 * heights)
    # grow the room's surfaces over their neighbours: a region of the same colour (a floorboard, a wall cut in
    # two by a lamp), or a thin horizontal strip between two surfaces (a skirting board cut by the furniture)
    def grow(surface_of, also=None):
        for _ in range(6):
            grown = surface_of.copy()
            for a, b in pairs[surface_of[pairs[:, 0]] != surface_of[pairs[:, 1]]]:
                inside, outside = (a, b) if surface_of[a] else (b, a)
                if (np.abs(colours[inside] - colours[outside]).sum() < SURFACE_COLOUR_STEP
                        or (also is not None and also[outside])
                        or (strips[outside] and _between_surfaces(segments, extents[outside], outside, surface_of))):
                    grown[outside] = True
            if (grown == surface_of).all():
                break
            surface_of = grown
        return surface_of

    surface_of = grow(surface_of)
    floor_of, horizon = _floor(segments, surface_of, areas, colours, mean_y)
    # a window (or a lit lampshade on the wall) is part of the room: bright regions wholly above the floor
    bottoms = np.asarray([e[0].stop for e in extents])
    before = surface_of
    surface_of = grow(surface_of, (colours.mean(axis=1) >= WINDOW_MIN_BRIGHTNESS) & (bottoms < horizon - 2))
    window_of = surface_of & ~before & (colours.mean(axis=1) >= WINDOW_MIN_BRIGHTNESS)
    floor_of, horizon = _floor(segments, surface_of, areas, colours, mean_y)
    surface = surface_of[segments]
    floor = floor_of[segments]
    wall = surface & ~floor & ~window_of[segments]  # a window keeps its colours in a redesign

    # close hairline gaps inside a piece (an edge between two of its faces), never over the room's surfaces
    foreground = ndimage.binary_closing(~surface, iterations=2) & ~surface
    if horizon < h:  # a skirting board along the horizon: foreground only a few rows high there is not furniture
        band = slice(max(0, horizon - int(STRIP_MAX_HEIGHT * h)), min(h, horizon + int(STRIP_MAX_HEIGHT * h) + 1))
        upright = ndimage.binary_opening(foreground, structure=np.ones((int(STRIP_MAX_HEIGHT * h) + 2, 1)))
        foreground[band] = upright[band]
    labelled, found = ndimage.label(foreground, structure=np.ones((3, 3)))
    objects = []
    for k, where in enumerate(ndimage.find_objects(labelled), start=1):
        if where is None:
            continue
        mask = labelled == k
        size = int(mask[where].sum())
        y0, y1, x0, x1 = where[0].start, where[0].stop, where[1].start, where[1].stop
        if size < OBJECT_MIN_AREA * h * w or size > OBJECT_MAX_AREA * h * w:
            continue
        if y1 <= horizon + 1 and horizon < h:  # hangs on the wall: not furniture
            continue
        objects.append(RoomObject((x0, y0, x1 - x0, y1 - y0), mask))
    objects.sort(key=lambda o: (-int(o.mask.sum()), o.box))
    return RoomLayout(photo.width / w, (w, h), wall, floor, horizon, window_of[segments], objects)


def _lies_flat(obj: RoomObject, layout: RoomLayout) -> bool:
    """Wholly on the floor (its top below where the floor meets the wall) and much wider than high: a rug. The
    catalog shows rugs from above, so their pictures cannot tell a rug seen in perspective from a low table."""
    x, y, w, h = obj.box
    return y > layout.horizon + 2 and h < FLAT_MAX_ASPECT * w


def object_crop(photo, layout: RoomLayout, obj: RoomObject) -> bytes:
    """The object cut out of the full photo on a plain light grey, with a margin, as a JPEG (what the
    embedder saw for catalog pictures)."""
    import numpy as np
    from PIL import Image

    x, y, bw, bh = obj.box
    s = layout.scale
    box = (round(x * s), round(y * s), min(photo.width, round((x + bw) * s)), min(photo.height, round((y + bh) * s)))
    crop = photo.crop(box)
    mask = Image.fromarray(obj.mask[y:y + bh, x:x + bw].astype(np.uint8) * 255)
    mask = mask.resize(crop.size, Image.Resampling.NEAREST)
    margin = max(4, int(0.1 * max(crop.size)))
    canvas = Image.new("RGB", (crop.width + 2 * margin, crop.height + 2 * margin), CROP_BACKGROUND)
    canvas.paste(crop, (margin, margin), mask)
    # at the catalog pictures' scale (256 px), so texture and edges look to the embedder as they did there
    canvas = canvas.resize((max(1, round(canvas.width * CROP_EDGE_PX / max(canvas.size))),
                            max(1, round(canvas.height * CROP_EDGE_PX / max(canvas.size)))), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue()


def label_objects(photo, layout: RoomLayout, objects: list[RoomObject],
                  centroids: dict[str, list[float]] | None = None) -> list[tuple[RoomObject, str, float, list[float]]]:
    """(object, label, confidence, embedding) of each object: the nearest label centroid of its cut-out's
    embedding (a rug by its shape, see _lies_flat). Nothing when the catalog has no centroids."""
    import numpy as np

    from lib.embed import get_embedder

    centroids = label_centroids() if centroids is None else centroids
    if not centroids or not objects:
        return []
    labels = sorted(centroids)
    matrix = np.asarray([centroids[label] for label in labels], dtype=np.float32)
    embeddings = np.asarray(get_embedder().embed_images([object_crop(photo, layout, o) for o in objects]),
                            dtype=np.float32)
    scores = embeddings @ matrix.T  # cosine: both sides are unit vectors
    result = []
    for obj, embedding, row in zip(objects, embeddings, scores, strict=True):
        best = int(row.argmax())
        if "rug" in centroids and _lies_flat(obj, layout):
            best = labels.index("rug")
        result.append((obj, labels[best], max(0.0, min(1.0, float(row[best]))), embedding.tolist()))
    return result


class LocalDetector:
    name = "local"

    def __init__(self, centroids: Callable[[], dict[str, list[float]]] | None = None) -> None:
        self._centroids = centroids or label_centroids

    def detect(self, image: bytes) -> list[Detection]:
        photo = open_rgb(image, "image")
        centroids = self._centroids()
        if not centroids:
            return []  # an empty catalog recognises nothing
        settings = get_settings()
        layout = analyse(photo)
        s = layout.scale
        detections = []
        for obj, label, confidence, embedding in label_objects(
                photo, layout, layout.objects[: settings.detector_max_parts], centroids):
            if confidence < settings.detector_min_confidence:
                continue
            x, y, bw, bh = obj.box
            x0, y0 = round(x * s), round(y * s)
            box = (x0, y0, min(photo.width, round((x + bw) * s)) - x0, min(photo.height, round((y + bh) * s)) - y0)
            detections.append(Detection(label=label, confidence=round(confidence, 4), bbox=box, embedding=embedding))
        return detections
