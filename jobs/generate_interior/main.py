"""Cloud Run Job `generate-interior`: run the generation pipeline (lib.generation) for queued interiors.

    python jobs/generate_interior/main.py                                      # every claimable interior
    python jobs/generate_interior/main.py --interior ID [--interior ID ...]   # only these (operators, tests)

Cloud Tasks (one task per interior) and the Cloud Scheduler sweep both start it without arguments: a run takes
the interiors queued in Mongo and those whose lease expired, so the identity that starts it needs no override
permission and a task cannot choose what the worker does.

With several shards per execution (Cloud Run's tasks: CLOUD_RUN_TASK_INDEX of CLOUD_RUN_TASK_COUNT), each
shard takes its own share of the interiors. Prints a JSON summary line; exits 0 unless the job itself could not
run, because a failed interior is a recorded result, not a crash to be retried.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from lib import generation  # noqa: E402
from lib.log import setup_logging  # noqa: E402

# Locally (JOB_RUNNER=local) a warm process with this script and the local models loaded takes the next
# execution (lib/local/job_runner.py); on Cloud Run every execution starts a fresh container.
WARM_LOCAL_JOB = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interior", action="append", default=[], help="interior id (repeatable)")
    args = parser.parse_args(argv)
    setup_logging()
    summary = generation.run(args.interior or None)
    print(json.dumps({"job": "generate-interior", **summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
