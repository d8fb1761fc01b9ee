"""How long the local generator takes per 768 px variant, on one core, against a seeded demo catalog.

Starts a throw-away local stack (scripts/localstack.LocalStack), seeds the demo catalog (--per-label products
per label), then redesigns drawn rooms (scripts/demo_catalog.draw_room) in several styles: the first variant
of a photo includes the room's analysis (segmentation and labelling, once per photo and process), the next
ones reuse it. Product pictures are downloaded once per process, so the first variants also pay for those.

    .venv/bin/python scripts/bench_generator.py              # 10 rooms x 3 variants, 10 products per label
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the brief's budget says

from scripts import demo_catalog  # noqa: E402
from scripts.localstack import LocalStack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--variants", type=int, default=3, help="per room, at least 2 (the first and the next)")
    parser.add_argument("--per-label", type=int, default=10)
    args = parser.parse_args()
    if args.variants < 2:
        parser.error("--variants must be at least 2: the first variant and the next ones are reported apart")
    with tempfile.TemporaryDirectory() as folder, LocalStack(Path(folder), persistent=False) as stack:
        os.environ.update(stack.env)
        from lib.config import get_settings
        from lib.local.generator import LocalGenerator
        from lib.providers import GenerationRequest

        get_settings.cache_clear()
        demo_catalog.seed(per_label=args.per_label)
        generator = LocalGenerator()
        styles = [s[0] for s in demo_catalog.STYLES]
        first: list[float] = []
        next_: list[float] = []
        for room in range(args.rooms):
            photo, _ = demo_catalog.draw_room(room)
            request = GenerationRequest(image=photo, room_type="any", style=styles[room % len(styles)], strength=0.6)
            for seed in range(args.variants):
                started = time.perf_counter()
                generator.generate(request, seed)
                (first if seed == 0 else next_).append(time.perf_counter() - started)
    print(json.dumps({
        "rooms": args.rooms, "variants_per_room": args.variants, "edge_px": 768,
        "first_variant_s_median": round(statistics.median(first), 3),
        "next_variants_s_median": round(statistics.median(next_), 3),
        "next_variants_s_max": round(max(next_), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
