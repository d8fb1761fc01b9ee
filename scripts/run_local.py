"""`make run`: start the local stack on its embedded defaults and serve every function on one port.

SecantusDB, the Qdrant stand-in, fake-gcs-server and (where installed) the Pub/Sub emulator run as children of
this process with their data under `.local/`; it prints what runs where, seeds the demo catalog, sweeps for
generations whose run died (Cloud Scheduler's job in production) and serves the functions.

Whatever ends it, nothing stays behind: Ctrl-C (once or twice), SIGTERM (make forwards it too, so it may come
twice), a closed terminal (SIGHUP) stop every component in order; SIGKILL leaves that to the kernel's
parent-death signal; and a new start on the same folder refuses while another stack holds it (naming its PID)
and clears what a dead one left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.localstack import ROOT, ComponentFailed, LocalStack, StackBusy, shown_path  # noqa: E402


def say(text: str) -> None:
    """A line for the person at the terminal; a closed terminal (SIGHUP) must not stop the shutdown."""
    with contextlib.suppress(OSError, ValueError):
        print(text, flush=True)


class Stopping(KeyboardInterrupt):
    """Raised by the first stop signal (a KeyboardInterrupt, so every layer that lets Ctrl-C through lets it)."""


def _ignore_stop_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def install_stop_signals() -> None:
    """The first SIGINT, SIGTERM or SIGHUP starts the shutdown; the ones after it (a second Ctrl-C, make's
    forwarded SIGTERM) are ignored, so they cannot interrupt the shutdown half-way and orphan a component.
    A signal that was ignored when we started (SIGINT in a background job, SIGHUP under nohup) stays ignored."""

    def stop(signum: int, _frame) -> None:
        _ignore_stop_signals()
        raise Stopping(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig == signal.SIGTERM or signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, stop)


class GenerationSweep:
    """Cloud Scheduler's job (terraform/scheduler.tf) for the local stack: every `interval` seconds one execution
    of the generation job with no arguments, which re-runs interiors whose run died (their lease expired) and
    fails, with a refund, those out of attempts. A beat is skipped while the previous sweep still runs. Only
    sweeps that found work print a line (each execution's log is in logs/jobs/)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GenerationSweep:
        self._thread = threading.Thread(target=self._run, name="generation-sweep", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import logging

        from lib.config import get_settings
        from lib.local import job_runner

        log = logging.getLogger("zipkku.sweep")
        while not self._stop.wait(self.interval):
            try:
                execution_id = job_runner.run_job(get_settings().generate_job_name, [], {}, 1, announce=False,
                                                  warm=False)
                execution = job_runner.wait(execution_id)
            except Exception:  # noqa: BLE001 - the next beat tries again, as Cloud Scheduler would
                log.exception("generation sweep could not run")
                continue
            result = job_runner.summary(execution) or {}
            if self._stop.is_set():  # stopped with the stack: nothing to report
                return
            if not execution.succeeded:
                log.warning("generation sweep %s failed (exit %s); see %s", execution.id,
                            ",".join(map(str, execution.exit_codes)), shown_path(execution.log_path))
            elif any(result.get(k) for k in ("done", "failed", "lost", "announced")):
                log.info("generation sweep %s: %s", execution.id,
                         ", ".join(f"{k} {result.get(k, 0)}" for k in ("done", "failed", "lost", "announced")))
            else:  # nothing to do: no line, and no log file per minute piling up in logs/jobs/
                execution.log_path.unlink(missing_ok=True)


def startup_block(stack: LocalStack, port: int, sweep_seconds: float, events: tuple[str, str]) -> str:
    """What runs where: each component with its address and log file, then what this process does itself."""
    jobs_log = shown_path(stack.local_dir / "logs" / "jobs") + "/"
    rows = [*stack.describe(),
            ("storage events", *events),
            ("generation sweep", f"every {sweep_seconds:g} s" if sweep_seconds > 0 else "off", jobs_log),
            ("functions", f"http://127.0.0.1:{port}", "this terminal (jobs: " + jobs_log + ")")]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"zipkku local stack, data in {shown_path(stack.local_dir)}/:"]
    lines += [f"  {name:<{widths[0]}}  {where:<{widths[1]}}  {log}" for name, where, log in rows]
    return "\n".join(lines)


def _cors_origins() -> list[str]:
    from lib.config import Settings

    return Settings(jwt_secret="x" * 32).cors_origins  # CORS_ORIGINS if set, else the default (Vite's origins)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--local-dir", default=os.environ.get("LOCAL_DIR", str(ROOT / ".local")))
    parser.add_argument("--sweep-seconds", type=float, default=float(os.environ.get("LOCAL_SWEEP_SECONDS", "60")),
                        help="how often the generation sweep runs (0: never)")
    parser.add_argument("--playground-port", type=int, default=None,
                        help="port of the playground page (default PLAYGROUND_PORT, else --port + 1 or, when that is "
                             "taken, any free one; 0: any free one)")
    args = parser.parse_args()
    playground_port = args.playground_port
    if playground_port is None and os.environ.get("PLAYGROUND_PORT"):
        playground_port = int(os.environ["PLAYGROUND_PORT"])

    install_stop_signals()
    stack = LocalStack(Path(args.local_dir).resolve(), persistent=True)
    bridge = sweep = playground = None
    try:
        from scripts import devserver

        try:
            playground = devserver.PlaygroundServer(
                args.port + 1 if playground_port is None else playground_port, f"http://127.0.0.1:{args.port}")
        except OSError as exc:
            if playground_port is not None:  # asked for: say so rather than serve elsewhere
                say(f"playground: cannot listen on 127.0.0.1:{playground_port} ({exc.strerror}); "
                    "set another PLAYGROUND_PORT")
                return 1
            playground = devserver.PlaygroundServer(0, f"http://127.0.0.1:{args.port}")  # the default was taken
        # The playground is a page of another origin, bound first so that the API and the storage front (started
        # below) allow it by CORS like the frontend's origins.
        os.environ["CORS_ORIGINS"] = ",".join([*_cors_origins(), playground.url])
        stack.start()
        for sentence in stack.cleared:
            say(f"local stack: {sentence}")
        os.environ.update(stack.env)
        devserver.configure_logging()  # after the stack's variables: it reads the settings
        # EVENTS=local pushes each message to its subscribed functions on this server (lib/local/events.py)
        os.environ["LOCAL_EVENTS_PUSH_URL"] = f"http://127.0.0.1:{args.port}"
        # Finalized objects -> CloudEvent functions (Eventarc's job in production); retries until the server is up.
        from scripts.storage_events import StorageEventBridge, pending_upload_objects

        bridge = StorageEventBridge.from_env(f"http://127.0.0.1:{args.port}")
        say(startup_block(stack, args.port, args.sweep_seconds, bridge.describe()))
        from scripts import seed

        seed.prepare_local(stack)
        from lib.config import get_settings
        from lib.local import job_runner

        job_runner.prewarm(get_settings().generate_job_name)  # the first generation finds its job loaded
        bridge.start(backlog=pending_upload_objects())
        if args.sweep_seconds > 0:
            sweep = GenerationSweep(args.sweep_seconds).start()
        playground.start()
        devserver.serve("127.0.0.1", args.port, playground_url=playground.url)
        return 0
    except KeyboardInterrupt:  # Ctrl-C, or Stopping from a stop signal
        return 0
    except (StackBusy, ComponentFailed) as exc:
        say(f"local stack: {exc}")
        return 1
    finally:
        _ignore_stop_signals()
        running = bool(stack.components)
        if running:
            say("local stack: stopping")
        if playground is not None:
            playground.stop()
        if sweep is not None:
            sweep.stop()
        if bridge is not None:
            bridge.stop()
        stack.stop()
        if running:
            say("local stack: stopped")


if __name__ == "__main__":
    sys.exit(main())
