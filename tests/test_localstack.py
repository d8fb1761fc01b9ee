"""`make run` as a tool people run all day: nothing it starts outlives it, whatever ends it (SIGKILL, a closed
terminal, a double Ctrl-C, make's doubled SIGTERM); a second start on a busy folder refuses and names the holder;
leftovers of a dead stack are cleared; a component that cannot start says why; and the generation sweep
finishes a generation whose job was killed."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from scripts.journey import Journey, room_photo
from scripts.localstack import (
    ChildServer,
    ComponentFailed,
    StackLock,
    clear_leftovers,
    free_port,
    local_server_command,
    process_start_time,
    spawn,
    stop_process,
    wait_for_port,
    write_pidfile,
)
from tests.doubles import ReplicateDouble

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; parent-death signal")

QUICK = {"DEMO_CATALOG_PER_LABEL": "0", "ARGON2_MEMORY_KIB": "1024", "ARGON2_TIME_COST": "1",
         "LOCAL_SWEEP_SECONDS": "0"}
START_TIMEOUT = 240.0  # a whole stack on a loaded 2-core machine


# --- processes, seen from /proc ---------------------------------------------------------------------------

def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`: PID -> start time (so a reused PID never counts as the same one)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            started = process_start_time(child)
            if started is not None:
                found[child] = started
                todo.append(child)
    return found


def still_running(processes: dict[int, str]) -> dict[int, str]:
    return {pid: started for pid, started in processes.items() if process_start_time(pid) == started}


def wait_until_gone(processes: dict[int, str], timeout: float = 30.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (alive := still_running(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def cmdlines(processes: dict[int, str]) -> list[str]:
    lines = []
    for pid in processes:
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160])
    return lines


def kill_leftovers(processes: dict[int, str]) -> None:
    """A failed test must not leave servers behind on the machine either."""
    for pid in still_running(processes):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- a `make run` of our own ----------------------------------------------------------------------------

def start_runner(local_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv, base_env = local_server_command(local_dir, port)
    local_dir.mkdir(parents=True, exist_ok=True)
    return spawn(argv, local_dir / "run_local.log", env=env, base_env=base_env), port


def wait_ready(proc: subprocess.Popen, port: int, local_dir: Path) -> None:
    try:
        wait_for_port(port, proc, timeout=START_TIMEOUT, name="run_local.py")
    except (RuntimeError, TimeoutError):
        print((local_dir / "run_local.log").read_text()[-4000:])
        raise


class Terminal:
    """scripts/run_local.py in a pseudo-terminal, as a person runs `make run`: it leads the terminal's session
    and foreground process group, so ^C makes the kernel send SIGINT and closing the terminal sends SIGHUP."""

    def __init__(self, local_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        argv, base_env = local_server_command(local_dir, self.port)
        full_env = {**base_env, **env}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a fresh terminal's dispositions (pytest may run where SIGINT is ignored)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            os.execve(argv[0], argv, full_env)  # noqa: S606 - our own argv, no shell wanted
        self.output = b""
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.returncode: int | None = None

    def _read(self) -> None:
        # select with a timeout, not a blocking read: a read in progress would keep the terminal open after close()
        while not self._closing.is_set():
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the other side is gone
                return
            if not chunk:
                return
            self.output += chunk

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def wait_for_text(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout}s; terminal shows:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def close(self) -> None:
        """Close the terminal (its window): the last descriptor of the master side goes, and the kernel hangs up."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._reader.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                return self.returncode
            time.sleep(0.05)
        raise AssertionError(f"run_local.py still running after {timeout}s:\n{self.text()[-3000:]}")

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        self.close()


# --- components -------------------------------------------------------------------------------------------

class _Failing(ChildServer):
    name = "Broken server"

    def argv(self) -> list[str]:
        return [sys.executable, "-c",
                "import sys; print('starting'); print('fatal: storage is locked by another process'); sys.exit(3)"]


def test_a_component_that_cannot_start_shows_the_end_of_its_own_log(tmp_path):
    server = _Failing(tmp_path / "broken.log")
    server.pid_dir = tmp_path / "pids"
    with pytest.raises(ComponentFailed) as failed:
        server.start()
    message = str(failed.value)
    assert "Broken server exited with 3 before listening" in message
    assert "fatal: storage is locked by another process" in message and "broken.log" in message
    assert not list((tmp_path / "pids").glob("*.pid"))  # nothing recorded as running


