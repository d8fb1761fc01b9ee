"""The local detector and generator against a seeded demo catalog (real Mongo, Qdrant stand-in, fake GCS):
boxes on the drawn furniture with the right labels, a redesign that keeps the room, and parts of a variant
that lead to the products drawn into it."""

from __future__ import annotations

import io

import pytest

from lib import catalog, db, vectors
from lib.config import get_settings
from lib.providers import GenerationRequest
from scripts import demo_catalog
from scripts.bench_detector import iou
from tests.conftest import reading_module_catalog, seeded_demo_catalog

PER_LABEL = 10


@pytest.fixture(scope="module")
def seeded(stack):
    with seeded_demo_catalog("standins", per_label=PER_LABEL) as (env, _):
        yield env


@pytest.fixture(autouse=True)
def fresh_database(seeded):
    """Overrides conftest's per-test database: every test here reads the one seeded catalog."""
    yield from reading_module_catalog(seeded)


def _pixels(data: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def _inside(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """How much of box a lies in box b."""
    inter = (max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
             * max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])))
    return inter / float(a[2] * a[3])


def test_the_import_stores_label_centroids_that_the_detector_reads():
    stored = {d["_id"]: d for d in db.collection("label_stats").find({})}
    assert set(stored) == set(demo_catalog.LABELS)
    assert all(d["vectors"] == vectors.collection_name() for d in stored.values())
    centroids = catalog.label_centroids()
    assert centroids == {label: d["centroid"] for label, d in stored.items()}
    assert centroids["sofa"] == pytest.approx(vectors.label_centroid("sofa"), abs=1e-6)


def test_the_detector_boxes_and_labels_the_drawn_furniture_not_the_room():
    from lib.local.detector import LocalDetector

    drawn = found = labelled = 0
    for seed in range(12):  # scripts/bench_detector.py measures 30 rooms; this guards against a regression
        photo, truth = demo_catalog.draw_room(seed)
        parts = LocalDetector().detect(photo)
        for obj in truth:
            drawn += 1
            best = max(parts, key=lambda p: iou(obj.box, p.bbox), default=None)
            if best is not None and iou(obj.box, best.bbox) >= 0.5:
                found += 1
                labelled += best.label == obj.label
        # the wall, the floor, the window and the picture frame are never parts: every part lies on a drawn piece
        assert all(max(_inside(p.bbox, o.box) for o in truth) > 0.5 for p in parts), seed
    assert found / drawn >= 0.75 and labelled / found >= 0.7, (drawn, found, labelled)


def test_the_detector_returns_plausible_regions_on_a_photo_of_anything():
    """A noisy camera-like picture with no floor: no failure, boxes inside the picture, never the whole frame."""
    import numpy as np
    from PIL import Image

    from lib.local.detector import LocalDetector

    rng = np.random.default_rng(5)
    image = (rng.normal(128, 40, (480, 640, 3)).clip(0, 255)).astype(np.uint8)
    image[200:420, 150:400] = (60, 80, 140)
    out = io.BytesIO()
    Image.fromarray(image).save(out, "JPEG")
    for part in LocalDetector().detect(out.getvalue()):
        x, y, w, h = part.bbox
        assert x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480 and w * h < 0.9 * 640 * 480


def test_the_redesign_keeps_the_room_and_is_deterministic_per_seed():
    from lib.local.generator import LocalGenerator

    photo, truth = demo_catalog.draw_room(3)
    generator = LocalGenerator()

    def request(strength: float) -> GenerationRequest:
        return GenerationRequest(image=photo, room_type="living-room", style="Scandinavian", strength=strength)

    first, again, other = (generator.generate(request(1.0), s) for s in (1, 1, 2))
    assert first == again and first != other
    original, redesign, untouched = _pixels(photo), _pixels(first), _pixels(generator.generate(request(0.0), 1))
    assert redesign.shape == original.shape
    assert abs(untouched - original).mean() < 3  # strength 0: the photo (after a JPEG round trip)
    assert abs(redesign - original).mean() > 3 * abs(_pixels(generator.generate(request(0.2), 1)) - original).mean()
    # geometry: the window stays where it was and as it was
    window = (slice(70, 110), slice(160, 250))
    assert abs(redesign[window] - original[window]).mean() < 8
    # the furniture changed: every drawn piece's box differs from the photo
    for obj in truth:
        x, y, w, h = obj.box
        assert abs(redesign[y:y + h, x:x + w] - original[y:y + h, x:x + w]).mean() > 12, obj.label


