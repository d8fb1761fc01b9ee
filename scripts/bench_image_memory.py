"""Peak memory of photo processing for the worst inputs we accept, per format, and for the bombs we refuse
(a benchmark, not a test). terraform/functions.tf sizes uploads_direct and on_upload_finalized from it.

    .venv/bin/python scripts/bench_image_memory.py

Each input is processed by lib.images.normalize_with_settings (the limits come from the environment, as in
the functions) in a FRESH subprocess that has first imported what the upload functions import
(functions-framework, the storage client, pymongo, Pillow, pillow-heif) and read the file: the process's peak
RSS (ru_maxrss) is then what one photo costs an instance, and "growth" what the photo itself added. Inputs at
the limits: the largest PNG (RGBA, 16-bit RGBA, 16-bit grey, palette, grey), lossless WebP and HEIC whose
decoded bytes are within MAX_DECODED_IMAGE_BYTES, and JPEGs (baseline, progressive 4:4:4, progressive CMYK)
at MAX_IMAGE_PIXELS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(path: str) -> None:
    import resource

    import functions_framework  # noqa: F401 - what every function process carries
    import google.cloud.storage  # noqa: F401
    import pillow_heif  # noqa: F401
    import pymongo  # noqa: F401
    from PIL import Image  # noqa: F401

    from lib import images, uploads  # noqa: F401

    data = Path(path).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        result = images.normalize_with_settings(data)
        outcome = f"accepted -> {result.width}x{result.height}"
    except images.ImageRejected as rejected:
        outcome = f"refused ({rejected.code})"
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_mib": before / 1024, "peak_mib": peak / 1024, "seconds": seconds, "outcome": outcome}))


def inputs() -> list[tuple[str, bytes]]:
    from lib.config import get_settings
    from tests import photos

    settings = get_settings()
    mp = settings.max_image_pixels
    square = math.isqrt(mp)  # the largest square photo within the pixel limit (7745 px for 60 MP)

    def side(bytes_per_pixel: int) -> int:  # the largest square within both limits
        return min(square, math.isqrt(settings.max_decoded_image_bytes // bytes_per_pixel))

    s4, s2, s1 = side(4), side(2), side(1)
    return [
        ("12 MP phone JPEG (reference)", photos.phone_jpeg(4032, 3024, orientation=6)),
        (f"JPEG baseline {square}x{square}", photos.jpeg_of(square, square)),
        (f"JPEG progressive 4:4:4 {square}x{square}", photos.jpeg_of(square, square, progressive=True, subsampling=0)),
        (f"JPEG progressive CMYK {square}x{square}",
         photos.jpeg_of(square, square, progressive=True, subsampling=0, mode="CMYK")),
        (f"PNG RGBA {s4}x{s4}", photos.png_of(s4, s4, "RGBA")),
        (f"PNG RGBA 16-bit {s4}x{s4}", photos.png_of(s4, s4, "RGBA;16")),
        (f"PNG RGB 16-bit {s4}x{s4}", photos.png_of(s4, s4, "RGB;16")),
        (f"PNG palette {s4}x{s4}", photos.png_of(s4, s4, "P")),
        (f"PNG grey 16-bit {s2}x{s2}", photos.png_of(s2, s2, "I;16")),
        (f"PNG grey {s1}x{s1}", photos.png_of(s1, s1, "L")),
        (f"WebP lossless {s4}x{s4}", photos.webp_lossless_bomb(s4, s4)),
        (f"HEIC {s4}x{s4}", photos.heic_of(s4, s4)),
        (f"HEIC with alpha {s4}x{s4}", photos.heic_of(s4, s4, "RGBA")),
        ("refused: WebP lossless 7745x7745", photos.webp_lossless_bomb(7745, 7745)),
        ("refused: PNG RGBA 7745x7745", photos.png_of(7745, 7745, "RGBA")),
        ("refused: PNG RGBA 16-bit 7745x7745", photos.png_of(7745, 7745, "RGBA;16", complete=False)),
        ("refused: PNG 20000x20000", photos.png_bomb()),
        ("refused: JPEG header 30000x30000", photos.jpeg_with_header_size()),
    ]


def make_inputs(folder: str) -> None:
    """Write every input into `folder` (index.json lists them), in a process of its own: a child's ru_maxrss
    starts at its parent's peak (Linux keeps it across fork and exec), so the parent must stay small."""
    index = []
    for number, (label, data) in enumerate(inputs()):
        (Path(folder) / f"{number}").write_bytes(data)
        index.append([label, str(number), len(data)])
    (Path(folder) / "index.json").write_text(json.dumps(index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: process one file and report
    parser.add_argument("--make-inputs", help=argparse.SUPPRESS)  # a child: write the inputs
    args = parser.parse_args()
    if args.one:
        child(args.one)
        return
    if args.make_inputs:
        make_inputs(args.make_inputs)
        return

    from lib.config import get_settings

    settings = get_settings()
    print(f"MAX_IMAGE_PIXELS={settings.max_image_pixels} MAX_DECODED_IMAGE_BYTES={settings.max_decoded_image_bytes}"
          f" ({settings.max_decoded_image_bytes / 2**20:.0f} MiB) MAX_IMAGE_EDGE_PX={settings.max_image_edge_px}")
    print(f"{'input':<40} {'file':>9} {'before':>8} {'peak':>8} {'growth':>8} {'time':>7}  outcome")
    worst = 0.0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, __file__, "--make-inputs", folder], env=env, check=True)
        for label, name, length in json.loads((Path(folder) / "index.json").read_text()):
            out = subprocess.run([sys.executable, __file__, "--one", str(Path(folder) / name)], capture_output=True,
                                 text=True, env=env, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            size = f"{length / 1e6:.1f} MB" if length >= 1e5 else f"{length / 1e3:.1f} kB"
            print(f"{label:<40} {size:>9} {r['before_mib']:6.0f} M {r['peak_mib']:6.0f} M "
                  f"{r['peak_mib'] - r['before_mib']:6.0f} M {r['seconds']:6.2f}s  {r['outcome']}", flush=True)
            if r["outcome"].startswith("accepted"):
                worst = max(worst, r["peak_mib"])
    print(f"worst accepted peak RSS: {worst:.0f} MiB")


if __name__ == "__main__":
    main()