def test_make_run_says_why_secantusdb_cannot_start(tmp_path):
    """The failure people met: a SecantusDB nobody tracks (here started by hand) holds the data folder; the
    stack's own SecantusDB exits at once, and the reason, in its log, must reach the terminal."""
    local_dir = tmp_path / "stack"
    (local_dir / "mongo").mkdir(parents=True)
    squatter = spawn([str(Path(sys.executable).parent / "secantusd-py"), "--host", "127.0.0.1", "--port",
                      str(squatter_port := free_port()), "--storage-path", str(local_dir / "mongo")])
    try:
        wait_for_port(squatter_port, squatter, timeout=60, name="SecantusDB")
        argv, base_env = local_server_command(local_dir, free_port())
        result = subprocess.run(argv, env={**base_env, **QUICK}, capture_output=True, text=True, timeout=180)
    finally:
        stop_process(squatter)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SecantusDB exited with 1 before listening" in result.stdout
    assert "logs/mongo.log" in result.stdout and "already being managed by another process" in result.stdout


def test_a_second_stack_on_a_busy_folder_refuses_and_names_the_holder(tmp_path):
    local_dir = tmp_path / "stack"
    lock = StackLock(local_dir).acquire()  # this test process plays the running stack
    try:
        argv, base_env = local_server_command(local_dir, free_port())
        result = subprocess.run(argv, env={**base_env, **QUICK}, capture_output=True, text=True, timeout=120)
    finally:
        lock.release()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"another local stack (PID {os.getpid()}) is running on {local_dir}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (local_dir / "pids").exists() or not list((local_dir / "pids").glob("*.pid"))


def test_a_stale_lock_and_stale_pidfiles_do_not_block_and_only_our_leftovers_are_stopped(tmp_path):
    local_dir = tmp_path / "stack"
    local_dir.mkdir()
    (local_dir / "stack.lock").write_text("999999\n")  # a dead stack's lock file: nobody holds the flock
    StackLock(local_dir).acquire().release()

    pid_dir = local_dir / "pids"
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        write_pidfile(pid_dir / "secantusdb.pid", "SecantusDB", leftover)
        # a PID that now names another process (ours, started at another time) must not be signalled
        (pid_dir / "reused.pid").write_text(f'{{"name": "Qdrant stand-in", "pid": {os.getpid()}, "start_time": "1"}}')
        (pid_dir / "broken.pid").write_text("not json")
        cleared = clear_leftovers(pid_dir)
        assert cleared == [f"stopped SecantusDB (PID {leftover.pid}), left running by a previous stack"]
        assert leftover.wait(timeout=15) == -signal.SIGTERM
        assert not list(pid_dir.glob("*.pid"))
    finally:
        stop_process(leftover)


# --- whatever ends `make run`, nothing stays ------------------------------------------------------------

def test_sigkill_of_the_runner_takes_every_component_with_it(tmp_path):
    local_dir = tmp_path / "stack"
    proc, port = start_runner(local_dir, QUICK)  # with the Pub/Sub emulator where this machine has it
    children: dict[int, str] = {}
    try:
        wait_ready(proc, port, local_dir)
        children = descendants(proc.pid)
        names = " ".join(cmdlines(children))
        assert all(name in names for name in ("secantusd", "qdrant_local.py", "fake-gcs-server", "gcs_front.py"))
        os.kill(proc.pid, signal.SIGKILL)  # no handler of ours runs
        proc.wait(timeout=30)
        assert wait_until_gone(children) == {}, cmdlines(still_running(children))
    finally:
        stop_process(proc)
        kill_leftovers(children)


def test_closing_the_terminal_stops_the_stack_and_a_new_one_clears_a_dead_ones_leftovers(tmp_path):
    local_dir = tmp_path / "stack"
    # what a stack that died on a machine without the parent-death signal leaves: a live server and its pidfile
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    write_pidfile(local_dir / "pids" / "qdrant-stand-in.pid", "Qdrant stand-in", leftover)
    terminal = Terminal(local_dir, {**QUICK, "LOCAL_PUBSUB": "0"})
    children: dict[int, str] = {}
    try:
        terminal.wait_for_text("dev server on", START_TIMEOUT)
        assert f"stopped Qdrant stand-in (PID {leftover.pid}), left running by a previous stack" in terminal.text()
        assert leftover.wait(timeout=15) == -signal.SIGTERM
        # what runs where, at start
        assert "SecantusDB" in terminal.text() and "logs/mongo.log" in terminal.text()
        children = descendants(terminal.pid)
        assert len(children) >= 3
        terminal.close()  # the terminal window closes: the kernel sends SIGHUP
        terminal.wait(timeout=60)
        assert wait_until_gone(children) == {}, cmdlines(still_running(children))
        assert not list((local_dir / "pids").glob("*.pid"))  # stopped in order, each pidfile removed
    finally:
        terminal.kill()
        stop_process(leftover)
        kill_leftovers(children)


