"""Benchmark: signed links per answer on the production signing path (IAM signBlob, no key file), with the
local signBlob double (scripts/iam_double.py, a child process) answering after `--latency-ms`.

On a fresh local stack (in memory) with the demo catalog, one account, a design done with 1 and one with 4
variants (the local providers), 20 designs in the library and 6 of them saved, each answer below is
requested through its function (functions-framework, in this process) as:
  fresh   a fresh instance: no cached link, no signing credentials, token or IAM connection yet
  warm    the same instance again (links cached for this signing epoch)
and, side by side in the same run:
  serial  fresh, but signing one link after another (SIGNING_CONCURRENCY=1)
For each: signBlob calls (counted by the double) and latency p50/p95 in ms; `links` is the number of signed
links in the answer, which is what the code signed before, one round trip each, one after another. The warm
row signs nothing: it is the answer's own cost (products-search without a label sorts the whole catalog).

    .venv/bin/python scripts/bench_signing.py --latency-ms 50 --runs 10
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.localstack import ROOT, LocalStack, free_port, spawn, stop_process, wait_for_port  # noqa: E402

SIGNER = "zipkku-signer@zipkku-local.iam.gserviceaccount.com"


def client(name: str):
    import functions_framework

    return functions_framework.create_app(target=name, source=str(ROOT / "functions" / name / "main.py")).test_client()


def _one(collection: str, query: dict, **options) -> dict:
    """The first document of `collection` matching `query`; setup stops if there is none."""
    from lib import db

    doc = db.collection(collection).find_one(query, **options)
    if doc is None:
        raise SystemExit(f"setup: no document in {collection} matches {query}")
    return doc


def setup(per_label: int) -> dict:
    """Catalog, account, designs; signed with the local key (setup is not measured)."""
    from lib import db, generation, interiors, storage
    from lib.config import get_settings
    from scripts import demo_catalog
    from scripts.journey import room_photo

    demo_catalog.seed(per_label=per_label)
    email, password = "bench@example.com", "correct horse battery"
    assert client("auth_signup").post("/", json={"email": email, "password": password, "name": "B"}).status_code == 201
    tokens = client("auth_login").post("/", json={"email": email, "password": password}).get_json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    r = client("uploads_direct").post("/", data={"file": (io.BytesIO(room_photo()), "room.jpg", "image/jpeg")},
                                      headers=headers, content_type="multipart/form-data")
    assert r.status_code == 201, r.get_json()
    upload_id = r.get_json()["upload"]["id"]
    user = _one("users", {"email": email})
    done = {}
    for variants in (1, 4):
        body = interiors.GenerateBody(upload_id=upload_id, room_type="living-room", style="modern", variants=variants)
        doc, _ = interiors.store_request(user, body, None)
        interiors.confirm_enqueued(doc)  # as the request does once the job is enqueued
        assert generation.run([doc["_id"]])["done"] == 1
        done[variants] = doc["_id"]
    # The library: 20 designs, each with its own images (copies of the 1-variant design's), 6 of them saved.
    template = _one("interiors", {"_id": done[1]})
    bucket = get_settings().images_bucket
    image = storage.download_bytes(*storage.parse_ref(template["variants"][0]["image"]))
    for i in range(18):
        copy = {**template, "_id": db.new_id(), "saved": i < 6, "created_at": db.utcnow()}
        name = f"interiors/{user['_id']}/{copy['_id']}/variant-0.jpg"
        storage.upload_bytes(bucket, name, image, "image/jpeg")
        copy["variants"] = [{**template["variants"][0], "image": storage.ref(bucket, name)}]
        db.collection("interiors").insert_one(copy)
    product = _one("products", {}, sort=[("_id", 1)])["_id"]
    return {"headers": headers, "interior_1": done[1], "interior_4": done[4], "product": product}


def answers(data: dict) -> dict[str, tuple[str, dict, dict]]:
    auth = data["headers"]
    return {
        "interiors-get, 1 variant": ("interiors_get", {"id": data["interior_1"]}, auth),
        "interiors-get, 4 variants": ("interiors_get", {"id": data["interior_4"]}, auth),
        "interiors-list, 20 designs": ("interiors_list", {"limit": 20}, auth),
        "products-search, limit 20": ("products_search", {"label": "sofa"}, {}),
        "products-search, limit 100": ("products_search", {"limit": 100}, {}),
        "products-similar, limit 10": ("products_similar", {"product_id": data["product"], "limit": 10}, {}),
        "styles-list": ("styles_list", {}, {}),
        "me, 6 saved": ("me", {}, auth),
    }


def sign_calls(double_url: str) -> int:
    with urllib.request.urlopen(f"{double_url}/_double/stats", timeout=5) as answer:  # noqa: S310 - 127.0.0.1
        return json.load(answer)["sign_calls"]


def signed_before(answer) -> int:
    """How many links the code signed for this answer before (one signBlob each): every signed link in it,
    except a product's `image_url`, which repeated its first `image_urls` entry."""
    if isinstance(answer, list):
        return sum(signed_before(item) for item in answer)
    if isinstance(answer, dict):
        return sum(signed_before(value) for key, value in answer.items()
                   if not (key == "image_url" and "image_urls" in answer))
    return int(isinstance(answer, str) and "X-Goog-Signature=" in answer)


