"""How well the local detector finds and labels the furniture of drawn rooms (no stack needed).

The demo's room generator (scripts/demo_catalog.draw_room) draws each room and knows every object's box and
label. The label centroids come from the demo catalog's product pictures embedded by the local embedder, as
the catalog import stores them. A drawn object is found when a detection's box overlaps it with IoU >= 0.5;
its label is right when that detection's label is the drawn one.

    .venv/bin/python scripts/bench_detector.py              # 30 rooms (seeds 0-29), 12 products per label
    .venv/bin/python scripts/bench_detector.py --rooms 60 --show /tmp/rooms   # also write annotated PNGs
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("EMBEDDER", "local")

from scripts import demo_catalog  # noqa: E402


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0, min(ax2, bx2) - max(a[0], b[0])) * max(0, min(ay2, by2) - max(a[1], b[1]))
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def demo_centroids(per_label: int) -> dict[str, list[float]]:
    """The mean unit embedding of each label's demo product pictures (what the import stores)."""
    import numpy as np

    from lib.embed import get_embedder, unit_vector

    products = demo_catalog.make_products(per_label)
    vectors = get_embedder().embed_images([demo_catalog.draw_product(p) for p in products])
    by_label: dict[str, list] = {}
    for product, vector in zip(products, vectors, strict=True):
        by_label.setdefault(product.label, []).append(vector)
    return {label: unit_vector(np.mean(np.asarray(vs), axis=0)).tolist() for label, vs in by_label.items()}


def evaluate(rooms: int, centroids: dict[str, list[float]], show: Path | None = None) -> dict:
    from lib.local.detector import LocalDetector

    detector = LocalDetector(centroids=lambda: centroids)
    drawn = found = labelled = detections = false_parts = 0
    confusions: dict[str, int] = {}
    seconds = []
    for seed in range(rooms):
        photo, truth = demo_catalog.draw_room(seed)
        started = time.perf_counter()
        result = detector.detect(photo)
        seconds.append(time.perf_counter() - started)
        detections += len(result)
        used = set()
        for obj in truth:
            drawn += 1
            best = max(range(len(result)), key=lambda i: iou(obj.box, result[i].bbox), default=None)
            if best is None or iou(obj.box, result[best].bbox) < 0.5:
                continue
            found += 1
            used.add(best)
            if result[best].label == obj.label:
                labelled += 1
            else:
                key = f"{obj.label}->{result[best].label}"
                confusions[key] = confusions.get(key, 0) + 1
        false_parts += len(result) - len(used)
        if show:
            _annotate(show / f"room-{seed:02d}.png", photo, truth, result)
    seconds.sort()
    return {
        "rooms": rooms, "drawn_objects": drawn, "detections": detections,
        "recall_at_iou_0.5": round(found / drawn, 3),
        "label_accuracy_of_found": round(labelled / max(1, found), 3),
        "detections_matching_nothing": false_parts,
        "confusions": dict(sorted(confusions.items())),
        "seconds_per_room_p50": round(seconds[len(seconds) // 2], 3),
    }


def _annotate(path: Path, photo: bytes, truth, result) -> None:
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for obj in truth:
        x, y, w, h = obj.box
        draw.rectangle([x, y, x + w, y + h], outline=(0, 200, 0), width=1)
    for d in result:
        x, y, w, h = d.bbox
        draw.rectangle([x, y, x + w, y + h], outline=(255, 40, 40), width=2)
        draw.text((x + 3, y + 3), f"{d.label} {d.confidence:.2f}", fill=(255, 40, 40))
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=30)
    parser.add_argument("--per-label", type=int, default=12, help="catalog products per label for the centroids")
    parser.add_argument("--show", type=Path, default=None, help="write annotated rooms here")
    args = parser.parse_args()
    started = time.perf_counter()
    centroids = demo_centroids(args.per_label)
    report = evaluate(args.rooms, centroids, args.show)
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
