"""Benchmark lib.images.normalize on phone-sized photos (a benchmark, not a test).

    .venv/bin/python scripts/bench_images.py [--runs 10] [--file photo.jpg ...]

Without --file it uses synthetic 12-MP phone JPEGs (4032x3024, EXIF orientation + GPS, noise so the
file size is realistic: ~7 MB at quality 90), a 48-MP one, and PNG/WebP/HEIC at 12 MP. Reports the median
and worst wall time of the whole pipeline (checks, decode with draft(), orientation, sRGB, resize to the
2048 px bound, JPEG encode, thumbnail) and the same without draft() to show what it saves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib import images  # noqa: E402
from tests import photos  # noqa: E402


class Limits(TypedDict):
    max_bytes: int
    max_pixels: int
    max_decoded_bytes: int
    min_edge: int
    max_aspect_ratio: float
    max_edge: int
    thumbnail_edge: int


LIMITS: Limits = {"max_bytes": 64 * 1024 * 1024, "max_pixels": 60_000_000, "max_decoded_bytes": 128 * 2**20,
                  "min_edge": 256, "max_aspect_ratio": 4.0, "max_edge": 2048, "thumbnail_edge": 384}


def measure(data: bytes, runs: int) -> list[float]:
    images.normalize(data, **LIMITS)  # warm-up: imports, codec tables
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        images.normalize(data, **LIMITS)
        times.append(time.perf_counter() - started)
    return times


def report(label: str, data: bytes, runs: int) -> None:
    times = measure(data, runs)
    result = images.normalize(data, **LIMITS)
    print(f"{label:<34} {len(data) / 1e6:6.1f} MB  median {statistics.median(times) * 1000:7.1f} ms  "
          f"max {max(times) * 1000:7.1f} ms  -> {result.width}x{result.height}, {len(result.jpeg) / 1e3:.0f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--file", action="append", default=[], help="benchmark these files instead")
    args = parser.parse_args()

    if args.file:
        for path in args.file:
            report(Path(path).name, Path(path).read_bytes(), args.runs)
        return

    phone = photos.phone_jpeg(4032, 3024, orientation=6)
    report("12 MP phone JPEG (EXIF rot + GPS)", phone, args.runs)
    slack = images.DRAFT_SLACK
    images.DRAFT_SLACK = 1.0  # draft() then cannot halve a 4032 px photo for a 2048 px bound
    try:
        report("12 MP phone JPEG, no DCT scaling", phone, args.runs)
    finally:
        images.DRAFT_SLACK = slack
    report("48 MP phone JPEG (8064x6048)", photos.phone_jpeg(8064, 6048), max(3, args.runs // 3))
    for fmt in ("PNG", "WEBP", "HEIF"):
        report(f"12 MP {fmt}", photos.image_bytes(fmt, 4032, 3024), max(3, args.runs // 3))
    for label, data in (("PNG bomb 20000x20000 (refused)", photos.png_bomb()),
                        ("JPEG header 30000x30000 (refused)", photos.jpeg_with_header_size())):
        started = time.perf_counter()
        try:
            images.normalize(data, **LIMITS)
        except images.ImageRejected as rejected:
            print(f"{label:<34} {len(data) / 1e3:6.1f} kB  refused ({rejected.code}) in "
                  f"{(time.perf_counter() - started) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
