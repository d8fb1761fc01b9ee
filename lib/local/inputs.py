"""The input photo of a local provider, checked the way an upload is checked before any pixel is decoded."""

from __future__ import annotations

from lib import images
from lib.config import get_settings
from lib.providers import INVALID_IMAGE, ProviderError


def open_rgb(data: bytes, what: str):
    """An input image of a local provider, decoded to RGB: lib.images.open_checked (magic bytes, size, the pixel
    and memory limits before decoding) or INVALID_IMAGE naming `what`."""
    settings = get_settings()
    try:
        image, _ = images.open_checked(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
                                       max_decoded_bytes=settings.max_decoded_image_bytes)
        return image.convert("RGB")
    except images.ImageRejected as exc:
        raise ProviderError(INVALID_IMAGE, f"The {what} is refused: {exc.message}") from None
    except (OSError, ValueError):  # the header was fine, the pixels are not (truncated, corrupt)
        raise ProviderError(INVALID_IMAGE, f"The {what} is not a readable image.") from None
