"""/me: GET the caller's account, PATCH it {name?, email?, new_password + current_password?}, DELETE it."""

from lib import accounts
from lib.http import http_function, json_response, no_content, parse_json


@http_function(methods=["GET", "PATCH", "DELETE"], auth=True)
def me(request, user):
    if request.method == "PATCH":
        body = parse_json(request, accounts.ProfileUpdate)
        updated, tokens = accounts.update_profile(user, body)
        reply = {"user": accounts.public_user(updated)}
        if tokens is not None:
            reply["tokens"] = tokens
        return json_response(reply, headers={"Cache-Control": "no-store"})
    if request.method == "DELETE":
        accounts.deactivate(user)
        return no_content()
    return json_response({"user": accounts.public_user(user)}, headers={"Cache-Control": "no-store"})
