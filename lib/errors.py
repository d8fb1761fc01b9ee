"""Errors a request can end in. Raised anywhere in lib, rendered by lib.http as the error envelope.

`{"error": {"code": "UPPER_SNAKE", "message": "...", "details": [...]}}` with the status below.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    """One thing wrong with the request; some codes add facts (e.g. QUOTA_EXCEEDED: used, limit, resets_at)."""
    model_config = ConfigDict(extra="allow")
    field: str = Field(description="The field at fault, dotted for nested ones (`body` for the whole body)")
    message: str = Field(description="What is wrong with it, in words")
    type: str = Field(description="A machine-readable kind, e.g. missing, string_too_short, value_error")


class ErrorBody(BaseModel):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="UPPER_SNAKE, stable: branch on this")
    message: str = Field(description="For people; may change")
    details: list[ErrorDetail] = Field(description="One entry per invalid field for VALIDATION_ERROR; may be empty")


class ErrorEnvelope(BaseModel):
    """Every error answer: {"error": {code, message, details}}."""
    error: ErrorBody


class ApiError(Exception):
    status = 400
    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or []
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError):
    status, code = 400, "BAD_REQUEST"


class ValidationFailed(ApiError):
    status, code = 400, "VALIDATION_ERROR"


class Unauthorized(ApiError):
    status, code = 401, "UNAUTHORIZED"

    def __init__(self, message: str = "Missing or invalid access token.", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="zipkku"'})
        super().__init__(message, **kwargs)


class Forbidden(ApiError):
    status, code = 403, "FORBIDDEN"


class NotFound(ApiError):
    status, code = 404, "NOT_FOUND"


class Conflict(ApiError):
    status, code = 409, "CONFLICT"


class PayloadTooLarge(ApiError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ApiError):
    status, code = 415, "UNSUPPORTED_MEDIA_TYPE"


class Unprocessable(ApiError):
    status, code = 422, "UNPROCESSABLE"


class TooManyRequests(ApiError):
    status, code = 429, "TOO_MANY_REQUESTS"

    def __init__(self, message: str, *, retry_after_seconds: int, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(max(1, int(retry_after_seconds)))})
        super().__init__(message, **kwargs)


class DependencyUnavailable(ApiError):
    status, code = 503, "DEPENDENCY_UNAVAILABLE"

    def __init__(self, message: str = "A service we depend on is unavailable; try again shortly.", **kw: Any):
        kw.setdefault("headers", {"Retry-After": "5"})
        super().__init__(message, **kw)