def measure(function: str, params: dict, headers: dict, double_url: str, runs: int, fresh: bool) -> dict:
    from lib import storage

    app = client(function)
    app.get("/", query_string=params, headers=headers)  # the function's own first-call costs are not signing
    times, calls, links = [], [], 0
    for _ in range(runs):
        if fresh:
            storage.forget_signing_state()
        before = sign_calls(double_url)
        started = time.perf_counter()
        r = app.get("/", query_string=params, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.get_json()
        calls.append(sign_calls(double_url) - before)
        links = signed_before(r.get_json())
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return {"links": links, "sign_calls": max(calls), "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(p95, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--serial-runs", type=int, default=3)
    parser.add_argument("--per-label", type=int, default=90, help="demo catalog size (products per label)")
    args = parser.parse_args()
    os.environ.setdefault("ARGON2_MEMORY_KIB", "1024")
    os.environ.setdefault("ARGON2_TIME_COST", "1")
    with tempfile.TemporaryDirectory(prefix="zipkku-bench-") as tmp, LocalStack(Path(tmp), persistent=False) as stack:
        os.environ.update(stack.env)
        os.environ["MONGODB_DB"] = "bench_signing"
        from lib import storage
        from lib.config import get_settings

        get_settings.cache_clear()
        data = setup(args.per_label)
        port = free_port()
        adc = Path(tmp) / "adc.json"
        double = spawn([sys.executable, str(ROOT / "scripts" / "iam_double.py"), "--port", str(port), "--key-file",
                        stack.env["SIGNING_KEY_FILE"], "--email", SIGNER, "--adc-file", str(adc),
                        "--latency-ms", str(args.latency_ms)])
        try:
            wait_for_port(port, double, name="IAM double")
            double_url = f"http://127.0.0.1:{port}"
            # The runtime identity's token comes from the double as Cloud Run's metadata server (set before
            # google-auth's compute credentials are first imported: they read the address once).
            (Path(tmp) / "gcloud").mkdir()
            os.environ.update({"SIGNING_KEY_FILE": "", "IAM_CREDENTIALS_URL": double_url,
                               "SIGNING_SERVICE_ACCOUNT": SIGNER, "GCE_METADATA_HOST": f"127.0.0.1:{port}",
                               "GCE_METADATA_IP": f"127.0.0.1:{port}", "CLOUDSDK_CONFIG": str(Path(tmp) / "gcloud")})
            os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
            results = {}
            for answer, (function, params, headers) in answers(data).items():
                get_settings.cache_clear()
                row = {"fresh": measure(function, params, headers, double_url, args.runs, fresh=True)}
                row["warm"] = measure(function, params, headers, double_url, args.runs, fresh=False)
                concurrency = os.environ.get("SIGNING_CONCURRENCY")
                os.environ["SIGNING_CONCURRENCY"] = "1"
                get_settings.cache_clear()
                row["serial"] = measure(function, params, headers, double_url, args.serial_runs, fresh=True)
                if concurrency is None:
                    del os.environ["SIGNING_CONCURRENCY"]
                else:
                    os.environ["SIGNING_CONCURRENCY"] = concurrency
                results[answer] = row
                print(f"{answer}: {json.dumps(row)}", file=sys.stderr)
            storage.forget_signing_state()
        finally:
            stop_process(double)
    get_settings.cache_clear()
    settings = get_settings()
    print(json.dumps({"signblob_latency_ms": args.latency_ms, "runs": args.runs,
                      "signing_concurrency": settings.signing_concurrency, "results": results}, indent=2))
    print("\n| answer | links (before: 1 signBlob each, serial) | fresh: signBlob, p50 / p95 ms | "
          "fresh serial p50 ms | warm: signBlob, p50 / p95 ms |\n|---|---|---|---|---|")
    for answer, row in results.items():
        f, w, s = row["fresh"], row["warm"], row["serial"]
        print(f"| {answer} | {f['links']} | {f['sign_calls']}, {f['p50_ms']:.0f} / {f['p95_ms']:.0f} | "
              f"{s['p50_ms']:.0f} | {w['sign_calls']}, {w['p50_ms']:.0f} / {w['p95_ms']:.0f} |")


if __name__ == "__main__":
    main()
