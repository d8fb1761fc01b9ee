"""Structured JSON logs for Cloud Logging, with trace correlation and secret redaction.

`StructuredJsonHandler` writes one JSON object per line to stdout in the shape of google-cloud-logging's
`StructuredLogHandler` (the structured-logging fields Cloud Logging reads from a Cloud Run container's stdout):
`message` (or the fields of a dict / JSON message, plus `json_fields`), `severity`,
`logging.googleapis.com/labels` (`python_logger`), and, inside a Flask request, `logging.googleapis.com/trace`
(`projects/<project>/traces/<id>`, which Cloud Logging correlates), `spanId` and `trace_sampled` from
`traceparent` or `X-Cloud-Trace-Context`, `sourceLocation` and `httpRequest`. It is our own because importing
google-cloud-logging (grpc, protobuf, opentelemetry) cost every cold start ~120-200 ms for a formatter;
tests/test_log.py holds the two to the same output. A filter scrubs bearer and basic credentials, JWTs,
password/token/secret values, credentials in URIs and signed-URL signatures from every record (tracebacks
included) before it is written, so a careless log call cannot leak a credential.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from lib.config import get_settings

# Names whose value is a credential: password, new_password, refresh_token, client_secret, api_key, X-Api-Key...
# Every open-ended run in these patterns is anchored or bounded: a long log line must not cost quadratic time.
_CREDENTIAL_NAME = (r"(?<![\w-])[\w-]{0,40}"
                    r"(?:password|passwd|passphrase|secret|token|(?:api|access|private|secret|signing)[_-]?key)")


def _redact_value(match: re.Match[str]) -> str:
    quote = match.group(2) or match.group(3) or ""
    return f"{match.group(1)}{quote}[REDACTED]{quote}"


_REDACTIONS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/]+=*"), r"\1[REDACTED]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[REDACTED_JWT]"),
    # user:password@ in a URI (mongodb+srv://, redis://, https://); greedy up to the last @ before the path,
    # in case the password holds an unescaped @
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://)[^/?#\s\"'<>]{1,1000}@"), r"\1[REDACTED]@"),
    # signed-URL query parameters: GCS V4 and V2, S3 SigV4 and its session token, Azure SAS
    (re.compile(r"(?i)\b((?:X-(?:Goog|Amz)-(?:Signature|Credential|Security-Token))|Signature|sig)=[^&\s\"']+"),
     r"\1=[REDACTED]"),
    # "key": "a whole quoted value", 'key': 'value', key=value, key: value (unless an earlier rule redacted it)
    (re.compile(rf"""(?i)(["']?{_CREDENTIAL_NAME}["']?\s*[:=]\s*)(?!\[REDACTED)"""
                r"""(?:(")(?:[^"\\]|\\.){0,1000}"|(')(?:[^'\\]|\\.){0,1000}'|["']?[^\s"',;&}\]]+)"""),
     _redact_value),
]


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs everything the handler writes: the message, its json_fields, and the traceback and stack that
    would otherwise be formatted after every filter has run."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            # formatted now so that it can be redacted; formatters print exc_text as is
            record.exc_text = record.exc_text or self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        fields = getattr(record, "json_fields", None)
        if isinstance(fields, dict):
            record.json_fields = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        return True


# --- Cloud Logging's structured JSON ------------------------------------------------------------------------

# Fields Cloud Logging reserves (https://cloud.google.com/logging/docs/structured-logging): a dict message may
# not set them, the handler does.
_RESERVED_FIELDS = frozenset({
    "severity", "httpRequest", "time", "timestamp", "timestampSeconds", "timestampNanos",
    "logging.googleapis.com/insertId", "logging.googleapis.com/labels", "logging.googleapis.com/operation",
    "logging.googleapis.com/sourceLocation", "logging.googleapis.com/spanId", "logging.googleapis.com/trace",
    "logging.googleapis.com/trace_sampled",
})
_TRACEPARENT = re.compile(
    r"^\s?(?!ff)[a-f\d]{2}-((?![0]{32})[a-f\d]{32})-((?![0]{16})[a-f\d]{16})-([a-f\d]{2})(-.*)?\s?$")
_XCLOUD_TRACE = re.compile(r"([\w-]+)?(\/?([\w-]+))?(;?o=(\d))?")


