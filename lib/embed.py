"""Image embeddings behind one small interface, chosen by `settings.embedder`.

    embedder = get_embedder()
    vectors = embedder.embed_images([jpeg_bytes, ...])   # unit-length lists of floats, len == embedder.dim

- "http": the detector service's embedding endpoint (production). POST `settings.embedder_url` (default
  `<detector_url>/embed`) with {"images": [base64, ...]} -> {"embeddings": [[float, ...], ...]}. Its name and
  dimension come from configuration because the vector collection is named after them before any call.
- "local" (default): lib.local.embedder.LocalEmbedder, offline and deterministic (imported only when configured).
"""

from __future__ import annotations

import base64
from typing import Protocol

from lib import clients
from lib.config import get_settings


class EmbedError(Exception):
    """An image could not be embedded (unreadable bytes, or the embedding service failed)."""


class EmbedUnavailable(EmbedError):
    """The embedding service is unreachable or failing (5xx): no image of the batch is to blame."""


class Embedder(Protocol):
    name: str
    dim: int

    def embed_images(self, images: list[bytes]) -> list[list[float]]: ...


def unit_vector(vector):
    import numpy as np

    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class HttpEmbedder:
    """The detector service's embedding endpoint (same model as its detections' embeddings)."""

    def __init__(self, url: str, name: str, dim: int, api_key: str = "", timeout: float = 30.0) -> None:
        if not url:
            raise EmbedError("EMBEDDER=http needs EMBEDDER_URL or DETECTOR_URL")
        self.url, self.name, self.dim, self._key, self._timeout = url, name, dim, api_key, timeout

    def embed_images(self, images: list[bytes]) -> list[list[float]]:
        import requests

        if not images:
            return []
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        body = {"images": [base64.b64encode(data).decode("ascii") for data in images]}
        try:
            response = requests.post(self.url, json=body, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            raise EmbedUnavailable(f"embedding service unreachable: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise EmbedUnavailable(f"embedding service answered {response.status_code}")
        if response.status_code != 200:
            raise EmbedError(f"embedding service answered {response.status_code}")
        try:
            vectors = response.json()["embeddings"]
        except (ValueError, KeyError, TypeError):
            raise EmbedError("embedding service answered without 'embeddings'") from None
        if len(vectors) != len(images) or any(len(v) != self.dim for v in vectors):
            raise EmbedError(f"embedding service returned the wrong shape (expected {len(images)} x {self.dim})")
        import numpy as np

        return [unit_vector(np.asarray(v, dtype=np.float32)).tolist() for v in vectors]


def embedder_identity() -> tuple[str, int]:
    """(name, dim) of the configured embedder WITHOUT creating it: the vector collection is named after them, and
    a search (products_similar) must not load the local embedder's ONNX model just to learn its name."""
    settings = get_settings()
    if settings.embedder == "http":
        return settings.embedder_name, settings.embedder_dim
    from lib.local.embedder import LocalEmbedder

    return LocalEmbedder.name, LocalEmbedder.dim


def get_embedder() -> Embedder:
    """The configured embedder (the local one is created once per process: it loads an ONNX session)."""
    settings = get_settings()
    if settings.embedder == "http":
        url = settings.embedder_url or (settings.detector_url.rstrip("/") + "/embed" if settings.detector_url else "")
        return HttpEmbedder(url, settings.embedder_name, settings.embedder_dim,
                            settings.detector_api_key.get_secret_value())
    from lib.local.embedder import LocalEmbedder

    return clients.cached(("embedder", "local"), LocalEmbedder)
