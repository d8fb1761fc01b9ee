"""POST /auth-refresh {refresh_token} -> 200 a new token pair (the presented token is spent)."""

from pydantic import BaseModel, ConfigDict, Field

from lib import auth
from lib.http import http_function, json_response, parse_json


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=200)


@http_function(methods=["POST"])
def auth_refresh(request):
    body = parse_json(request, RefreshBody)
    tokens = auth.rotate_refresh_token(body.refresh_token)
    return json_response(tokens, headers={"Cache-Control": "no-store"})
