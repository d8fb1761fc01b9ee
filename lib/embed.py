"""Image embeddings behind one small interface, chosen by `settings.embedder`.

    embedder = get_embedder()
    vectors = embedder.embed_images([jpeg_bytes, ...])   # unit-length lists of floats, len == embedder.dim

- "http": the embedding endpoint of a detector service of your own. POST `settings.embedder_url` (default
  `<detector_url>/embed`) with {"images": [base64, ...]} -> {"embeddings": [[float, ...], ...]}. Its name and
  dimension come from configuration because the vector collection is named after them before any call.
- "vertex" (production's default): Vertex AI `multimodalembedding@001` :predict (VertexEmbedder below): one
  image per request (the model's limit), VERTEX_CONCURRENCY requests at once, VERTEX_EMBEDDING_DIM
  (128/256/512/1408) dimensions.
- "local" (default): lib.local.embedder.LocalEmbedder, offline and deterministic (imported only when configured).
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import requests

from lib import clients
from lib.config import get_settings
from lib.providers.google_api import GoogleApiError, post_json, session


class EmbedError(Exception):
    """An image could not be embedded (unreadable bytes, or the embedding service failed)."""


class EmbedUnavailable(EmbedError):
    """The embedding service is unreachable or failing (5xx): no image of the batch is to blame."""


class Embedder(Protocol):
    name: str
    dim: int

    def embed_images(self, images: list[bytes]) -> list[list[float]]: ...


def unit_vector(vector):
    import numpy as np  # heavy: only the jobs and functions that embed load it

    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class HttpEmbedder:
    """The detector service's embedding endpoint (same model as its detections' embeddings)."""

    def __init__(self, url: str, name: str, dim: int, api_key: str = "", timeout: float = 30.0) -> None:
        if not url:
            raise EmbedError("EMBEDDER=http needs EMBEDDER_URL or DETECTOR_URL")
        self.url, self.name, self.dim, self._key, self._timeout = url, name, dim, api_key, timeout

    def embed_images(self, images: list[bytes]) -> list[list[float]]:
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


class VertexEmbedder:
    """Vertex AI multimodal embeddings (https://cloud.google.com/vertex-ai/generative-ai/docs/embeddings/
    get-multimodal-embeddings): POST .../publishers/google/models/multimodalembedding@001:predict
    {"instances": [{"image": {"bytesBase64Encoded"}}], "parameters": {"dimension"}} ->
    {"predictions": [{"imageEmbedding": [...]}]}. The model resizes every image to 512x512, so larger images are
    scaled down before sending. 400 INVALID_ARGUMENT (this image) is an EmbedError; quota, outage, auth and
    malformed answers are EmbedUnavailable (no image is to blame)."""

    name = "vertex-multimodalembedding-001"
    MODEL = "multimodalembedding@001"
    EDGE_PX = 512

    def __init__(self) -> None:
        settings = get_settings()
        self.dim = settings.vertex_embedding_dim
        location = settings.vertex_location or settings.gcp_region
        base = (settings.vertex_api_url or f"https://{location}-aiplatform.googleapis.com").rstrip("/")
        self.url = (f"{base}/v1/projects/{settings.gcp_project}/locations/{location}/publishers/google/models/"
                    f"{self.MODEL}:predict")

    def embed_images(self, images: list[bytes]) -> list[list[float]]:
        if not images:
            return []
        if len(images) == 1:
            return [self._embed_one(images[0])]
        with ThreadPoolExecutor(max_workers=min(len(images), get_settings().vertex_concurrency)) as pool:
            return list(pool.map(self._embed_one, images))

    def _embed_one(self, data: bytes) -> list[float]:
        import numpy as np

        body = {"instances": [{"image": {"bytesBase64Encoded": base64.b64encode(_shrunk(data, self.EDGE_PX))
                                         .decode("ascii")}}],
                "parameters": {"dimension": self.dim}}
        try:
            answer = post_json(session(), self.url, body)
        except GoogleApiError as exc:
            if exc.status == 400:
                raise EmbedError(f"the embedding model refused the image ({exc.reason}: {exc.message})") from None
            raise EmbedUnavailable(f"the embedding model is unavailable ({exc})") from None
        try:
            vector = np.asarray(answer["predictions"][0]["imageEmbedding"], dtype=np.float32)
        except (KeyError, IndexError, TypeError, ValueError):
            raise EmbedUnavailable("the embedding model answered without an imageEmbedding") from None
        if vector.shape != (self.dim,) or not np.all(np.isfinite(vector)):
            raise EmbedUnavailable(f"the embedding model answered {vector.shape} values, not {self.dim}")
        return unit_vector(vector).tolist()


def _shrunk(data: bytes, edge: int) -> bytes:
    """A JPEG at most `edge` pixels on its long side (the bytes unchanged when they are already small enough, or
    not an image Pillow reads: the model then says what is wrong with them)."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        if max(image.size) <= edge and image.format in ("JPEG", "PNG"):
            return data
        image.draft("RGB", (edge, edge))
        rgb = image.convert("RGB")
        rgb.thumbnail((edge, edge), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=90)
        return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return data


def embedder_identity() -> tuple[str, int]:
    """(name, dim) of the configured embedder WITHOUT creating it: the vector collection is named after them, and
    a search (products_similar) must not load the local embedder's ONNX model just to learn its name."""
    settings = get_settings()
    if settings.embedder == "http":
        return settings.embedder_name, settings.embedder_dim
    if settings.embedder == "vertex":
        return VertexEmbedder.name, settings.vertex_embedding_dim
    from lib.local.embedder import LocalEmbedder  # local stand-in: never imported in production

    return LocalEmbedder.name, LocalEmbedder.dim


def get_embedder() -> Embedder:
    """The configured embedder (the local one is created once per process: it loads an ONNX session)."""
    settings = get_settings()
    if settings.embedder == "http":
        url = settings.embedder_url or (settings.detector_url.rstrip("/") + "/embed" if settings.detector_url else "")
        return HttpEmbedder(url, settings.embedder_name, settings.embedder_dim,
                            settings.detector_api_key.get_secret_value())
    if settings.embedder == "vertex":
        return VertexEmbedder()
    from lib.local.embedder import LocalEmbedder  # local stand-in: never imported in production

    return clients.cached(("embedder", "local"), LocalEmbedder)