def trace_context(headers: Mapping[str, str]) -> tuple[str | None, str | None, bool]:
    """(trace id, span id, sampled) from a W3C `traceparent` header, else the legacy `X-Cloud-Trace-Context`
    (`TRACE_ID/SPAN_ID;o=1`, span id in decimal, converted to 16 hex digits)."""
    match = _TRACEPARENT.match(headers.get("traceparent") or "")
    if match:
        return match.group(1), match.group(2), bool(int(match.group(3), 16) & 1)
    header = headers.get("X-Cloud-Trace-Context")
    if not header:
        return None, None, False
    match = _XCLOUD_TRACE.match(header)
    if match is None:
        return None, None, False
    trace_id, span, sampled = match.group(1), match.group(3), match.group(5) == "1"
    try:
        span_int = int(span)
        span_id = f"{span_int:016x}" if 0 < span_int < 2 ** 64 else None
    except (TypeError, ValueError):
        span_id = None
    return trace_id, span_id, sampled


def _request_context() -> tuple[dict[str, Any] | None, str | None, str | None, bool]:
    """httpRequest and trace of the Flask request being served (nothing outside one). Flask is only consulted
    when this process already loaded it, so a job pays no import for it."""
    flask = sys.modules.get("flask")
    if flask is None or not flask.has_request_context():
        return None, None, None, False
    request = flask.request
    http_request = {"requestMethod": request.method, "requestUrl": request.url,
                    "userAgent": request.user_agent.string, "protocol": request.environ.get("SERVER_PROTOCOL")}
    return (http_request, *trace_context(request.headers))


class StructuredJsonHandler(logging.StreamHandler):
    """One Cloud Logging structured entry per record, as JSON on one line (see the module docstring)."""

    def __init__(self, project_id: str | None = None, stream=None, labels: dict[str, str] | None = None) -> None:
        super().__init__(stream=stream)
        self.project_id = project_id
        self.labels = dict(labels or {})

    def _payload(self, record: logging.LogRecord) -> Mapping[str, Any] | str | None:
        """The record's content as StructuredLogHandler reads it: a dict message (plus `json_fields`) as is; a
        message that is a JSON object as that object; else the formatted text (with its traceback), which
        `json_fields`, when given, carry as their `message`."""
        fields = getattr(record, "json_fields", None)
        fields = fields if isinstance(fields, Mapping) else {}
        if isinstance(record.msg, Mapping):
            return {**record.msg, **fields}
        message: Any = super().format(record)
        if message.startswith("{"):
            try:
                parsed = json.loads(message)
                message = parsed if isinstance(parsed, Mapping) else message
            except ValueError:
                pass
        if fields:
            return {**fields, "message": message} if message != "None" else dict(fields)
        return message if message != "None" else None

    def format(self, record: logging.LogRecord) -> str:
        http_request, trace_id, span_id, sampled = _request_context()
        trace = getattr(record, "trace", None)
        if trace is None and trace_id and self.project_id:
            trace = f"projects/{self.project_id}/traces/{trace_id}"
        source = getattr(record, "source_location", None)
        if source is None:
            source = {"line": record.lineno, "file": record.pathname, "function": record.funcName}
        labels = {"python_logger": record.name, **self.labels, **(getattr(record, "labels", None) or {})}
        payload = self._payload(record)
        if isinstance(payload, Mapping):
            entry = {k: v for k, v in payload.items() if k not in _RESERVED_FIELDS}
        else:
            entry = {"message": payload} if payload else {}
        entry.update({
            "severity": record.levelname,
            "logging.googleapis.com/labels": labels,
            "logging.googleapis.com/trace": trace or "",
            "logging.googleapis.com/spanId": getattr(record, "span_id", span_id) or "",
            "logging.googleapis.com/trace_sampled": bool(getattr(record, "trace_sampled", sampled)),
            "logging.googleapis.com/sourceLocation": source or {},
            "httpRequest": getattr(record, "http_request", http_request) or {},
        })
        return json.dumps(entry, ensure_ascii=False, default=str)


_configured = False


def structured_handler(project_id: str | None, stream) -> logging.Handler:
    """One JSON object per line on `stream`, every record redacted first."""
    handler = StructuredJsonHandler(project_id=project_id, stream=stream)
    handler.addFilter(RedactingFilter())
    return handler


def setup_logging(project_id: str | None = None, level: int = logging.INFO) -> None:
    """Route the root logger through one StructuredJsonHandler (idempotent, safe to call at import)."""
    global _configured
    if _configured:
        return
    if project_id is None:
        try:
            project_id = get_settings().gcp_project
        except Exception:  # noqa: BLE001 - logging must come up even when settings are broken
            project_id = None
    handler = structured_handler(project_id, sys.stdout)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    _configured = True
