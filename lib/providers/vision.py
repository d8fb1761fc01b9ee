"""Detector on Cloud Vision object localization (DETECTOR=vision): no service of ours.

1. POST {VISION_API_URL}/v1/images:annotate with the variant (downscaled to ANALYSIS_EDGE_PX, JPEG, base64) and
   the OBJECT_LOCALIZATION feature -> localizedObjectAnnotations [{mid, name, score, boundingPoly
   {normalizedVertices [{x, y}, ...]}}] (https://cloud.google.com/vision/docs/object-localizer). A vertex
   coordinate of 0 is left out of the JSON (proto3), so a missing x or y is 0.
2. Keep the furniture: Vision's English object names (Open Images classes: Couch, Chair, Table, Bed, Lamp,
   Shelf...) mapped onto the catalog's labels by LABELS (plus VISION_LABEL_MAP); other objects (Person,
   Window, Picture frame...) are dropped, overlapping boxes of one label merged, at most DETECTOR_MAX_PARTS.
3. Crop each box from the full-size variant and embed the crops with the configured embedder (lib.embed, the
   one the catalog was imported with), so each part's vector searches the catalog's own vector space.

Errors: 400 INVALID_ARGUMENT (or a per-image error 3) is INVALID_IMAGE; 401/403 (a missing role, the API not
enabled, billing off) PROVIDER_AUTH; 429 RESOURCE_EXHAUSTED after the retries PROVIDER_RATE_LIMIT; 5xx and no
answer PROVIDER_UNAVAILABLE; an answer that does not parse PROVIDER_BAD_RESPONSE.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math

from lib.config import get_settings
from lib.embed import EmbedError, EmbedUnavailable, get_embedder
from lib.providers import (
    AUTH,
    BAD_RESPONSE,
    FAILED,
    INVALID_IMAGE,
    RATE_LIMIT,
    UNAVAILABLE,
    Detection,
    ProviderError,
    open_rgb,
)
from lib.providers.google_api import GoogleApiError, post_json, session

ANALYSIS_EDGE_PX = 1024  # Vision localizes at a few hundred pixels; a smaller upload is faster and cheaper
CROP_EDGE_PX = 512       # multimodalembedding resizes every image to 512x512 anyway
MAX_RESULTS = 20         # objects Vision returns at most (furniture is then picked from them)
SAME_OBJECT_IOU = 0.5

# Vision's object names (lower-case) -> the catalog's labels. Names not here are not furniture we sell.
LABELS = {
    "couch": "sofa", "sofa bed": "sofa", "studio couch": "sofa", "loveseat": "sofa",
    "chair": "chair", "armchair": "armchair", "office chair": "chair", "stool": "chair",
    "bed": "bed", "bunk bed": "bed",
    "desk": "desk",
    "table": "table", "coffee table": "table", "kitchen & dining room table": "table", "dining table": "table",
    "wardrobe": "wardrobe", "closet": "wardrobe", "cupboard": "wardrobe",
    "bookcase": "bookshelf", "shelf": "bookshelf", "shelving": "bookshelf",
    "lamp": "lamp", "floor lamp": "lamp", "table lamp": "lamp",
    "carpet": "rug", "rug": "rug",
    "nightstand": "nightstand", "bedside table": "nightstand",
    "chest of drawers": "dresser", "dresser": "dresser", "drawer": "dresser", "cabinetry": "dresser",
}

_STATUS = {3: "INVALID_ARGUMENT", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 13: "INTERNAL",
           14: "UNAVAILABLE", 16: "UNAUTHENTICATED"}  # google.rpc.Code numbers of a per-image error


@functools.cache
def _label_map(extra: str) -> dict[str, str]:
    mapping = dict(LABELS)
    if extra:
        try:
            overrides = json.loads(extra)
        except ValueError:
            raise ValueError("VISION_LABEL_MAP is not JSON") from None
        if not isinstance(overrides, dict) or not all(isinstance(v, str) for v in overrides.values()):
            raise ValueError('VISION_LABEL_MAP must be an object of names to labels, e.g. {"Ottoman": "pouf"}')
        mapping.update({str(k).strip().lower(): v.strip().lower() for k, v in overrides.items()})
    return {name: label for name, label in mapping.items() if label}


def catalog_label(name: str) -> str | None:
    """The catalog label of a Vision object name (None: not furniture we match)."""
    return _label_map(get_settings().vision_label_map).get(name.strip().lower())


class VisionDetector:
    name = "vision"

    def detect(self, image: bytes) -> list[Detection]:
        photo = open_rgb(image, "image to analyse")
        width, height = photo.size
        annotations = self._annotate(_jpeg(photo, ANALYSIS_EDGE_PX))
        found = _furniture(annotations, width, height)
        if not found:
            return []
        crops = [_jpeg(photo.crop((x, y, x + w, y + h)), CROP_EDGE_PX) for _, _, (x, y, w, h) in found]
        vectors = _embed(crops)
        return [Detection(label=label, confidence=round(score, 4), bbox=box, embedding=vector)
                for (label, score, box), vector in zip(found, vectors, strict=True)]

    def _annotate(self, jpeg: bytes) -> list[dict]:
        s = get_settings()
        body = {"requests": [{"image": {"content": base64.b64encode(jpeg).decode("ascii")},
                              "features": [{"type": "OBJECT_LOCALIZATION", "maxResults": MAX_RESULTS}]}]}
        try:
            answer = post_json(session(), f"{s.vision_api_url.rstrip('/')}/v1/images:annotate", body)
        except GoogleApiError as exc:
            raise _provider_error(exc.status, exc.reason) from None
        responses = answer.get("responses")
        if not isinstance(responses, list) or len(responses) != 1 or not isinstance(responses[0], dict):
            raise ProviderError(BAD_RESPONSE, "The object detector sent an answer without one response.",
                                retryable=True)
        result = responses[0]
        if isinstance(result.get("error"), dict):  # a per-image failure inside a 200 answer
            code = result["error"].get("code")
            status = {3: 400, 7: 403, 8: 429, 16: 401}.get(code, 500)
            raise _provider_error(status, _STATUS.get(code, "UNKNOWN"))
        annotations = result.get("localizedObjectAnnotations", [])
        if not isinstance(annotations, list):
            raise ProviderError(BAD_RESPONSE, "The object detector sent malformed objects.", retryable=True)
        return annotations


def _jpeg(photo, edge: int) -> bytes:
    from PIL import Image

    if max(photo.size) > edge:
        photo = photo.copy()
        photo.thumbnail((edge, edge), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=90)
    return out.getvalue()


def _box(annotation: dict, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box (x, y, w, h) of normalized vertices; ValueError when they are not 0..1 numbers."""
    vertices = (annotation.get("boundingPoly") or {}).get("normalizedVertices")
    if not isinstance(vertices, list) or len(vertices) < 3:
        raise ValueError("no polygon")
    xs, ys = [], []
    for vertex in vertices:
        if not isinstance(vertex, dict):
            raise ValueError("vertex")
        x, y = float(vertex.get("x", 0.0)), float(vertex.get("y", 0.0))  # proto3 JSON leaves 0 out
        if not (math.isfinite(x) and math.isfinite(y)) or not (-0.01 <= x <= 1.01 and -0.01 <= y <= 1.01):
            raise ValueError("coordinate")
        xs.append(min(1.0, max(0.0, x)))
        ys.append(min(1.0, max(0.0, y)))
    x0, y0 = round(min(xs) * width), round(min(ys) * height)
    return x0, y0, round(max(xs) * width) - x0, round(max(ys) * height) - y0


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def _furniture(annotations: list, width: int, height: int) -> list[tuple[str, float, tuple[int, int, int, int]]]:
    """(label, score, box) of the furniture, best first: one box per object, at most DETECTOR_MAX_PARTS."""
    s = get_settings()
    bad = ProviderError(BAD_RESPONSE, "The object detector sent a malformed object.", retryable=True)
    candidates = []
    for annotation in annotations:
        if not isinstance(annotation, dict) or not isinstance(annotation.get("name"), str):
            raise bad
        try:
            score = float(annotation.get("score", 0.0))
            box = _box(annotation, width, height)
        except (TypeError, ValueError):
            raise bad from None
        if not 0.0 <= score <= 1.0:
            raise bad
        label = catalog_label(annotation["name"])
        if label and score >= s.detector_min_confidence and box[2] >= 8 and box[3] >= 8:
            candidates.append((label, score, box))
    kept: list[tuple[str, float, tuple[int, int, int, int]]] = []
    for label, score, box in sorted(candidates, key=lambda c: (-c[1], c[2])):
        if len(kept) >= s.detector_max_parts:
            break
        if all(k[0] != label or _iou(k[2], box) < SAME_OBJECT_IOU for k in kept):  # "Couch" and "Sofa bed"
            kept.append((label, score, box))
    return kept


def _embed(crops: list[bytes]) -> list[list[float]]:
    try:
        return get_embedder().embed_images(crops)
    except EmbedUnavailable as exc:
        raise ProviderError(UNAVAILABLE, f"The image embedder is unavailable ({exc}).", retryable=True) from None
    except EmbedError as exc:
        raise ProviderError(FAILED, f"The detected furniture could not be embedded ({exc}).", retryable=True) \
            from None


def _provider_error(status: int, reason: str) -> ProviderError:
    if status == 400:
        return ProviderError(INVALID_IMAGE, "The object detector could not read this image.")
    if status in (401, 403) or (status == 0 and reason == "UNAUTHENTICATED"):
        return ProviderError(AUTH, f"The object detector refused our credentials ({reason}).")
    if status == 429:
        return ProviderError(RATE_LIMIT, "The object detector's quota is used up; try again shortly.",
                             retryable=True)
    if status == 200:
        return ProviderError(BAD_RESPONSE, "The object detector sent a malformed answer.", retryable=True)
    if status == 0 or status >= 500:
        return ProviderError(UNAVAILABLE, "The object detector is unavailable; try again shortly.", retryable=True)
    return ProviderError(FAILED, f"The object detector answered HTTP {status} ({reason}).")
