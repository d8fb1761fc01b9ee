"""The HTTP conventions every function follows, in one decorator and a few helpers.

    @http_function(methods=["POST"], auth=True, body=interiors.SaveBody, response=interiors.InteriorAnswer,
                   errors=(404,), summary="Save an interior to the library (or unsave it)", tags=["interiors"])
    def interiors_save(request, user, body):
        doc = interiors.set_saved(user["_id"], body.interior_id, body.saved)   # authorize + lib
        return json_response(interiors.InteriorAnswer(interior=interiors.view(doc)))   # reply

What the decorator declares is the contract: it validates the declared `body` (JSON, or also a form with
`form=True`) and `query` with their models and hands them to the handler, and lib.openapi builds the OpenAPI
document from the same declarations (a function with several methods declares one `Operation` per method).
The decorator answers CORS preflight, refuses other methods with 405 + Allow, bounds the body size, checks
the bearer token (401) and turns every ApiError, validation error and dependency outage into the error
envelope. Anything else becomes a logged 500 that reveals nothing.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import flask
import functions_framework
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from lib import errors
from lib.answers import Answer, iso_timestamp
from lib.config import get_settings
from lib.log import setup_logging

log = logging.getLogger("zipkku.http")

Model = TypeVar("Model", bound=BaseModel)

ALLOWED_REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, If-None-Match"
EXPOSED_RESPONSE_HEADERS = "ETag, Retry-After, Idempotent-Replayed"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


# --- replies ---------------------------------------------------------------------------------------------

def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_timestamp(value)
    if isinstance(value, Answer):
        return value.to_json()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    response = flask.Response(
        json.dumps(body, separators=(",", ":"), default=_json_default), status=status, mimetype="application/json"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def no_content() -> flask.Response:
    return flask.Response(status=204)


def error_response(error: errors.ApiError) -> flask.Response:
    return json_response(error.envelope(), error.status, error.headers)


def cached_json_response(
    request: flask.Request, etag_basis: Any, build: Callable[[], Any], *, max_age: int = 60,
) -> flask.Response:
    """A cacheable read: `ETag` from `etag_basis` (the stored data the reply is made of, NOT the reply itself,
    which may hold freshly signed URLs that differ on every call), `Cache-Control: public, max-age`, and a
    bodiless 304 when If-None-Match matches, in which case `build()` (signing, serialising) is skipped."""
    digest = hashlib.sha256(json.dumps(etag_basis, sort_keys=True, default=_json_default).encode()).hexdigest()
    etag = f'"{digest[:32]}"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
    candidates = {tag.strip().removeprefix("W/") for tag in request.headers.get("If-None-Match", "").split(",")}
    if etag in candidates or "*" in candidates:
        response = flask.Response(status=304)
        response.headers.update(headers)
        return response
    return json_response(build(), headers=headers)


# --- parsing ---------------------------------------------------------------------------------------------

def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as [{field, message, type}], without echoing the rejected input back."""
    return [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def validate(model: type[Model], data: Any) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.ValidationFailed("The request is not valid.", details=validation_details(exc)) from None


def parse_json(request: flask.Request, model: type[Model], *, allow_form: bool = False) -> Model:
    """The body as `model`: 415 for another content type, 400 for malformed JSON or invalid fields."""
    mimetype = request.mimetype or ""
    if allow_form and mimetype in FORM_TYPES:
        return validate(model, request.form.to_dict())
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise errors.UnsupportedMediaType("Send the body as application/json.")
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting too deep to parse
        raise errors.BadRequest("The body is not valid JSON.", code="INVALID_JSON") from None
    if not isinstance(data, dict):
        raise errors.BadRequest("The body must be a JSON object.", code="INVALID_JSON")
    return validate(model, data)


def parse_query(request: flask.Request, model: type[Model]) -> Model:
    """Query parameters as `model` (a repeated parameter keeps its first value)."""
    return validate(model, request.args.to_dict())


def bearer_token(request: flask.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("Send an access token as 'Authorization: Bearer <token>'.")
    return token.strip()


def client_address(request: flask.Request) -> str:
    """The address the request came from, as Google's front end reports it: the entry it appends to
    X-Forwarded-For (the last one; everything before it is whatever the client sent, so a client cannot choose
    this one). CLIENT_ADDRESS_PROXY_HOPS skips that many more trusted proxies from the right (the external load
    balancer appends the client's address and then its own). Without the header (a test client), the peer."""
    hops = get_settings().client_address_proxy_hops
    entries = [e.strip() for e in request.headers.get("X-Forwarded-For", "").split(",") if e.strip()]
    if len(entries) > hops:
        return entries[-1 - hops]
    return entries[0] if entries else (request.remote_addr or "unknown")


# --- CORS ------------------------------------------------------------------------------------------------

def _cors_headers(request: flask.Request, methods: Iterable[str]) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin or origin not in get_settings().cors_origins:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ", ".join(sorted(set(methods) | {"OPTIONS"})),
        "Access-Control-Allow-Headers": ALLOWED_REQUEST_HEADERS,
        "Access-Control-Expose-Headers": EXPOSED_RESPONSE_HEADERS,
        "Access-Control-Max-Age": "3600",
    }


# --- the decorator ---------------------------------------------------------------------------------------

def _dependency_error(exc: Exception) -> errors.ApiError | None:
    """An outage of the database, Cloud Storage or another Google API is a 503, not a 500. Each client library
    is only consulted if this process already loaded it (so this costs no imports)."""
    pymongo = sys.modules.get("pymongo")
    if pymongo is not None and (isinstance(exc, pymongo.errors.ConnectionFailure) or (
            isinstance(exc, pymongo.errors.PyMongoError) and exc.timeout)):  # e.g. ExecutionTimeout (timeoutMS)
        return errors.DependencyUnavailable("The database is unavailable; try again shortly.")
    google_errors = sys.modules.get("google.api_core.exceptions")
    if google_errors is not None and isinstance(exc, (
        google_errors.ServiceUnavailable, google_errors.InternalServerError, google_errors.GatewayTimeout,
        google_errors.TooManyRequests, google_errors.RetryError,
    )):
        return errors.DependencyUnavailable("A storage or cloud service is unavailable; try again shortly.")
    requests_errors = sys.modules.get("requests.exceptions")
    if requests_errors is not None and isinstance(exc, (requests_errors.ConnectionError, requests_errors.Timeout)):
        return errors.DependencyUnavailable("A service we depend on did not answer; try again shortly.")
    return None


def _buffer_streamed_body(request: flask.Request, limit: int) -> None:
    """A chunked body carries no Content-Length, and werkzeug would silently cut it at a limit (the handler
    then sees broken JSON). Read at most one byte past the limit: more is a 413, less becomes an ordinary
    body of known length."""
    stream, body = request.environ["wsgi.input"], b""
    while len(body) <= limit:
        chunk = stream.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise errors.PayloadTooLarge(f"The body is larger than {limit} bytes.")
    request.environ["wsgi.input"] = io.BytesIO(body)
    request.environ["CONTENT_LENGTH"] = str(len(body))


def _http_exception(exc: HTTPException) -> errors.ApiError:
    code = {
        400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
    }.get(exc.code or 400, "BAD_REQUEST")
    status = exc.code if exc.code and 400 <= exc.code < 500 else 400
    return errors.ApiError(exc.description or exc.name, code=code, status=status)


@dataclass(frozen=True)
class Operation:
    """What one method of a function takes and answers: the source of its validation and of its OpenAPI entry."""

    summary: str
    response: Any = None  # the success body: a model (or a union of models); None: no body (204)
    media_type: str = "application/json"  # of the success body (the docs page is text/html)
    status: int = 200
    body: type[BaseModel] | None = None  # validated from the JSON body, handed to the handler as `body`
    form: type[BaseModel] | None = None  # the body may also come as a urlencoded form, validated by this too
    query: type[BaseModel] | None = None  # validated from the query string, handed to the handler as `query`
    multipart_file: str | None = None  # a multipart/form-data body with this one file part (the handler reads it)
    headers: Mapping[str, type[BaseModel]] = field(default_factory=dict)  # optional request header -> its model
    response_headers: tuple[str, ...] = ()  # headers a success may carry (names in lib.openapi.RESPONSE_HEADERS)
    # statuses it may answer besides the ones every function may; (status, text) where the usual text misleads
    errors: tuple[int | tuple[int, str], ...] = ()
    description: str = ""
    cached: bool = False  # answers carry ETag + Cache-Control; a matching If-None-Match gets 304
    offline: bool = False  # needs no database or other dependency, so it never answers 503


@dataclass(frozen=True)
class Contract:
    """Everything a function declares about itself, attached to it as `.contract` for lib.openapi."""

    operations: Mapping[str, Operation]  # method -> operation
    auth: bool
    tags: tuple[str, ...]


def http_function(
    *,
    methods: Iterable[str] | Mapping[str, Operation],
    auth: bool = False,
    tags: Iterable[str] = (),
    max_body_bytes: int | None = None,
    summary: str = "",
    response: Any = None,
    status: int = 200,
    body: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    multipart_file: str | None = None,
    headers: Mapping[str, type[BaseModel]] | None = None,
    response_headers: tuple[str, ...] = (),
    errors: tuple[int | tuple[int, str], ...] = (),
    description: str = "",
    cached: bool = False,
    offline: bool = False,
) -> Callable[[Callable[..., flask.Response]], functions_framework.HTTPFunction]:
    """Wrap `handler(request[, user][, body=][, query=])` (user with auth=True; body and query when declared)
    as a functions-framework HTTP function that follows every convention above. `methods` is a list of methods
    sharing the operation described by the other keywords, or a mapping method -> Operation."""
    if isinstance(methods, Mapping):
        operations = {m.upper(): op for m, op in methods.items()}
    else:
        shared = Operation(
            summary=summary, response=response, status=status, body=body, form=form, query=query,
            multipart_file=multipart_file, headers=headers or {}, response_headers=response_headers,
            errors=errors, description=description, cached=cached, offline=offline)
        operations = {m.upper(): replace(shared) for m in methods}
    allowed = tuple(sorted(operations))
    contract = Contract(operations=operations, auth=auth, tags=tuple(tags))
    setup_logging()

    def decorate(handler: Callable[..., flask.Response]) -> functions_framework.HTTPFunction:
        @functools.wraps(handler)
        def entry(request: flask.Request) -> flask.Response:
            cors = _cors_headers(request, allowed)
            if request.method == "OPTIONS":
                response = no_content()
            else:
                response = _handle(handler, request, contract, max_body_bytes)
                if auth:  # one person's data (and signed URLs), errors included: never for shared caches
                    response.headers.setdefault("Cache-Control", "private, no-store")
            response.headers.extend(cors)
            # On every answer, with or without the CORS headers: a shared cache must not hand the copy made
            # for one origin (or for none) to another. Added to, never replacing, the handler's own Vary.
            response.vary.add("Origin")
            return response

        wrapped = functions_framework.http(entry)
        wrapped.contract = contract  # type: ignore[attr-defined]
        return wrapped

    return decorate


def _inputs(request: flask.Request, operation: Operation) -> dict[str, BaseModel]:
    """The declared body and query, validated (400/415 otherwise)."""
    inputs: dict[str, BaseModel] = {}
    if operation.query is not None:
        inputs["query"] = parse_query(request, operation.query)
    if operation.body is not None:
        if request.method == "DELETE" and not request.get_data(cache=True):
            # a bare DELETE (no body at all) is told which field it misses, not which content type to send
            inputs["body"] = validate(operation.body, {})
        elif operation.form is not None and request.mimetype in FORM_TYPES:
            form = request.form.to_dict()
            validate(operation.form, form)
            inputs["body"] = validate(operation.body, form)
        else:
            inputs["body"] = parse_json(request, operation.body)
    return inputs


def _handle(
    handler: Callable[..., flask.Response],
    request: flask.Request,
    contract: Contract,
    max_body_bytes: int | None,
) -> flask.Response:
    allowed = tuple(sorted(contract.operations))
    try:
        operation = contract.operations.get("GET" if request.method == "HEAD" else request.method)
        if operation is None:
            raise errors.ApiError(
                f"{request.method} is not allowed here; use {', '.join(allowed)}.",
                code="METHOD_NOT_ALLOWED", status=405, headers={"Allow": ", ".join((*allowed, "OPTIONS"))},
            )
        limit = max_body_bytes or get_settings().max_json_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise errors.PayloadTooLarge(f"The body is larger than {limit} bytes.")
        if request.content_length is None and request.environ.get("wsgi.input_terminated"):
            _buffer_streamed_body(request, limit)
        if contract.auth:
            from lib import auth as auth_lib  # jwt + argon2 only for functions that need them

            user = auth_lib.authenticate(bearer_token(request))
            return handler(request, user, **_inputs(request, operation))
        return handler(request, **_inputs(request, operation))
    except errors.ApiError as exc:
        if exc.status >= 500:
            log.warning("%s %s -> %s %s", request.method, request.path, exc.status, exc.code)
        return error_response(exc)
    except HTTPException as exc:
        return error_response(_http_exception(exc))
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never leak internals
        dependency = _dependency_error(exc)
        if dependency is not None:
            log.error("dependency unavailable: %s", type(exc).__name__)
            return error_response(dependency)
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(
            errors.ApiError("Something went wrong on our side.", code="INTERNAL", status=500)
        )


# --- CloudEvent functions ------------------------------------------------------------------------------------

Event = TypeVar("Event")


def cloud_event_function(
    *, parse: Callable[[Any], Event | None],
) -> Callable[[Callable[[Event], object]], Callable[[Any], None]]:
    """Wrap `handler(event)` as a functions-framework CloudEvent function (Eventarc: storage, Pub/Sub push).

        @cloud_event_function(parse=storage.finalized_object)
        def on_upload_finalized(obj):
            return uploads.handle_finalized(obj)      # the outcome, logged

    `parse` turns the CloudEvent into what the handler works on; an event it refuses (None, or ValueError with
    the reason) is logged and dropped, never raised, because a raise makes Eventarc redeliver it forever. The
    handler's own errors do propagate: those deliveries should be retried."""
    setup_logging()

    def decorate(handler: Callable[[Event], object]) -> Callable[[Any], None]:
        handler_log = logging.getLogger(f"zipkku.{handler.__name__}")

        @functools.wraps(handler)
        def entry(cloud_event: Any) -> None:
            try:
                event = parse(cloud_event)
                reason = "not an event this function handles"
            except ValueError as exc:
                event, reason = None, str(exc)
            if event is None:
                handler_log.warning("dropping event %s of type %s: %s", cloud_event["id"], cloud_event["type"],
                                    reason)
                return
            outcome = handler(event)
            handler_log.info("event %s: %s", cloud_event["id"], outcome)

        return functions_framework.cloud_event(entry)

    return decorate
