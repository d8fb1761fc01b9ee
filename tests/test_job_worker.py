"""The local job runner's warm worker: loaded ahead of its execution, it still runs that execution exactly as a
fresh process would (its environment, its log, its exit code), and only jobs that ask for one get one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lib import discovery
from lib.local import job_runner

JOB = '''
import os, sys
from lib.config import get_settings

WARM_LOCAL_JOB = False  # no models to load in this test job
LOADED_WITH = get_settings().mongodb_db  # read before the execution exists


def main(argv):
    print(json.dumps({"argv": argv, "marker": os.environ.get("MARKER"), "loaded_with": LOADED_WITH,
                      "db_now": get_settings().mongodb_db, "shard": os.environ.get("CLOUD_RUN_TASK_INDEX")}))
    print("to stderr", file=sys.stderr)
    return 3

import json
'''


def test_a_warm_worker_runs_its_execution_with_the_environment_it_is_handed(tmp_path):
    script = tmp_path / "main.py"
    script.write_text(JOB)
    log = tmp_path / "execution.log"
    base = {k: v for k, v in os.environ.items() if k != "MONGODB_DB"}
    worker = subprocess.Popen([sys.executable, "-m", "lib.local.job_worker", str(script)], cwd=str(discovery.ROOT),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**base, "PYTHONPATH": str(discovery.ROOT), "MONGODB_DB": "at-spawn"})
    env = {**base, "PYTHONPATH": str(discovery.ROOT), "MONGODB_DB": "at-hand-over", "MARKER": "m1",
           "CLOUD_RUN_TASK_INDEX": "0"}
    execution = {"args": ["--interior", "abc"], "env": env, "log": str(log)}
    out, _ = worker.communicate(json.dumps(execution).encode() + b"\n", timeout=60)
    assert worker.returncode == 3
    assert out == b""  # everything the execution writes goes to its own log
    lines = log.read_text().splitlines()
    assert json.loads(lines[0]) == {"argv": ["--interior", "abc"], "marker": "m1", "loaded_with": "at-spawn",
                                    "db_now": "at-hand-over", "shard": "0"}
    assert lines[1] == "to stderr"


def test_a_worker_whose_runner_went_away_exits_without_running_anything(tmp_path):
    script = tmp_path / "main.py"
    script.write_text(JOB)
    worker = subprocess.run([sys.executable, "-m", "lib.local.job_worker", str(script)], cwd=str(discovery.ROOT),
                            input=b"", capture_output=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(discovery.ROOT)})
    assert worker.returncode == 0 and b"argv" not in worker.stdout


def test_only_the_generation_job_keeps_a_warm_worker():
    assert job_runner._wants_warm("generate-interior")
    assert not job_runner._wants_warm("import-catalog")


def test_the_generation_jobs_warm_worker_loads_its_models_and_waits_for_work():
    """The generation job's worker warms the local providers up and stays ready: a warm-up that fails leaves
    every execution to a fresh process, silently paying the start-up the worker exists to save."""
    worker = subprocess.run(
        [sys.executable, "-m", "lib.local.job_worker", str(discovery.job_script("generate-interior"))],
        cwd=str(discovery.ROOT), input=b"", capture_output=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(discovery.ROOT), "GENERATOR": "local", "DETECTOR": "local",
             "EMBEDDER": "local"})
    assert worker.returncode == 0, worker.stdout.decode()[-2000:] + worker.stderr.decode()[-2000:]
    assert b"Traceback" not in worker.stdout + worker.stderr


def test_a_warm_worker_that_died_before_its_execution_is_reported_and_not_used(caplog):
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"], stdin=subprocess.PIPE)
    dead.wait(timeout=30)
    job_runner._warm["some-job"] = dead
    with caplog.at_level("WARNING", logger="zipkku.jobs"):
        assert job_runner._take_warm("some-job") is None  # the runner starts a fresh process instead
    assert "warm some-job worker exited with 1 before taking work" in caplog.text


def test_a_worker_whose_warm_up_fails_still_runs_the_execution_it_was_handed(tmp_path):
    """The runner may hand an execution over while the worker still loads: a failed warm-up must cost that
    execution its head start, never the execution itself (nothing would run it until the next sweep)."""
    script = tmp_path / "main.py"
    script.write_text("WARM_LOCAL_JOB = True\n\n\ndef main(argv):\n    print('ran', argv)\n    return 0\n")
    log = tmp_path / "execution.log"
    base = {**os.environ, "PYTHONPATH": str(discovery.ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "lib.local.job_worker", str(script)], cwd=str(discovery.ROOT),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**base, "DETECTOR_MAX_PARTS": "0"})  # the warm-up's settings are refused
    execution = {"args": ["--interior", "abc"], "env": base, "log": str(log)}
    out, _ = worker.communicate(json.dumps(execution).encode() + b"\n", timeout=60)
    assert b"warm-up failed" in out
    assert worker.returncode == 0 and log.read_text().splitlines() == ["ran ['--interior', 'abc']"]
