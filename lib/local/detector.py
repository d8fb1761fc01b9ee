"""Local stand-in for the furniture detector: offline and deterministic, labelled by the catalog itself.

1. Propose regions: a fixed set of windows over the image at three scales (halves, thirds, and a centred
   two-thirds window), the places furniture usually sits in a room photo.
2. Embed every crop with the configured embedder (lib.embed; the same one the catalog was imported with).
3. Label each crop by its nearest label centroid of the catalog's embeddings (label_centroids):
   the mean vector of every product of a label. Confidence is that cosine similarity.
4. Keep the best windows that do not overlap much (non-maximum suppression), at most DETECTOR_MAX_PARTS.

It finds "regions that look like catalog furniture", not objects: boxes are coarse and labels are only as good
as the local embedding (see lib/embed.py). Production uses the detector service (YOLO + CLIP) over HTTP.
"""

from __future__ import annotations

import io
from typing import Any

from lib import vectors
from lib.config import get_settings
from lib.embed import get_embedder
from lib.providers import Detection, open_rgb

ANALYSIS_EDGE_PX = 512
NMS_IOU = 0.3
_centroids: dict[tuple, dict[str, list[float]]] = {}  # vectors.version() -> label -> centroid


def label_centroids() -> dict[str, list[float]]:
    """Mean unit vector per label over the whole catalog (cached per process until this process writes vectors
    again): a catalog-derived classifier that needs no model of its own."""
    import numpy as np

    key = vectors.version()
    if key in _centroids:
        return _centroids[key]
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for label, vector in vectors.labelled_vectors():
        if label is None:  # an unlabelled point names no class
            continue
        sums[label] = sums.get(label, 0) + np.asarray(vector, dtype=np.float64)
        counts[label] = counts.get(label, 0) + 1
    result: dict[str, list[float]] = {}
    for label, total in sums.items():
        mean = total / counts[label]
        norm = float(np.linalg.norm(mean))
        result[label] = (mean / norm if norm else mean).tolist()
    _centroids.clear()
    _centroids[key] = result
    return result


def proposals(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Candidate boxes (x, y, w, h): 2x2 halves, 3x3 thirds, overlapping half-height bands, centre window."""
    boxes: set[tuple[int, int, int, int]] = set()
    for cols, rows in ((2, 2), (3, 3), (3, 2)):
        w, h = width // cols, height // rows
        for i in range(cols):
            for j in range(rows):
                boxes.add((i * w, j * h, w, h))
    boxes.add((width // 6, height // 6, width * 2 // 3, height * 2 // 3))
    boxes.add((width // 4, height // 2, width // 2, height // 2))
    return sorted(b for b in boxes if b[2] >= 32 and b[3] >= 32)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0, min(ax2, bx2) - max(a[0], b[0])), max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


class LocalDetector:
    name = "local"

    def detect(self, image: bytes) -> list[Detection]:
        import numpy as np
        from PIL import Image

        photo = open_rgb(image, "image")
        full_w, full_h = photo.size
        photo.thumbnail((ANALYSIS_EDGE_PX, ANALYSIS_EDGE_PX), Image.Resampling.BILINEAR)
        scale = full_w / photo.width

        centroids = label_centroids()
        if not centroids:
            return []  # an empty catalog recognises nothing
        labels = sorted(centroids)
        matrix = np.asarray([centroids[label] for label in labels], dtype=np.float32)

        boxes = proposals(*photo.size)
        crops = []
        for x, y, w, h in boxes:
            out = io.BytesIO()
            photo.crop((x, y, x + w, y + h)).save(out, "JPEG", quality=90)
            crops.append(out.getvalue())
        embeddings = np.asarray(get_embedder().embed_images(crops), dtype=np.float32)
        scores = embeddings @ matrix.T  # cosine: both sides are unit vectors

        order = sorted(range(len(boxes)), key=lambda i: (-float(scores[i].max()), boxes[i]))
        kept: list[int] = []
        settings = get_settings()
        for i in order:
            if len(kept) >= settings.detector_max_parts:
                break
            if float(scores[i].max()) < settings.detector_min_confidence:
                break
            if all(_iou(boxes[i], boxes[k]) < NMS_IOU for k in kept):
                kept.append(i)
        detections = []
        for i in kept:
            x, y, w, h = boxes[i]
            full = (round(x * scale), round(y * scale), min(full_w, round(w * scale)), min(full_h, round(h * scale)))
            detections.append(Detection(
                label=labels[int(scores[i].argmax())], confidence=round(max(0.0, min(1.0, float(scores[i].max()))), 4),
                bbox=full, embedding=embeddings[i].tolist(),
            ))
        return detections
