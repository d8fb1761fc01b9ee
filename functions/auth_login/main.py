"""POST /auth-login {email, password} (or OAuth2 form username/password) -> 200 {access_token, ...}."""

from lib import accounts
from lib.http import http_function, json_response, parse_json


@http_function(methods=["POST"])
def auth_login(request):
    body = parse_json(request, accounts.LoginBody, allow_form=True)
    tokens = accounts.login(body)
    return json_response(tokens, headers={"Cache-Control": "no-store"})
