"""lib/http's conventions that no single function owns."""

from __future__ import annotations

import flask
import pytest
from pydantic import BaseModel

from lib import errors
from lib.http import parse_json


class Body(BaseModel):
    name: str | None = None


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
