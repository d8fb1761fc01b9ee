"""The user journey over real HTTP, as the frontend drives it; shared by the e2e test, `make demo` and
scripts/bench_generation.py.

signup -> login -> signed upload -> ready -> styles -> generate -> poll to done -> products + AR -> save ->
library -> me -> (delete). Each step asserts the answer it needs and records timings.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests


def room_photo(width: int = 960, height: int = 720) -> bytes:
    """A drawn room: wall, floor, a sofa, a floor lamp, a coffee table and a picture frame."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (226, 222, 212))
    draw = ImageDraw.Draw(img)
    u, v = width / 960, height / 720
    draw.rectangle([0, 480 * v, width, height], fill=(168, 140, 110))                       # floor
    draw.rectangle([90 * u, 330 * v, 470 * u, 520 * v], fill=(70, 90, 150))                 # sofa body
    draw.rectangle([90 * u, 280 * v, 470 * u, 350 * v], fill=(60, 78, 135))                 # sofa back
    draw.rectangle([760 * u, 200 * v, 790 * u, 560 * v], fill=(60, 60, 60))                 # lamp pole
    draw.polygon([(720 * u, 200 * v), (830 * u, 200 * v), (800 * u, 140 * v), (750 * u, 140 * v)],
                 fill=(240, 210, 90))                                                     # lamp shade
    draw.rectangle([520 * u, 500 * v, 700 * u, 520 * v], fill=(130, 85, 45))                # table top
    for x in (530, 680):
        draw.rectangle([x * u, 520 * v, (x + 12) * u, 600 * v], fill=(120, 78, 40))         # table legs
    draw.rectangle([200 * u, 90 * v, 380 * u, 220 * v], outline=(90, 70, 50), width=8)      # frame
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


class JourneyError(AssertionError):
    pass


@dataclass
class Journey:
    base_url: str
    timeout: float = 240.0
    session: requests.Session = field(default_factory=requests.Session)
    headers: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds after the generate request

    def call(self, method: str, name: str, expect: int, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        response = self.session.request(method, f"{self.base_url}/{name}", **kwargs)
        if response.status_code != expect:
            raise JourneyError(f"{method} /{name} -> {response.status_code} (wanted {expect}): {response.text[:500]}")
        return response

    def account(self) -> dict[str, Any]:
        email, password = f"journey-{uuid.uuid4().hex[:8]}@example.com", "a long journey password"
        self.call("POST", "auth-signup", 201, json={"email": email, "password": password, "name": "Journey"})
        tokens = self.call("POST", "auth-login", 200, json={"email": email, "password": password}).json()
        self.headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        return {"email": email}

    def upload(self, photo: bytes) -> dict[str, Any]:
        started = time.monotonic()
        created = self.call("POST", "uploads-create", 201,
                            json={"content_type": "image/jpeg", "size_bytes": len(photo)}).json()
        put = requests.put(created["put_url"], data=photo, headers=created["headers"], timeout=60)
        if put.status_code != 200:
            raise JourneyError(f"signed PUT -> {put.status_code}")
        upload_id = created["upload"]["id"]
        while True:
            upload = self.call("GET", "uploads-get", 200, params={"id": upload_id}).json()["upload"]
            if upload["status"] == "ready":
                break
            if upload["status"] == "rejected" or time.monotonic() - started > 60:
                raise JourneyError(f"upload not ready: {upload}")
            time.sleep(0.1)
        self.timings["upload_to_ready_s"] = round(time.monotonic() - started, 3)
        return upload

    def pick_style(self, room_type: str = "living-room") -> tuple[str, str]:
        catalog = self.call("GET", "styles-list", 200).json()
        for style in catalog["styles"]:
            if room_type in style.get("room_types", []) or not style.get("room_types"):
                return style["id"], room_type
        style = catalog["styles"][0]
        return style["id"], style["room_types"][0]

    def generate(self, upload_id: str, style: str, room_type: str, variants: int = 2,
                 prompt: str = "bright and cosy") -> dict[str, Any]:
        started = time.monotonic()
        body = {"upload_id": upload_id, "style": style, "room_type": room_type, "variants": variants,
                "prompt": prompt, "strength": 0.6}
        accepted = self.call("POST", "interiors-generate", 202, json=body,
                             headers={"Idempotency-Key": uuid.uuid4().hex})
        self.timings["generate_request_s"] = round(time.monotonic() - started, 3)
        interior_id = accepted.json()["interior"]["id"]
        while True:
            interior = self.call("GET", "interiors-get", 200, params={"id": interior_id}).json()["interior"]
            stage = (interior.get("progress") or {}).get("stage", interior["status"])
            self.stages.setdefault(stage, round(time.monotonic() - started, 3))
            if interior["status"] in ("done", "failed"):
                break
            if time.monotonic() - started > self.timeout:
                raise JourneyError(f"generation not finished after {self.timeout}s: {interior['progress']}")
            time.sleep(0.05)
        self.timings["generate_to_done_s"] = round(time.monotonic() - started, 3)
        if interior["status"] != "done":
            raise JourneyError(f"generation failed: {interior.get('reason')} {interior.get('reason_message')}")
        parts = [p for v in interior["variants"] for p in v["detected_parts"]]
        if len(interior["variants"]) != variants or not parts:
            raise JourneyError("a finished interior must have every variant and detected parts")
        if not any(p["products"] for p in parts) or not any(p["ar_objects"] for p in parts):
            raise JourneyError("detected parts must come with products and AR objects")
        return interior

    def library(self, interior_id: str) -> dict[str, Any]:
        saved = self.call("POST", "interiors-save", 200, json={"interior_id": interior_id, "saved": True}).json()
        listed = self.call("GET", "interiors-list", 200, params={"saved": "true"}).json()
        if [i["id"] for i in listed["interiors"]] != [interior_id] or not saved["interior"]["saved"]:
            raise JourneyError("the saved interior must be the library's only entry")
        me = self.call("GET", "me", 200).json()
        if me["usage"]["used"] != 1 or [i["id"] for i in me["recent_saved"]] != [interior_id]:
            raise JourneyError(f"me must show the usage and the saved design: {me['usage']}")
        return me

    def delete(self, interior_id: str) -> None:
        self.call("DELETE", "interiors-delete", 204, params={"id": interior_id})
        self.call("GET", "interiors-get", 404, params={"id": interior_id})
        if self.call("GET", "interiors-list", 200).json()["interiors"]:
            raise JourneyError("a deleted interior must leave the library")
