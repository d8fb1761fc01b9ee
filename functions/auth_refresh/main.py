"""POST /auth-refresh {refresh_token} -> 200 a new token pair (the presented token is spent)."""

from lib import accounts, auth
from lib.http import http_function, json_response

INVALID = ("The refresh token is not valid: INVALID_REFRESH_TOKEN (unknown, expired or signed out) or "
           "REFRESH_TOKEN_REUSED (already spent; its whole family is now signed out). Log in again.")


@http_function(methods=["POST"], body=auth.RefreshTokenBody, response=accounts.TokenPair, errors=((401, INVALID),),
               tags=["accounts"], summary="Exchange a refresh token for a new pair",
               description="The presented token is spent; presenting it again revokes its whole family and ends "
                           "the session's access tokens, except within REFRESH_REUSE_GRACE_SECONDS of its first use "
                           "(two tabs refreshing at once): then another valid pair of the same session.")
def auth_refresh(request, body):
    tokens = auth.rotate_refresh_token(body.refresh_token)
    return json_response(accounts.TokenPair.model_validate(tokens), headers={"Cache-Control": "no-store"})
