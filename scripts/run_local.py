"""`make run`: start the local stack on its embedded defaults and serve every function on one port.

SecantusDB (and, as they are added, the other local components) run as children of this process with their
data under `.local/`; Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.localstack import ROOT, LocalStack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--local-dir", default=os.environ.get("LOCAL_DIR", str(ROOT / ".local")))
    args = parser.parse_args()

    stack = LocalStack(Path(args.local_dir).resolve(), persistent=True)
    bridge = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.start()
        os.environ.update(stack.env)
        # EVENTS=local pushes each message to its subscribed functions on this server (lib/local/events.py)
        os.environ["LOCAL_EVENTS_PUSH_URL"] = f"http://127.0.0.1:{args.port}"
        from scripts import devserver, seed

        seed.prepare_local(stack)
        # Finalized objects -> CloudEvent functions (Eventarc's job in production); retries until the server is up.
        from scripts.storage_events import StorageEventBridge, pending_upload_objects

        bridge = StorageEventBridge.from_env(f"http://127.0.0.1:{args.port}").start(backlog=pending_upload_objects())
        devserver.serve("127.0.0.1", args.port)
    except KeyboardInterrupt:
        pass
    finally:
        if bridge is not None:
            bridge.stop()
        stack.stop()


if __name__ == "__main__":
    main()
