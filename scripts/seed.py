"""Prepare a local stack for use: the Mongo indexes and the demo catalog."""

from __future__ import annotations


def prepare_local(stack) -> None:
    from lib import db

    db.ensure_all_indexes()
    _seed_demo_catalog()


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
    result = demo_catalog.seed_if_needed(per_label)
    if result is None:
        print("demo catalog: already seeded", flush=True)
    else:
        print(f"demo catalog seeded: {json.dumps(result)}", flush=True)
