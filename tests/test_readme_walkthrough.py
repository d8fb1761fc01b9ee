"""The README's shell walkthrough works when copied literally: its `sh` blocks that talk to `$API` run, as
written and in order, in one bash against `make run` (scripts/run_local.py with its own stack), with only the
API address swapped for the test server's (the README says how to pick another port)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.journey import room_photo

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parent.parent / "README.md"
DEFAULT_API = "API=http://127.0.0.1:8080\n"


def walkthrough() -> str:
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    steps = [block for block in blocks if "$API" in block]
    assert len(steps) >= 2 and steps[0].startswith(DEFAULT_API), "the walkthrough must start by setting API"
    return "\n".join(steps)


def test_every_variable_the_walkthrough_uses_is_set_in_it():
    script = walkthrough()
    used = set(re.findall(r"\$\{?([A-Z][A-Z_]*)", script))
    assigned = set(re.findall(r"^\s*([A-Z][A-Z_]*)=", script, flags=re.M))
    assigned |= set(re.findall(r"\bfor ([A-Z][A-Z_]*) in", script))
    assert used <= assigned, f"used but never set: {sorted(used - assigned)}"


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq") and shutil.which("bash")),
                    reason="needs bash, curl and jq")
def test_the_walkthrough_runs_as_written(live_server, tmp_path):
    (tmp_path / "room.jpg").write_bytes(room_photo())
    script = walkthrough().replace(DEFAULT_API, f"API={live_server}\n", 1)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=400, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^upload \w+: ready$", result.stdout, flags=re.M), result.stdout[-3000:]
    assert re.search(r"^interior \w+: done$", result.stdout, flags=re.M), result.stdout[-3000:]
    assert '"products": [' in result.stdout and '"box": {' in result.stdout
