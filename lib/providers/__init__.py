"""AI providers behind two small interfaces, chosen by configuration (GENERATOR, DETECTOR).

- Generator: one redesigned variant of a room photo per call (`generate(request, seed) -> JPEG bytes`), so the
  job can store each variant before asking for the next and a retry never pays for a stored one again.
  `replicate` (Replicate predictions API) in production, `local` (lib.local.generator: the room's surfaces
  recoloured and its furniture replaced by catalog products of the style, offline) by default.
- Detector: furniture in an image -> [Detection(label, confidence, bbox (x, y, w, h) in pixels, embedding)].
  `vision` (Cloud Vision object localization, its crops embedded by the configured embedder) in production,
  `http` (a detector service of your own, the old YOLO + CLIP contract), `local` (lib.local.detector: segmented
  furniture labelled by the catalog's stored label centroids) by default.

Every failure is a ProviderError with a reason code a frontend can show; `retryable` says whether trying
again later may succeed (rate limits, outages, timeouts) or not (billing, a rejected prompt, a bad image).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from lib import clients, images
from lib.config import get_settings

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
    """A provider's failure. `work_started` says whether the provider may have done (billed) work for the call:
    True unless the provider refused the call outright (an error answer to the request that would start the
    work), so a generation unit is refunded only for calls that surely ran nothing."""

    def __init__(self, code: str, message: str, *, retryable: bool = False, work_started: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.work_started = work_started


def open_rgb(data: bytes, what: str):
    """An input image of a provider, decoded to RGB: lib.images.open_checked (magic bytes, size, the pixel and
    memory limits before decoding, as for an upload) or INVALID_IMAGE naming `what`: refused before any work,
    as a hosted model refuses input it cannot read."""
    settings = get_settings()
    try:
        image, _ = images.open_checked(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
                                       max_decoded_bytes=settings.max_decoded_image_bytes)
        return image.convert("RGB")
    except images.ImageRejected as exc:
        raise ProviderError(INVALID_IMAGE, f"The {what} is refused: {exc.message}", work_started=False) from None
    except (OSError, ValueError):  # the header was fine, the pixels are not (truncated, corrupt)
        raise ProviderError(INVALID_IMAGE, f"The {what} is not a readable image.", work_started=False) from None


@dataclass(frozen=True)
class GenerationRequest:
    image: bytes                     # the normalized room photo (JPEG)
    room_type: str
    style: str                       # style name, e.g. "scandinavian"
    prompt: str = ""
    strength: float = 0.6            # 0 keeps the photo, 1 follows the style fully
    image_url: str | None = None     # a URL the provider can fetch the photo from (else a data URI is sent)
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


def build_prompt(request: GenerationRequest) -> str:
    """The text prompt the ControlNet interior models expect (as the old backend built it)."""
    room = request.room_type.replace("_", " ")
    text = f"a {request.style.replace('_', ' ')} style {room}"
    if request.style_description:
        text += f", {request.style_description}"
    if request.prompt:
        text += f", {request.prompt}"
    return text + ", interior design, photorealistic, high quality"


def _create_generator(kind: str) -> Generator:
    if kind == "replicate":
        # the provider modules import this module's types, so they load when chosen
        from lib.providers.replicate import ReplicateGenerator

        return ReplicateGenerator()
    from lib.local.generator import LocalGenerator  # local stand-in: never imported in production

    return LocalGenerator()


def _create_detector(kind: str) -> Detector:
    if kind == "http":
        # the provider modules import this module's types, so they load when chosen
        from lib.providers.http_detector import HttpDetector

        return HttpDetector()
    if kind == "vision":
        from lib.providers.vision import VisionDetector

        return VisionDetector()
    from lib.local.detector import LocalDetector  # local stand-in: never imported in production

    return LocalDetector()


def generator() -> Generator:
    """The configured generator, created once per process."""
    kind = get_settings().generator
    return clients.cached(("generator", kind), lambda: _create_generator(kind))


def detector() -> Detector:
    """The configured detector, created once per process."""
    kind = get_settings().detector
    return clients.cached(("detector", kind), lambda: _create_detector(kind))
