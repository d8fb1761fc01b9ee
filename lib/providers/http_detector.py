"""Detector over HTTP: the old YOLO + CLIP service's contract.

POST {DETECTOR_URL} with the image as the body (Content-Type: image/jpeg, optional `Authorization: Bearer
DETECTOR_API_KEY`) -> 200 [{"label", "confidence", "bbox": [x, y, w, h], "embedding": [...]}, ...].
Every item is validated: a malformed answer is PROVIDER_BAD_RESPONSE (retryable), 400/415/422 mean the
service refused the image (INVALID_IMAGE), 429/5xx and connection errors are retryable outages.
"""

from __future__ import annotations

import math

import requests

from lib.config import get_settings
from lib.providers import BAD_RESPONSE, INVALID_IMAGE, RATE_LIMIT, UNAVAILABLE, Detection, ProviderError


class HttpDetector:
    name = "http"

    def __init__(self) -> None:
        self.http = requests.Session()

    def detect(self, image: bytes) -> list[Detection]:
        s = get_settings()
        if not s.detector_url:
            raise ProviderError(UNAVAILABLE, "No detector service is configured (DETECTOR_URL).")
        headers = {"Content-Type": "image/jpeg"}
        if s.detector_api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {s.detector_api_key.get_secret_value()}"
        try:
            response = self.http.post(s.detector_url, data=image, headers=headers, timeout=s.detector_timeout_seconds)
        except requests.RequestException:
            raise ProviderError(UNAVAILABLE, "The furniture detector is unreachable.", retryable=True) from None
        if response.status_code in (400, 413, 415, 422):
            raise ProviderError(INVALID_IMAGE, "The furniture detector could not read this image.")
        if response.status_code == 429:
            raise ProviderError(RATE_LIMIT, "The furniture detector is rate limiting us.", retryable=True)
        if response.status_code != 200:
            raise ProviderError(UNAVAILABLE, f"The furniture detector answered HTTP {response.status_code}.",
                                retryable=True)
        try:
            items = response.json()
        except ValueError:
            raise ProviderError(BAD_RESPONSE, "The furniture detector sent malformed JSON.", retryable=True) from None
        if not isinstance(items, list):
            raise ProviderError(BAD_RESPONSE, "The furniture detector did not send a list.", retryable=True)
        return [parse_detection(item) for item in items]


def parse_detection(item: object) -> Detection:
    """One item of the contract, strictly checked (finite numbers, non-negative box, non-empty label)."""
    bad = ProviderError(BAD_RESPONSE, "The furniture detector sent a malformed detection.", retryable=True)
    if not isinstance(item, dict):
        raise bad
    label, bbox, embedding = item.get("label"), item.get("bbox"), item.get("embedding", [])
    if not isinstance(label, str) or not label.strip() or not isinstance(bbox, list) or len(bbox) != 4 \
            or not isinstance(embedding, list):
        raise bad
    try:
        confidence = float(item.get("confidence"))  # type: ignore[arg-type]
        x, y, w, h = (int(round(float(v))) for v in bbox)
        vector = [float(v) for v in embedding]
    except (TypeError, ValueError, OverflowError):
        raise bad from None
    if not 0.0 <= confidence <= 1.0 or x < 0 or y < 0 or w <= 0 or h <= 0 \
            or not all(math.isfinite(v) for v in vector):
        raise bad
    return Detection(label=label.strip().lower(), confidence=confidence, bbox=(x, y, w, h), embedding=vector)
