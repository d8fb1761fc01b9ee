"""Prepare a local stack for use: the Mongo indexes and the demo catalog, grown to DEMO_CATALOG_SIZE products
when that is set (scripts/scale_catalog.py)."""

from __future__ import annotations

import time


def prepare_local(stack) -> None:
    from lib import db

    db.ensure_all_indexes()
    _seed_demo_catalog()
    _grow_demo_catalog()


class SeedProgress:
    """Progress lines for the first seed (~40 s on a busy 2-core machine): one when a stage starts, then at most
    one every `every` seconds while it runs."""

    _what = {"draw": "drawing {} product images", "upload": "uploading {} objects",
             "import": "embedding and importing {} products",
             "scale": "growing it to DEMO_CATALOG_SIZE with variants of its products: {} written",
             "stats": "counting each label's typical size and vector centroid: {} labels done"}

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._stage: str | None = None
        self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last < self.every:
            return
        self._stage, self._last = stage, now
        print(f"demo catalog: {self._what.get(stage, stage + ' {}').format(f'{done}/{total}')}", flush=True)


def _seed_demo_catalog() -> None:
    """The demo catalog (scripts/demo_catalog.py), once: skipped when it is already there.
    DEMO_CATALOG_PER_LABEL=0 disables it."""
    import json
    import os

    from scripts import demo_catalog

    per_label = int(os.environ.get("DEMO_CATALOG_PER_LABEL", "90"))
    if per_label <= 0:
        return
    print(f"demo catalog: checking ({per_label} products per label; the first run draws, uploads and embeds "
          "them, about half a minute)", flush=True)
    started = time.monotonic()
    result = demo_catalog.seed_if_needed(per_label, progress=SeedProgress())
    if result is None:
        print("demo catalog: already seeded", flush=True)
    else:
        print(f"demo catalog seeded in {time.monotonic() - started:.0f} s: {json.dumps(result)}", flush=True)


def _grow_demo_catalog() -> None:
    """DEMO_CATALOG_SIZE=N (e.g. 100000) grows the demo catalog to N products with variants of its own
    (scripts/scale_catalog.py); unset or not above the demo's size, nothing is added."""
    import json
    import os

    from scripts import demo_catalog, scale_catalog

    size = int(os.environ.get("DEMO_CATALOG_SIZE") or 0)
    per_label = int(os.environ.get("DEMO_CATALOG_PER_LABEL", "90"))
    if size <= 0:
        return
    if per_label <= 0:
        print("demo catalog: DEMO_CATALOG_SIZE needs the demo catalog (DEMO_CATALOG_PER_LABEL > 0); not grown",
              flush=True)
        return
    started = time.monotonic()
    result = scale_catalog.grow(size, per_label, progress=SeedProgress())
    if result is None:
        print(f"demo catalog: already grown to {max(size, per_label * len(demo_catalog.LABELS))} products",
              flush=True)
    else:
        print(f"demo catalog grown to {result['products']} products in {time.monotonic() - started:.0f} s: "
              f"{json.dumps(result)}", flush=True)
