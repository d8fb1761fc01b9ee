"""A style or room type typed in any case, with spaces, hyphens or underscores, means the same everywhere:
styles-list?name= finds exactly the styles interiors-generate accepts (one resolver, in lib.catalog)."""

from __future__ import annotations

import pytest

from lib import catalog
from lib.local import job_runner
from tests.generation_helpers import ready_upload, seed_mini_catalog

MID_CENTURY = {"_id": "mid-century", "name": "Mid-century modern", "description": "walnut",
               "room_types": ["living_room"]}


@pytest.fixture
def ctx(stack, settings_env, make_user):
    seed_mini_catalog()
    catalog.upsert_styles([MID_CENTURY])
    login = make_user()
    yield {**login, "upload": ready_upload(login["user"]["id"])}
    for execution_id in job_runner.execution_ids():  # a started job must finish before the database goes away
        job_runner.wait(execution_id, timeout=120)


def _generate(fn, ctx, style: str, room_type: str = "living_room"):
    return fn("interiors_generate").post("/", headers=ctx["headers"], json={
        "upload_id": ctx["upload"], "room_type": room_type, "style": style})


@pytest.mark.parametrize(("spelling", "style_id"), [
    ("mid-century", "mid-century"),
    ("Mid Century", "mid-century"),
    ("MID_CENTURY", "mid-century"),
    ("  mid -  century ", "mid-century"),
    ("Mid-century modern", "mid-century"),
    ("MID-CENTURY MODERN", "mid-century"),
    ("mid_century_modern", "mid-century"),
    ("Mid Century  Modern", "mid-century"),
    ("BOHO", "boho"),
    ("midcentury", None),
    ("mid century modern deluxe", None),
    ("century", None),
])
def test_styles_list_and_generate_agree_on_every_spelling(fn, ctx, settings_env, spelling, style_id):
    """With no quota left, generate stops right after resolving the style: 429 means it was accepted, 422
    UNKNOWN_STYLE that it was not, and nothing is queued."""
    settings_env(generation_quota=0)
    listed = fn("styles_list").get("/", query_string={"name": spelling})
    generated = _generate(fn, ctx, spelling)
    if style_id is None:
        assert listed.status_code == 404 and listed.get_json()["error"]["code"] == "STYLE_NOT_FOUND"
        assert generated.status_code == 422 and generated.get_json()["error"]["code"] == "UNKNOWN_STYLE"
    else:
        assert listed.status_code == 200 and listed.get_json()["style"]["id"] == style_id
        assert generated.status_code == 429, generated.get_json()


@pytest.mark.parametrize("room_type", ["living_room", "Living Room", "LIVING-ROOM", " living  room "])
def test_room_type_spellings_are_accepted(fn, ctx, settings_env, room_type):
    settings_env(generation_quota=0)
    assert _generate(fn, ctx, "boho", room_type).status_code == 429


def test_a_generation_stores_the_ids_its_spellings_resolve_to(fn, ctx):
    r = _generate(fn, ctx, "MID_CENTURY modern", room_type="Living-Room")
    assert r.status_code == 202, r.get_json()
    interior = r.get_json()["interior"]
    assert (interior["style"], interior["room_type"]) == ("mid-century", "living_room")
