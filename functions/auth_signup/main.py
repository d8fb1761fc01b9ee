"""POST /auth-signup {email, password, name} -> 201 {user}."""

from lib import accounts
from lib.http import http_function, json_response


@http_function(methods=["POST"], body=accounts.SignupBody, response=accounts.UserAnswer, status=201,
               errors=(409,), tags=["accounts"], summary="Create an account", description="409 EMAIL_TAKEN.")
def auth_signup(request, body):
    user = accounts.signup(body)
    return json_response(accounts.UserAnswer(user=accounts.public_user(user)), 201)
