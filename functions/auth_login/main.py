"""POST /auth-login {email, password} (or OAuth2 form username/password) -> 200 {access_token, ...}."""

from lib import accounts
from lib.http import client_address, http_function, json_response


@http_function(
    methods=["POST"], body=accounts.LoginBody, form=accounts.LoginForm, response=accounts.TokenPair,
    errors=((401, "Wrong email or password (INVALID_CREDENTIALS)"), 429), tags=["accounts"],
    summary="Log in (JSON or OAuth2 password form)",
    description="One answer (401 INVALID_CREDENTIALS) for every wrong email and password. Also accepts "
                "application/x-www-form-urlencoded with username and password. 429 with Retry-After: "
                "LOGIN_THROTTLED after 5 failures for one email within 15 minutes from this client address (or "
                "from all addresses, for an address the account never signed in from); LOGIN_RATE_LIMITED over "
                "LOGINS_PER_ADDRESS_PER_HOUR attempts from one client address.",
)
def auth_login(request, body):
    tokens = accounts.login(body, client_address(request))
    return json_response(accounts.TokenPair.model_validate(tokens), headers={"Cache-Control": "no-store"})
