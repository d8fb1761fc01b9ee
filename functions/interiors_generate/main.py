"""POST /interiors-generate {upload_id, room_type, style, prompt?, variants?, strength?} -> 202 {interior}.

Optional `Idempotency-Key` header: the same key from the same user answers with the same interior. Takes one
unit of quota (429 QUOTA_EXCEEDED with Retry-After when none is left) and enqueues the generation job; if the
queue cannot take it the interior is failed, the unit refunded and the answer is 503.
"""

from lib import interiors
from lib.http import client_address, http_function, json_response, validate


@http_function(methods=["POST"], auth=True, body=interiors.GenerateBody, response=interiors.InteriorAnswer,
               status=202, headers={"Idempotency-Key": interiors.IdempotencyKey},
               response_headers=("Idempotent-Replayed",), errors=(404, 409, 422, 429), tags=["interiors"],
               summary="Request a redesign of an uploaded room photo",
               description="Answers at once with the queued {interior}; poll /interiors-get?id=. An Idempotency-Key "
                           "header makes retries return the same interior (with Idempotent-Replayed: true); the "
                           "same key with a different request is 422 IDEMPOTENCY_KEY_REUSED. 404 UPLOAD_NOT_FOUND, "
                           "409 UPLOAD_NOT_READY, 422 UNKNOWN_STYLE / UNKNOWN_ROOM_TYPE / STYLE_ROOM_MISMATCH, "
                           "409 also while the first request with the same key is still taking its unit. 429 "
                           "QUOTA_EXCEEDED or GENERATION_RATE_LIMITED (over GENERATIONS_PER_ADDRESS_PER_HOUR "
                           "requests from one client address) with Retry-After, 503 ENQUEUE_FAILED (the unit is "
                           "refunded).")
def interiors_generate(request, user, body):
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        key = validate(interiors.IdempotencyKey, {"key": key}).key
    doc, created = interiors.create(user, body, key, client_address(request))
    # No Location header: each function has its own URL in production, so a path would point at this one.
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return json_response(interiors.InteriorAnswer(interior=interiors.view(doc)), 202, headers)
