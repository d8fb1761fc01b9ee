"""Prepare a local stack for use: indexes now (and, as features land, buckets and the demo catalog)."""

from __future__ import annotations


def prepare_local(stack) -> None:
    from lib import db

    db.ensure_all_indexes()
