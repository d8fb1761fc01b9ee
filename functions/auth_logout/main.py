"""POST /auth-logout {refresh_token} -> 204; signs out the session family the token belongs to."""

from lib import auth
from lib.http import http_function, no_content


@http_function(methods=["POST"], body=auth.RefreshTokenBody, status=204, tags=["accounts"],
               summary="Sign out the session family of a refresh token",
               description="Its refresh tokens and its access tokens stop working. Unknown tokens also answer 204.")
def auth_logout(request, body):
    # Unknown tokens also answer 204: logging out must not reveal which tokens exist.
    auth.revoke_by_token(body.refresh_token)
    return no_content()
