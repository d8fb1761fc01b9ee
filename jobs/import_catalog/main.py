"""Cloud Run Job `import-catalog`: import one catalog file (CSV or JSON Lines) into Mongo + Qdrant.

    python jobs/import_catalog/main.py --source gs://zipkku-catalog/catalog/acme.csv [--import-id ID] [--name N]

(with the repo root on PYTHONPATH). Each shard of an execution (lib.cloudrun.current_shard) takes its share of
the rows; progress goes to the
log, final counts to stdout (one JSON line) and to the `imports` document, a failure to the log (one structured
line with "status": "failed"). Exit code 0 even when rows were skipped (they are reported with line numbers); 1
when the file itself could not be read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lib import catalog_import, cloudrun, db  # noqa: E402
from lib.log import setup_logging  # noqa: E402

log = logging.getLogger("zipkku.import")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="gs://bucket/object or a local path (.csv/.jsonl/.json)")
    parser.add_argument("--import-id", default=None, help="the imports document to record into")
    parser.add_argument("--name", default=None, help="catalog name for stable product ids (default: file stem)")
    args = parser.parse_args(argv)
    setup_logging()
    index, count = cloudrun.current_shard()
    import_id = args.import_id or os.environ.get("CLOUD_RUN_EXECUTION") or db.new_id()
    try:
        result = catalog_import.run_import(args.source, import_id=import_id, task_index=index, task_count=count,
                                           name=args.name)
    except Exception as exc:  # noqa: BLE001 - unreadable file, missing object (google NotFound), store down
        # the same reason run_import recorded in the imports document, through the redacting log handler: the
        # error text can quote the source URI or a connection string
        log.error("import %s failed: %s", import_id, f"{type(exc).__name__}: {exc}"[:500],
                  extra={"json_fields": {"import_id": import_id, "status": "failed"}})
        return 1
    summary = {k: result[k] for k in (*catalog_import.COUNTS, "seconds")}
    print(json.dumps({"import_id": import_id, "task_index": index, "task_count": count, **summary,
                      "errors": result["errors"][:20]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
