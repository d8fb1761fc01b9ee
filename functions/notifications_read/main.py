"""POST /notifications-read {ids: [...]} or {all: true} -> {updated, unread}: the person has seen them."""

from lib import notifications
from lib.http import http_function, json_response


@http_function(methods=["POST"], auth=True, body=notifications.ReadBody, response=notifications.ReadAnswer,
               tags=["notifications"], summary="Mark notifications read: {ids: [...]} or {all: true}",
               description="Ids that are not the caller's are ignored.")
def notifications_read(request, user, body):
    updated = notifications.mark_read(user["_id"], body)
    return json_response(notifications.ReadAnswer(updated=updated, unread=notifications.unread_count(user["_id"])))
