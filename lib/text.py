"""Free text that people type into requests (a prompt, a search, a name): no control characters.

NUL and friends have no place in text a person typed, break log lines, and a NUL inside a `$regex` is refused by
MongoDB (an error where the client deserves a 400). Newlines and tabs are allowed (prompts may have them).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def _no_control_characters(value: str) -> str:
    if any((ord(c) < 32 and c not in "\n\t") or c == "\x7f" for c in value):
        raise ValueError("must not contain control characters")
    return value


PlainText = Annotated[str, AfterValidator(_no_control_characters)]
