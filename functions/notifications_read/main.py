"""POST /notifications-read {ids: [...]} or {all: true} -> {updated, unread}: the person has seen them."""

from lib import notifications
from lib.http import http_function, json_response, parse_json


@http_function(methods=["POST"], auth=True)
def notifications_read(request, user):
    body = parse_json(request, notifications.ReadBody)
    updated = notifications.mark_read(user["_id"], body)
    return json_response({"updated": updated, "unread": notifications.unread_count(user["_id"])})