def test_the_parts_of_a_variant_lead_to_the_products_drawn_into_it():
    from lib.local.detector import LocalDetector
    from lib.local.generator import LocalGenerator

    generator, parts_seen, in_style = LocalGenerator(), 0, 0
    for seed, style in ((0, "modern"), (3, "scandinavian"), (7, "industrial"), (9, "rustic")):
        photo, _ = demo_catalog.draw_room(seed)
        variant = generator.generate(GenerationRequest(image=photo, room_type="any", style=style, strength=1.0), 7)
        parts = LocalDetector().detect(variant)
        hits = vectors.search_similar_batch([(p.embedding, p.label, None) for p in parts], limit=1)
        for part, hit in zip(parts, hits, strict=True):
            styled = {pid for pid, _ in catalog.style_pictures(part.label, style, 100)}
            parts_seen += 1
            in_style += bool(hit) and hit[0][0] in styled
    # about a fifth of a label's products carry a given style: chance alone would give about 0.2 (measured: 0.5-0.6)
    assert parts_seen >= 8 and in_style / parts_seen >= 0.4, (parts_seen, in_style)


def _analyses(caplog) -> list[str]:
    return [r.getMessage().rsplit(" ", 1)[1] for r in caplog.records if r.getMessage().startswith("room analysis")]


def test_a_photos_room_analysis_is_reused_by_the_next_process_for_that_photo_only(tmp_path, monkeypatch, caplog):
    """Each generation's job is a fresh process: the analysis of a photo is kept on disk, and a different or a
    changed photo never gets another photo's analysis."""
    from PIL import Image, ImageDraw

    from lib.local.generator import LocalGenerator

    monkeypatch.setenv("LOCAL_DIR", str(tmp_path))
    get_settings.cache_clear()
    photo, _ = demo_catalog.draw_room(3)
    changed = Image.open(io.BytesIO(photo)).convert("RGB")
    ImageDraw.Draw(changed).rectangle((300, 250, 420, 330), fill=(40, 40, 45))  # a dark piece moved in
    out = io.BytesIO()
    changed.save(out, "JPEG", quality=90)
    other, _ = demo_catalog.draw_room(4)

    def redesign(image: bytes) -> bytes:  # a new generator: nothing in memory, as in the next job's process
        return LocalGenerator().generate(GenerationRequest(image=image, room_type="any", style="modern"), 5)

    caplog.set_level("DEBUG", logger="zipkku.local.generator")
    first = redesign(photo)
    assert redesign(photo) == first  # the stored analysis gives the very same redesign
    assert redesign(out.getvalue()) != first
    redesign(other)
    assert _analyses(caplog) == ["computed", "reused", "computed", "computed"]
    assert len(list((tmp_path / "cache" / "room-analysis").glob("*.npz"))) == 3


def test_a_damaged_stored_analysis_is_computed_again(tmp_path, monkeypatch, caplog):
    from lib.local.generator import LocalGenerator

    monkeypatch.setenv("LOCAL_DIR", str(tmp_path))
    get_settings.cache_clear()
    photo, _ = demo_catalog.draw_room(5)
    request = GenerationRequest(image=photo, room_type="any", style="rustic")
    first = LocalGenerator().generate(request, 2)
    (stored,) = (tmp_path / "cache" / "room-analysis").glob("*.npz")
    stored.write_bytes(stored.read_bytes()[:100])  # cut short, as by a full disk
    caplog.set_level("DEBUG", logger="zipkku.local.generator")
    assert LocalGenerator().generate(request, 2) == first  # no failure: the analysis is done again
    assert _analyses(caplog) == ["again", "computed"]  # "... unreadable; computing it again"
    assert LocalGenerator().generate(request, 2) == first and _analyses(caplog)[-1] == "reused"


def test_the_analysis_key_changes_with_the_photo_the_catalog_labels_and_the_parts_kept(monkeypatch):
    from PIL import Image

    from lib.local.generator import RoomAnalyses

    photo = Image.new("RGB", (200, 150), (120, 110, 100))
    centroids = {"sofa": [1.0, 0.0], "lamp": [0.0, 1.0]}
    key = RoomAnalyses.key(photo, centroids)
    assert RoomAnalyses.key(photo.copy(), dict(reversed(centroids.items()))) == key
    one_pixel = photo.copy()
    one_pixel.putpixel((10, 10), (121, 110, 100))
    assert RoomAnalyses.key(one_pixel, centroids) != key
    assert RoomAnalyses.key(photo.resize((150, 200)), centroids) != key  # same pixels, another shape
    assert RoomAnalyses.key(photo, {**centroids, "sofa": [0.9, 0.1]}) != key  # the catalog was re-imported
    monkeypatch.setenv("DETECTOR_MAX_PARTS", "3")
    get_settings.cache_clear()
    assert RoomAnalyses.key(photo, centroids) != key
