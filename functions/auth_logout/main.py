"""POST /auth-logout {refresh_token} -> 204; signs out the session family the token belongs to."""

from lib import auth
from lib.http import http_function, no_content, parse_json


@http_function(methods=["POST"])
def auth_logout(request):
    body = parse_json(request, auth.RefreshTokenBody)
    # Unknown tokens also answer 204: logging out must not reveal which tokens exist.
    auth.revoke_by_token(body.refresh_token)
    return no_content()
