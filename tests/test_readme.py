"""The README is where operators look up configuration: every setting lib/config.py reads must be there."""

from __future__ import annotations

from pathlib import Path

from lib.config import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in README]
    assert missing == []


def test_the_two_commands_are_documented():
    assert "make run" in README and "make test" in README
