"""POST /auth-signup {email, password, name} -> 201 {user}."""

from lib import accounts
from lib.http import http_function, json_response, parse_json


@http_function(methods=["POST"])
def auth_signup(request):
    body = parse_json(request, accounts.SignupBody)
    user = accounts.signup(body)
    return json_response({"user": accounts.public_user(user)}, 201)
