"""POST /auth-signup {email, password, name} -> 201 {user}."""

from lib import accounts
from lib.http import client_address, http_function, json_response


@http_function(methods=["POST"], body=accounts.SignupBody, response=accounts.UserAnswer, status=201,
               errors=(409, 429), tags=["accounts"], summary="Create an account",
               description="409 EMAIL_TAKEN. 429 SIGNUP_RATE_LIMITED with Retry-After over "
                           "SIGNUPS_PER_ADDRESS_PER_HOUR sign-ups from one client address.")
def auth_signup(request, body):
    user = accounts.signup(body, client_address(request))
    return json_response(accounts.UserAnswer(user=accounts.public_user(user)), 201)
