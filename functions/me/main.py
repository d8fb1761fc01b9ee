"""/me: GET the caller's account (with generation usage, recent saved designs and notifications),
PATCH it {name?, email?, new_password + current_password?}, DELETE it {current_password}."""

from lib import accounts
from lib.http import http_function, json_response, no_content, parse_json, validate


@http_function(methods=["GET", "PATCH", "DELETE"], auth=True)
def me(request, user):
    if request.method == "PATCH":
        body = parse_json(request, accounts.ProfileUpdate)
        updated, tokens = accounts.update_profile(user, body)
        reply = {"user": accounts.public_user(updated)}
        if tokens is not None:
            reply["tokens"] = tokens
        return json_response(reply)
    if request.method == "DELETE":
        # A bare DELETE (no body at all) is told which field it misses, not which content type to send.
        raw = request.get_data(cache=True)
        body = parse_json(request, accounts.DeleteAccountBody) if raw else validate(accounts.DeleteAccountBody, {})
        accounts.delete_account(user, body)
        return no_content()
    from lib import interiors, notifications, quota, storage  # generation's view of the account

    saved = interiors.recent_saved(user["_id"], 6)
    return json_response({
        "user": accounts.public_user(user), "usage": quota.usage(user["_id"]),
        "recent_saved": storage.signed_links(lambda: [interiors.view(d, summary=True) for d in saved]),
        "notifications": notifications.recent(user["_id"]),
        "unread_notifications": notifications.unread_count(user["_id"]),
    })
