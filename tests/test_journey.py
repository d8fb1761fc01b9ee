"""The whole generation journey over real HTTP against `make run` (scripts/run_local.py as a subprocess with
its own local stack, demo catalog, upload trigger bridge and local job runner)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import jsonschema
import pytest
import requests

from scripts.journey import Journey, room_photo
from tests.api_document import api_document

pytestmark = pytest.mark.e2e


def _check_against_openapi(answers: list[requests.Response]) -> int:
    """Every JSON answer of our functions matches the body schema the OpenAPI document gives for it."""
    doc = api_document()
    checked = 0
    for answer in answers:
        path, method = urlsplit(answer.url).path, answer.request.method.lower()
        operation = doc["paths"].get(path, {}).get(method)
        if operation is None or answer.status_code == 204:
            continue  # a signed URL to the bucket, or no body
        response = operation["responses"][str(answer.status_code)]
        schema = response["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(answer.json())
        checked += 1
    return checked


def test_signup_upload_generate_products_ar_save_library_delete(live_server):
    journey = Journey(live_server)
    answers: list[requests.Response] = []
    journey.session.hooks["response"].append(lambda response, *args, **kwargs: answers.append(response))
    journey.account()
    upload = journey.upload(room_photo())
    style, room_type = journey.pick_style()
    interior = journey.generate(upload["id"], style, room_type, variants=2)
    assert [v["index"] for v in interior["variants"]] == [0, 1]
    assert journey.stages.get("done") is not None
    # the images are served through signed URLs that really work
    image = requests.get(interior["variants"][0]["image_url"], timeout=30)
    assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"
    part = next(p for v in interior["variants"] for p in v["detected_parts"] if p["products"])
    product = part["products"][0]
    assert product["label"] == part["label"] and product["product_url"].startswith("http")
    ar = next(p for v in interior["variants"] for p in v["detected_parts"] if p["ar_objects"])["ar_objects"][0]
    model = requests.get(ar["model_url"], timeout=30)
    assert model.status_code == 200 and model.content[:4] == b"glTF"
    me = journey.library(interior["id"])
    deadline = time.monotonic() + 10  # the finished event is recorded by the job right after `done`
    while not me["notifications"] and time.monotonic() < deadline:
        time.sleep(0.2)
        me = journey.call("GET", "me", 200).json()
    assert me["notifications"][0]["interior_id"] == interior["id"]
    journey.delete(interior["id"])
    assert _check_against_openapi(answers) >= 10
