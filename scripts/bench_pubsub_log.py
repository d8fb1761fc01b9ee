"""How fast the Pub/Sub emulator's log grows while `make run` idles, with the stack's quiet logging config
(scripts/pubsub-logging.properties) and with the emulator's default (java.util.logging at INFO), side by side.

Idle is not silent: the storage-event bridge pulls its subscription every 0.25 s over one keep-alive session,
which is what this replays against both emulators at once.

    .venv/bin/python scripts/bench_pubsub_log.py --seconds 120
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.localstack import PubSubEmulator  # noqa: E402


class DefaultLoggingEmulator(PubSubEmulator):
    """The emulator as it logs out of the box."""

    def __init__(self, project: str, log_path: Path, config: Path) -> None:
        super().__init__(project, log_path)
        self.config = config

    def child_env(self) -> dict[str, str]:
        return {"JAVA_OPTS": f"-Djava.util.logging.config.file={self.config}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--interval", type=float, default=0.25, help="the bridge's pull interval")
    args = parser.parse_args()
    if not PubSubEmulator.available():
        print("the Pub/Sub emulator is not installed here", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="zipkku-bench-") as tmp:
        root = Path(tmp)
        default_config = root / "default-logging.properties"
        default_config.write_text("handlers=java.util.logging.ConsoleHandler\n"
                                  "java.util.logging.ConsoleHandler.level=ALL\n.level=INFO\n")
        logs = {"quiet (make run)": root / "quiet.log", "default": root / "default.log"}
        emulators = {"quiet (make run)": PubSubEmulator("bench", logs["quiet (make run)"]),
                     "default": DefaultLoggingEmulator("bench", logs["default"], default_config)}
        try:
            for emulator in emulators.values():
                emulator.start()
                emulator.create_topic("bench-topic")
                emulator.create_subscription("bench-sub", "bench-topic")
            sessions = {name: requests.Session() for name in emulators}
            before = {name: log.stat().st_size for name, log in logs.items()}
            deadline = time.monotonic() + args.seconds
            pulls = 0
            while time.monotonic() < deadline:
                for name, emulator in emulators.items():
                    sessions[name].post(f"http://{emulator.host}/v1/projects/bench/subscriptions/bench-sub:pull",
                                        json={"maxMessages": 20, "returnImmediately": True}, timeout=30)
                pulls += 1
                time.sleep(args.interval)
            grown = {name: log.stat().st_size - before[name] for name, log in logs.items()}
        finally:
            for emulator in emulators.values():
                emulator.stop()
    per_hour = {name: round(size * 3600 / args.seconds) for name, size in grown.items()}
    print(json.dumps({"seconds": args.seconds, "pulls": pulls, "log_bytes_grown": grown,
                      "log_bytes_per_hour": per_hour}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
