"""POST /interiors-generate {upload_id, room_type, style, prompt?, variants?, strength?} -> 202 {interior}.

Optional `Idempotency-Key` header: the same key from the same user answers with the same interior. Takes one
unit of quota (429 QUOTA_EXCEEDED with Retry-After when none is left) and enqueues the generation job; if the
queue cannot take it the interior is failed, the unit refunded and the answer is 503.
"""

from lib import interiors
from lib.http import http_function, json_response, parse_json, validate


@http_function(methods=["POST"], auth=True)
def interiors_generate(request, user):
    body = parse_json(request, interiors.GenerateBody)
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        key = validate(interiors.IdempotencyKey, {"key": key}).key
    doc, created = interiors.create(user, body, key)
    # No Location header: each function has its own URL in production, so a path would point at this one.
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return json_response({"interior": interiors.view(doc)}, 202, headers)
