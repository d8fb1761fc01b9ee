"""Structured JSON logs for Cloud Logging, with trace correlation and secret redaction.

`StructuredLogHandler` writes one JSON object per line to stdout with `severity`, the message and, inside a
Flask request, the trace from `X-Cloud-Trace-Context`/`traceparent`, which Cloud Logging correlates when the
project id is known. A filter scrubs bearer and basic credentials, JWTs, password/token/secret values,
credentials in URIs and signed-URL signatures from every record (tracebacks included) before it is written, so a
careless log call cannot leak a credential.
"""

from __future__ import annotations

import logging
import re
import sys

# Names whose value is a credential: password, new_password, refresh_token, client_secret, api_key, X-Api-Key...
# Every open-ended run in these patterns is anchored or bounded: a long log line must not cost quadratic time.
_CREDENTIAL_NAME = (r"(?<![\w-])[\w-]{0,40}"
                    r"(?:password|passwd|passphrase|secret|token|(?:api|access|private|secret|signing)[_-]?key)")


def _redact_value(match: re.Match[str]) -> str:
    quote = match.group(2) or match.group(3) or ""
    return f"{match.group(1)}{quote}[REDACTED]{quote}"


_REDACTIONS = [
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


_configured = False


def structured_handler(project_id: str | None, stream) -> logging.Handler:
    """One JSON object per line on `stream`, every record redacted first."""
    from google.cloud.logging.handlers import StructuredLogHandler

    handler = StructuredLogHandler(project_id=project_id, stream=stream)
    handler.addFilter(RedactingFilter())
    return handler


def setup_logging(project_id: str | None = None, level: int = logging.INFO) -> None:
    """Route the root logger through one StructuredLogHandler (idempotent, safe to call at import)."""
    global _configured
    if _configured:
        return
    if project_id is None:
        from lib.config import get_settings

        try:
            project_id = get_settings().gcp_project
        except Exception:  # noqa: BLE001 - logging must come up even when settings are broken
            project_id = None
    handler = structured_handler(project_id, sys.stdout)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    _configured = True
