"""Structured JSON logs for Cloud Logging, with trace correlation and secret redaction.

`StructuredLogHandler` writes one JSON object per line to stdout with `severity`, the message and, inside a
Flask request, the trace from `X-Cloud-Trace-Context`/`traceparent`, which Cloud Logging correlates when the
project id is known. A filter scrubs bearer tokens, JWTs, refresh tokens and signed-URL signatures from every
record before it is written, so a careless log call cannot leak a credential.
"""

from __future__ import annotations

import logging
import re
import sys

_REDACTIONS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[REDACTED_JWT]"),
    (re.compile(r"(?i)(X-Goog-(?:Signature|Credential)=)[^&\s\"']+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)(\"?(?:password|refresh_token|access_token|token|secret)\"?\s*[:=]\s*\"?)[^\s\",}]+"),
     r"\1[REDACTED]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
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
