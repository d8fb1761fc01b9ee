"""lib/http's conventions that no single function owns: body parsing limits and the CORS Vary header."""

from __future__ import annotations

import flask
import pytest
from pydantic import BaseModel

from lib import errors
from lib.http import http_function, json_response, parse_json

FRONTEND = "http://localhost:5173"


class Body(BaseModel):
    name: str | None = None


@pytest.fixture
def settings(settings_env):
    settings_env(jwt_secret="x" * 32, cors_origins=FRONTEND)


def _vary(response) -> list[str]:
    return [value.strip() for header in response.headers.getlist("Vary") for value in header.split(",")]


# --- parsing ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", ["[" * 60000, '{"name": ' + "[" * 5000 + "]" * 5000 + "}"])
def test_json_nested_deeper_than_the_parser_can_go_is_invalid_json(body):
    context = flask.Flask(__name__).test_request_context("/", method="POST", data=body,
                                                         content_type="application/json")
    with context, pytest.raises(errors.BadRequest) as caught:
        parse_json(flask.request, Body)
    assert caught.value.code == "INVALID_JSON"


def test_a_deeply_nested_body_is_a_400_even_before_authentication(fn):
    r = fn("auth_login").post("/", data="[" * 60000, content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "INVALID_JSON"


# --- CORS: every answer varies on Origin -------------------------------------------------------------------

@pytest.mark.parametrize("origin", [None, "https://evil.example", FRONTEND])
def test_public_catalog_answers_vary_on_origin_whatever_the_origin(fn, origin):
    headers = {"Origin": origin} if origin else {}
    r = fn("styles_list").get("/", headers=headers)
    assert r.status_code == 200 and r.headers["Cache-Control"].startswith("public")
    assert _vary(r) == ["Origin"]
    assert ("Access-Control-Allow-Origin" in r.headers) == (origin == FRONTEND)
    not_modified = fn("styles_list").get("/", headers={**headers, "If-None-Match": r.headers["ETag"]})
    assert not_modified.status_code == 304 and _vary(not_modified) == ["Origin"]


def test_errors_and_preflights_vary_on_origin(fn):
    assert _vary(fn("styles_list").delete("/")) == ["Origin"]  # 405
    assert _vary(fn("auth_login").post("/", data="{", content_type="application/json")) == ["Origin"]
    assert _vary(fn("auth_login").options("/", headers={"Origin": "https://evil.example"})) == ["Origin"]
    preflight = fn("auth_login").options("/", headers={"Origin": FRONTEND, "Access-Control-Request-Method": "POST"})
    assert preflight.headers["Access-Control-Allow-Origin"] == FRONTEND and _vary(preflight) == ["Origin"]


@pytest.mark.parametrize("origin", [None, FRONTEND])
@pytest.mark.parametrize(("own", "expected"), [
    ("Accept-Encoding", ["Accept-Encoding", "Origin"]),
    ("origin", ["origin"]),
])
def test_origin_is_added_to_the_handlers_own_vary(settings, origin, own, expected):
    @http_function(methods=["GET"])
    def negotiated(request):
        return json_response({}, headers={"Vary": own})

    headers = {"Origin": origin} if origin else {}
    with flask.Flask(__name__).test_request_context("/", headers=headers):
        response = negotiated(flask.request)
    assert len(response.headers.getlist("Vary")) == 1
    assert _vary(response) == expected


def test_every_timestamp_in_answers_has_one_format_milliseconds_and_z(fn, make_user):
    """Times read back from MongoDB (milliseconds) and times just computed (microseconds) look the same."""
    import re
    from datetime import UTC, datetime

    from lib.answers import TIMESTAMP_PATTERN, iso_timestamp

    assert iso_timestamp(datetime(2026, 11, 30, 23, 5, 1, 123456, tzinfo=UTC)) == "2026-11-30T23:05:01.123Z"
    assert iso_timestamp(datetime(2026, 11, 30, 23, 5, 1, tzinfo=UTC)) == "2026-11-30T23:05:01.000Z"
    person = make_user()
    me = fn("me").get("/", headers=person["headers"]).get_json()
    created = fn("uploads_create").post("/", json={"content_type": "image/jpeg", "size_bytes": 1000},
                                        headers=person["headers"]).get_json()
    for stamp in (person["user"]["created_at"], me["user"]["created_at"], created["expires_at"]):
        assert re.fullmatch(TIMESTAMP_PATTERN, stamp), stamp