def test_a_double_ctrl_c_in_the_terminal_still_stops_every_component(tmp_path):
    local_dir = tmp_path / "stack"
    terminal = Terminal(local_dir, {**QUICK, "LOCAL_PUBSUB": "0"})
    children: dict[int, str] = {}
    try:
        terminal.wait_for_text("dev server on", START_TIMEOUT)
        requests.get(f"http://127.0.0.1:{terminal.port}/no-such-function", timeout=30)
        terminal.wait_for_text("GET /no-such-function -> 404", 30)
        assert "\x1b[" not in terminal.text()  # request lines carry no colour codes
        children = descendants(terminal.pid)
        terminal.type(b"\x03")
        terminal.wait_for_text("local stack: stopping", 30)
        terminal.type(b"\x03")  # impatient: a second Ctrl-C while it stops
        assert terminal.wait(timeout=60) == 0
        assert wait_until_gone(children) == {}, cmdlines(still_running(children))
        assert "local stack: stopped" in terminal.text()
        assert not list((local_dir / "pids").glob("*.pid"))
    finally:
        terminal.kill()
        kill_leftovers(children)


# --- the generation sweep --------------------------------------------------------------------------------

def _job_processes(runner_pid: int) -> list[int]:
    return [pid for pid in descendants(runner_pid)
            if "generate_interior/main.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]


def test_the_sweep_finishes_a_generation_whose_job_was_killed(tmp_path):
    replicate = ReplicateDouble().start()
    replicate.plan = ["never"]  # the first provider call hangs, so the job is surely mid-generation when killed
    local_dir = tmp_path / "stack"
    env = {**QUICK, "DEMO_CATALOG_PER_LABEL": "2", "LOCAL_PUBSUB": "0", "LOCAL_SWEEP_SECONDS": "2",
           "JOB_LEASE_SECONDS": "10", "GENERATOR": "replicate", "REPLICATE_API_URL": f"{replicate.url}/v1",
           "REPLICATE_API_TOKEN": replicate.token, "REPLICATE_POLL_SECONDS": "0.2"}
    proc, port = start_runner(local_dir, env)
    children: dict[int, str] = {}
    try:
        wait_ready(proc, port, local_dir)
        journey = Journey(f"http://127.0.0.1:{port}")
        journey.account()
        upload = journey.upload(room_photo())
        style, room_type = journey.pick_style()
        accepted = journey.call("POST", "interiors-generate", 202, json={
            "upload_id": upload["id"], "style": style, "room_type": room_type, "variants": 1})
        interior_id = accepted.json()["interior"]["id"]

        deadline = time.monotonic() + 120
        while not replicate.creates and time.monotonic() < deadline:
            time.sleep(0.1)
        assert replicate.creates, "the job never called the provider"
        jobs = _job_processes(proc.pid)  # the task's run (and a sweep's, if one was starting)
        assert jobs
        for pid in jobs:
            os.kill(pid, signal.SIGKILL)  # the job dies mid-generation; nothing of ours runs
        interior = journey.call("GET", "interiors-get", 200, params={"id": interior_id}).json()["interior"]
        assert interior["status"] == "running"

        deadline = time.monotonic() + 180  # lease (10 s) + sweep beat (2 s) + a generation, on a loaded machine
        while interior["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            interior = journey.call("GET", "interiors-get", 200, params={"id": interior_id}).json()["interior"]
        assert interior["status"] == "done", interior
        assert len(replicate.creates) == 2  # the sweep ran it again, through the provider
        # and said so in the terminal
        deadline = time.monotonic() + 60
        while not re.search(r"generation sweep \S+: done 1", (local_dir / "run_local.log").read_text()):
            assert time.monotonic() < deadline, (local_dir / "run_local.log").read_text()[-3000:]
            time.sleep(0.5)
        terminal = (local_dir / "run_local.log").read_text()  # not a terminal here: Cloud Logging's JSON lines
        # what runs where, the seed's progress, the task's job starting and dying, the requests without colours
        assert re.search(r"SecantusDB +127\.0\.0\.1:\d+ +\S*logs/mongo\.log", terminal)
        assert "generation sweep  every 2 s" in terminal
        assert "demo catalog: embedding and importing" in terminal
        # a generation task starts the job without arguments (it claims queued interiors), as Cloud Tasks does
        assert re.search(r"job generate-interior-\w+ started", terminal)
        assert re.search(r"job generate-interior-\w+ failed after [\d.]+ s \(exit -9\)", terminal)
        assert "POST /interiors-generate -> 202" in terminal and "\\u001b" not in terminal

        # make forwards SIGTERM to the process group it already signalled: two SIGTERMs in a row
        children = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert wait_until_gone(children) == {}, cmdlines(still_running(children))
    finally:
        stop_process(proc)
        kill_leftovers(children)
        replicate.stop()
