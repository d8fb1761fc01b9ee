"""Local stand-in for Eventarc: finalized Cloud Storage objects -> CloudEvents POSTed to the dev server.

In production Eventarc delivers `google.cloud.storage.object.v1.finalized` to a CloudEvent function, in
binary mode, with the object resource (Cloud Storage JSON API format) as the data. Locally one of two
routes produces exactly the same request, so the function never knows which ran:

- Pub/Sub (when the local stack runs the emulator): fake-gcs-server publishes its finalize notifications to
  a topic, and we pull them from a subscription;
- polling (no emulator on this machine): list the routed buckets a few times a second and announce every
  new (name, generation).

Either way only objects finalized after the bridge started are announced, so the demo seed's thousand catalog
images do not queue in front of the first photo; the raw objects of uploads still pending from a previous run
(whose events the emulator lost when it stopped) are delivered again at start instead.

Routes are by bucket: uploads -> /on-upload-finalized, catalog -> /on-catalog-uploaded (only if that function
exists). Delivery is at-least-once, like Eventarc: a failed POST (dev server not up yet, 5xx, 429) is retried
with a backoff; other 4xx answers are dropped with a warning. Run by scripts/run_local.py; tests run it against
a dev server they start (tests/test_uploads_chain.py).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests

from lib import discovery
from lib.storage import FINALIZED_EVENT

log = logging.getLogger("zipkku.storage_events")


def default_routes(root: Path = discovery.ROOT) -> dict[str, str]:
    """bucket -> dev-server path of the CloudEvent function that handles its finalized objects."""
    from lib.config import get_settings

    settings = get_settings()
    candidates = {settings.uploads_bucket: "on_upload_finalized", settings.catalog_bucket: "on_catalog_uploaded"}
    return {bucket: discovery.url_path(name) for bucket, name in candidates.items()
            if name in discovery.function_names(root)}


def cloud_event_request(obj: dict, event_id: str, event_time: str | None = None) -> tuple[dict[str, str], bytes]:
    """Headers and body of a binary-mode CloudEvent as Eventarc sends it for a finalized object."""
    bucket, name = obj["bucket"], obj["name"]
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-type": FINALIZED_EVENT,
        "ce-subject": f"objects/{name}",
        "ce-time": event_time or datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "ce-bucket": bucket,
        "Content-Type": "application/json",
    }
    return headers, json.dumps(obj).encode()


def pending_upload_objects() -> list[dict]:
    """The raw objects of signed uploads still `pending`: photos whose event was lost when the last `make run`
    stopped (the emulator keeps no queue across restarts, unlike Eventarc). Delivering them again is safe:
    processing is idempotent on the object generation."""
    from lib import db, uploads

    pending = db.collection(uploads.COLLECTION).find({"status": "pending", "raw": {"$type": "string"}}, {"raw": 1})
    return [obj for obj in map(uploads.arrived_object, pending) if obj is not None]


class StorageEventBridge:
    """Delivers finalized-object events to `base_url` + route, from Pub/Sub or by polling (see module doc)."""

    def __init__(
        self,
        base_url: str,
        routes: dict[str, str],
        *,
        pubsub_host: str | None = None,
        subscription: str | None = None,
        poll_interval: float = 0.25,
        on_delivered: Callable[[dict, int], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.routes = routes
        self.pubsub_host = pubsub_host
        self.subscription = subscription  # projects/P/subscriptions/S
        self.poll_interval = poll_interval
        self.on_delivered = on_delivered
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = requests.Session()

    @property
    def mode(self) -> str:
        return "pubsub" if self.pubsub_host and self.subscription else "polling"

    def describe(self) -> tuple[str, str]:
        """(how events arrive, where they go), for the start-up block of `make run`."""
        how = "Pub/Sub notifications" if self.mode == "pubsub" else f"polling every {self.poll_interval:g} s"
        return how, "-> " + " ".join(self.routes.values())

    @classmethod
    def from_env(cls, base_url: str, root: Path = discovery.ROOT) -> StorageEventBridge:
        """The bridge for the running local stack (its env is in os.environ): Pub/Sub if it has the emulator."""
        from lib.config import get_settings

        host = os.environ.get("PUBSUB_EMULATOR_HOST")
        name = os.environ.get("LOCAL_STORAGE_EVENTS_SUBSCRIPTION")
        subscription = f"projects/{get_settings().gcp_project}/subscriptions/{name}" if host and name else None
        return cls(base_url, default_routes(root), pubsub_host=host, subscription=subscription)

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self, backlog: list[dict] | None = None) -> StorageEventBridge:
        """Start delivering; `backlog` (object resources) is delivered first, retried until the server is up."""
        self._backlog = list(backlog or [])
        # only objects finalized from now on (see the module doc); pending uploads come back via `backlog`
        if self.mode == "polling":
            self._seen = self._list_generations()
        else:
            self._drain()
        self._thread = threading.Thread(target=self._run, name="storage-events", daemon=True)
        self._thread.start()
        log.debug("storage event bridge (%s) routing %s", self.mode, self.routes)  # make run prints it in its block
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while self._backlog and not self._stop.is_set():
            if self.deliver(self._backlog[0], uuid.uuid4().hex):
                self._backlog.pop(0)
            else:
                self._stop.wait(self.poll_interval)
        step = self._pull_once if self.mode == "pubsub" else self._poll_once
        while not self._stop.is_set():
            try:
                busy = step()
            except Exception:  # noqa: BLE001 - a local helper thread must survive a hiccup of its peers
                log.exception("storage event bridge step failed")
                busy = False
            if not busy:
                self._stop.wait(self.poll_interval)

    # --- delivery ----------------------------------------------------------------------------------------

    def deliver(self, obj: dict, event_id: str, event_time: str | None = None) -> bool:
        """POST one event; True when it is done with (delivered, or refused for good), False to retry."""
        path = self.routes.get(obj.get("bucket", ""))
        if path is None:
            return True  # a bucket nobody listens to (e.g. the images bucket): nothing to deliver
        headers, body = cloud_event_request(obj, event_id, event_time)
        try:
            response = self._http.post(self.base_url + path, data=body, headers=headers, timeout=60)
        except requests.RequestException:
            return False  # dev server not up yet, or restarting
        if response.status_code < 300:
            if self.on_delivered is not None:
                self.on_delivered(obj, response.status_code)
            return True
        if response.status_code == 429 or response.status_code >= 500:
            return False
        log.warning("dropping event %s for %s: %s answered %s", event_id, obj.get("name"), path,
                    response.status_code)
        return True

    # --- route 1: Pub/Sub notifications --------------------------------------------------------------------

    def _pubsub(self, verb: str, body: dict) -> dict:
        response = self._http.post(f"http://{self.pubsub_host}/v1/{self.subscription}:{verb}", json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else {}

    def _drain(self) -> None:
        """Acknowledge every notification already waiting in the subscription."""
        while True:
            received = self._pubsub("pull", {"maxMessages": 1000, "returnImmediately": True}).get("receivedMessages")
            if not received:
                return
            self._pubsub("acknowledge", {"ackIds": [item["ackId"] for item in received]})

    def _pull_once(self) -> bool:
        received = self._pubsub("pull", {"maxMessages": 20, "returnImmediately": True}).get("receivedMessages", [])
        done: list[str] = []
        retry: list[str] = []
        for item in received:
            message = item["message"]
            attributes = message.get("attributes", {})
            if attributes.get("eventType") != "OBJECT_FINALIZE":
                done.append(item["ackId"])
                continue
            obj = json.loads(base64.b64decode(message.get("data", "")) or b"{}")
            ok = self.deliver(obj, message["messageId"], message.get("publishTime"))
            (done if ok else retry).append(item["ackId"])
        if done:
            self._pubsub("acknowledge", {"ackIds": done})
        if retry:  # make them available again soon, after a short backoff
            self._stop.wait(0.5)
            self._pubsub("modifyAckDeadline", {"ackIds": retry, "ackDeadlineSeconds": 0})
        return bool(received) and not retry

    # --- route 2: polling the buckets ----------------------------------------------------------------------

    def _list_generations(self) -> dict[tuple[str, str], int]:
        from lib import storage

        seen = {}
        for bucket in self.routes:
            for blob in storage.client().list_blobs(bucket):
                seen[(bucket, blob.name)] = int(blob.generation)
        return seen

    def _poll_once(self) -> bool:
        from lib import storage

        delivered = False
        for bucket in self.routes:
            for blob in storage.client().list_blobs(bucket):
                key, generation = (bucket, blob.name), int(blob.generation)
                if self._seen.get(key) == generation:
                    continue
                obj = dict(blob._properties)  # the object resource exactly as the JSON API returned it
                if self.deliver(obj, uuid.uuid4().hex, obj.get("updated")):
                    self._seen[key] = generation
                    delivered = True
        return delivered
