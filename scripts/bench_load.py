"""Bounded load run against the local dev server: a fixed number of concurrent clients for a fixed time per hot
endpoint, reporting throughput and latency percentiles. Loopback only: it starts its own `make run` stack
(scripts/run_local.py with the demo catalog) on 127.0.0.1 and stops it.

    .venv/bin/python scripts/bench_load.py [--clients 8] [--seconds 10] [--endpoints products-search me]

Endpoints are loaded one after another (each alone, so each figure is that endpoint's), every client with its
own keep-alive connection sending its next request as soon as the previous answer arrived (a closed loop: the
offered load adapts, nothing queues without bound). Catalog reads send no If-None-Match, so every request
does the full work instead of a 304. The dev server is ONE process serving every function on threads, so its
numbers are what one instance with that concurrency does on this machine (the README's capacity table uses
them per instance), not what the deployment does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.journey import Journey, room_photo  # noqa: E402
from scripts.localstack import run_local_server  # noqa: E402

LABELS = ["sofa", "chair", "table", "bed", "lamp", "desk"]


def endpoints(journey: Journey, product_ids: list[str], interior_id: str | None) -> dict:
    """name -> a function giving (method, path, params) for request number i (varied so caches do not help)."""
    table = {
        "styles-list": lambda i: ("GET", "styles-list", {}),
        "products-search": lambda i: ("GET", "products-search",
                                      {"label": LABELS[i % len(LABELS)], "max_width_cm": 150 + i % 100, "limit": 20}),
        "products-similar": lambda i: ("GET", "products-similar",
                                       {"product_id": product_ids[i % len(product_ids)], "limit": 10}),
        "me": lambda i: ("GET", "me", {}),
        "interiors-list": lambda i: ("GET", "interiors-list", {}),
    }
    if interior_id:
        table["interiors-get"] = lambda i: ("GET", "interiors-get", {"id": interior_id})
    return table


def load(base_url: str, headers: dict, make_request, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def client(worker: int) -> None:
        session = requests.Session()
        mine: list[float] = []
        codes: dict[int, int] = {}
        i = worker
        start_gate.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            method, path, params = make_request(i)
            i += clients
            started = time.perf_counter()
            response = session.request(method, f"{base_url}/{path}", params=params, headers=headers, timeout=60)
            mine.append(time.perf_counter() - started)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
        with lock:
            latencies.extend(mine)
            for code, count in codes.items():
                statuses[code] = statuses.get(code, 0) + count

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "requests": len(ordered), "per_second": round(len(ordered) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1),
        "statuses": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--endpoints", nargs="+", default=None, help="default: every hot endpoint")
    parser.add_argument("--no-interior", action="store_true", help="skip the generation interiors-get needs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zipkku-load-") as tmp, run_local_server(Path(tmp) / "stack") as url:
        journey = Journey(url)
        journey.account()
        found = journey.call("GET", "products-search", 200, params={"limit": 50}).json()["products"]
        product_ids = [p["id"] for p in found]
        interior_id = None
        if not args.no_interior:
            upload = journey.upload(room_photo())
            style, room_type = journey.pick_style()
            interior_id = journey.generate(upload["id"], style, room_type, variants=1)["id"]
        table = endpoints(journey, product_ids, interior_id)
        chosen = args.endpoints or list(table)
        results = {"clients": args.clients, "seconds_per_endpoint": args.seconds,
                   "load_average_at_start": [round(x, 1) for x in os.getloadavg()], "endpoints": {}}
        for name in chosen:
            results["endpoints"][name] = load(url, journey.headers, table[name], args.clients, args.seconds)
            print(f"{name:18} {json.dumps(results['endpoints'][name])}", file=sys.stderr, flush=True)
        results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
