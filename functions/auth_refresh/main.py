"""POST /auth-refresh {refresh_token} -> 200 a new token pair (the presented token is spent)."""

from lib import auth
from lib.http import http_function, json_response, parse_json


@http_function(methods=["POST"])
def auth_refresh(request):
    body = parse_json(request, auth.RefreshTokenBody)
    tokens = auth.rotate_refresh_token(body.refresh_token)
    return json_response(tokens, headers={"Cache-Control": "no-store"})
