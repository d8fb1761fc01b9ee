"""A warm local job process: loaded before its execution exists, it runs exactly one execution, then exits.

    python -m lib.local.job_worker jobs/generate_interior/main.py     (started by lib.local.job_runner)

A Cloud Run Job execution on a fresh local subprocess pays for Python's start, the job's imports and, for the
generation job, the local models (ONNX sessions) before any work: about a second per generation. A warm
worker pays that ahead of time: it imports the job script, creates the local providers the settings select and
runs their models once on a small picture (no catalog, no database), then blocks on stdin. The runner hands it
one execution as one JSON line {"args": [...], "env": {...}, "log": path}: the worker takes that environment
(the settings are read again), sends its output to the execution's log and runs the script's `main(args)`; its
exit code is the execution's. One execution per process, as on Cloud Run: nothing carries over from one
execution to the next but the loaded code and models. If the runner goes away the worker reads end-of-file and
exits. A warm-up that fails is logged, and the execution handed over still runs (loading what it needs itself).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import traceback


def warm_up_local_providers() -> None:
    """Load what the first interior would otherwise load: the clients' libraries (Cloud Storage, Qdrant; no
    connection is made, the execution's environment may point elsewhere), and the local generator, detector and
    embedder with each model run once on a small picture. Nothing here reads the catalog or calls a provider:
    only local (offline) models are touched, never a paid call."""
    import google.cloud.storage  # noqa: F401
    from qdrant_client import QdrantClient

    # a throwaway client does qdrant-client's once-per-process set-up (it sends no request); the execution
    # creates its own client for the URL it is given
    QdrantClient(url="http://127.0.0.1:9", check_compatibility=False).close()

    from lib.config import get_settings

    settings = get_settings()
    if "local" not in (settings.generator, settings.detector, settings.embedder):
        return
    from PIL import Image

    from lib import providers
    from lib.embed import get_embedder

    picture = Image.new("RGB", (160, 120), (200, 190, 170))
    picture.paste((120, 90, 60), (0, 80, 160, 120))  # a floor
    picture.paste((60, 80, 120), (50, 55, 110, 100))  # something standing on it
    if settings.embedder == "local":
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG")
        get_embedder().embed_images([buffer.getvalue()])
    if "local" in (settings.generator, settings.detector):
        from lib.local.detector import analyse

        analyse(picture)  # the segmentation both use (scikit-image, scipy), without the catalog's labels
    if settings.detector == "local":
        providers.detector()
    if settings.generator == "local":
        providers.generator()


def load_script(script: str):
    spec = importlib.util.spec_from_file_location("_local_job", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve_one(script: str) -> int:
    module = load_script(script)
    if getattr(module, "WARM_LOCAL_JOB", False):
        try:
            warm_up_local_providers()
        except Exception:  # noqa: BLE001 - the runner may have handed an execution over already: still run it
            traceback.print_exc()
            print("warm-up failed; the execution will load what it needs itself", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        return 0  # the runner went away before giving work
    execution = json.loads(line)
    os.environ.clear()
    os.environ.update(execution["env"])
    from lib.config import get_settings

    get_settings.cache_clear()
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(execution["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.argv = [script, *execution["args"]]
    code = module.main(execution["args"])
    sys.stdout.flush()
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(serve_one(sys.argv[1]))
