"""A contract typed clients can trust: the OpenAPI document passes Redocly's recommended rules, generates a Python
client with every operation and no warning, and gives TypeScript types (openapi-typescript, default options)
under which a frontend journey written as the README shows it type-checks with `strict` and then runs against the
local stack. The Node tools come from scripts/contract-tools (`make contract-tools`: npm ci of pinned versions)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests import photos
from tests.api_document import api_document

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "scripts" / "contract-tools"
BIN = TOOLS / "node_modules" / ".bin"
# Redocly CLI must not phone home (telemetry, update checks): nothing here may leave the machine.
NODE_ENV = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "NO_COLOR": "1"}


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        message = f"{path} is missing: run `make contract-tools` (`make test` does; CI never skips)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(path)


def _run(args: list[str], cwd: Path, timeout: int = 300, env: dict[str, str] | None = None):
    result = subprocess.run(args, cwd=cwd, env=env or NODE_ENV, capture_output=True, text=True, timeout=timeout,
                            check=False)
    return result, result.stdout + result.stderr


@pytest.fixture
def document_file(tmp_path: Path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(api_document(), indent=1))
    return path


def test_redocly_recommended_rules_report_no_problem(document_file):
    result, output = _run([_tool("redocly"), "lint", str(document_file), "--config", str(TOOLS / "redocly.yaml"),
                           "--format", "stylish"], cwd=TOOLS)
    assert result.returncode == 0, output
    assert not re.search(r"\b[1-9]\d* (error|warning)", output), output


def test_python_client_generates_every_operation_without_warning(document_file, tmp_path):
    config = tmp_path / "client.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: only what the generator itself says
    generator = Path(sys.executable).parent / "openapi-python-client"
    result, output = _run([str(generator), "generate", "--path", str(document_file), "--output-path",
                           str(tmp_path / "client"), "--meta", "none", "--config", str(config)], cwd=tmp_path)
    assert result.returncode == 0 and "Warning" not in output and "Unable" not in output, output
    generated = {p.stem for p in (tmp_path / "client" / "api").rglob("*.py") if p.stem != "__init__"}
    operations = {op["operationId"] for ops in api_document()["paths"].values() for op in ops.values()}
    assert generated == operations
    styles = (tmp_path / "client" / "api" / "catalog" / "styles_list_get.py").read_text()
    assert "StylesAnswer" in styles and "StyleAnswer" in styles  # both shapes of styles-list, typed


def _typescript_project(tmp_path: Path, document: dict, program: str | None = None) -> Path:
    """journey.ts (or `program` in its place) beside the types openapi-typescript generates from `document`."""
    project = tmp_path / "ts"
    project.mkdir()
    for name in ("package.json", "tsconfig.json", "journey.ts"):
        shutil.copy(TOOLS / name, project / name)
    if program is not None:
        (project / "journey.ts").write_text(program)
    (project / "node_modules").symlink_to(TOOLS / "node_modules")
    (project / "openapi.json").write_text(json.dumps(document))
    result, output = _run([_tool("openapi-typescript"), "openapi.json", "-o", "api.d.ts"], cwd=project)
    assert result.returncode == 0, output
    return project


def _type_check(project: Path):
    return _run([_tool("tsc"), "-p", "."], cwd=project)


def test_the_generated_types_refuse_a_wrong_body(tmp_path):
    """The types mean something: a generate request without upload_id, or with an unknown field, or a
    notifications-read body of the wrong shape does not compile."""
    wrong = """import createClient from "openapi-fetch";
import type { paths } from "./api.js";
const api = createClient<paths>({ baseUrl: "http://127.0.0.1:1" });
await api.POST("/interiors-generate", { body: { room_type: "living-room", style: "japandi" } });
await api.POST("/notifications-read", { body: { all: false } });
await api.POST("/interiors-save", { body: { interior_id: "x", saved: "yes" } });
"""
    project = _typescript_project(tmp_path, api_document(), wrong)
    result, output = _type_check(project)
    assert result.returncode != 0
    assert "journey.ts(4," in output and "journey.ts(5," in output and "journey.ts(6," in output, output


@pytest.mark.e2e
def test_typescript_journey_type_checks_under_strict_and_runs_against_the_stack(live_server, tmp_path):
    served = requests.get(f"{live_server}/openapi", timeout=30).json()  # what a frontend team would download
    project = _typescript_project(tmp_path, served)
    result, output = _type_check(project)
    assert result.returncode == 0, output
    photo = tmp_path / "room.jpg"
    photo.write_bytes(photos.image_bytes("JPEG", 960, 720))
    env = {**NODE_ENV, "API_BASE_URL": live_server, "ROOM_PHOTO": str(photo)}
    node = shutil.which("node")
    assert node is not None, "node is needed for the typed-client journey"
    result, output = _run([node, "out/journey.js"], cwd=project, timeout=300, env=env)
    assert result.returncode == 0, output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["variants"] == 1 and summary["parts"] > 0 and summary["matched"] > 0, summary
    assert summary["saved"] is True and summary["interior"] in summary["recent_saved"], summary
    assert summary["unread_after"] == 0 and summary["name"] == "Renamed" and summary["search"] > 0, summary
    assert set(summary["box"]) == {"x", "y", "width", "height"}, summary
