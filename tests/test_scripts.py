"""The benchmarks in scripts/ stay runnable: each one's module imports and its command line parses.

mypy (`make typecheck`) checks that what a benchmark calls exists with that signature; this catches what it
cannot: a top-level import that fails at run time, a parser that argparse refuses (a conflicting or badly
formatted option). Every bench_*.py runs as `python scripts/bench_x.py --help` would, all in ONE child process
(each prints its usage and exits before measuring anything), so the whole check takes a few seconds and no
bench's environment changes (some set os.environ at import) reach the test process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scripts.localstack import ROOT

BENCHES = sorted(path.stem for path in (ROOT / "scripts").glob("bench_*.py"))

# Runs each bench as __main__ with argv [path, "--help"]; one JSON line per bench: exit code and output.
DRIVER = """
import contextlib, io, json, runpy, sys, traceback

for path in sys.argv[1:]:
    out = io.StringIO()
    sys.argv = [path, "--help"]
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as exc:
            code = exc.code or 0
        except BaseException:
            traceback.print_exc()
            code = "raised"
    print(json.dumps({"path": path, "code": code, "output": out.getvalue()}), flush=True)
"""


@pytest.fixture(scope="module")
def help_runs() -> dict[str, dict]:
    paths = [str(ROOT / "scripts" / f"{name}.py") for name in BENCHES]
    done = subprocess.run([sys.executable, "-c", DRIVER, *paths], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    runs = {}
    for line in done.stdout.splitlines():
        if line.startswith('{"path"'):
            run = json.loads(line)
            runs[run["path"].rsplit("/", 1)[-1].removesuffix(".py")] = run
    assert done.returncode == 0, done.stderr[-3000:]
    return runs


def test_every_benchmark_is_found() -> None:
    assert len(BENCHES) >= 10, BENCHES  # the glob still points at scripts/


@pytest.mark.parametrize("name", BENCHES)
def test_benchmark_imports_and_its_help_parses(help_runs: dict[str, dict], name: str) -> None:
    run = help_runs[name]
    assert run["code"] == 0, run["output"][-3000:]
    assert run["output"].startswith("usage: "), run["output"][-3000:]
