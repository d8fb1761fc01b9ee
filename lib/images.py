"""Safe image processing for user photos: sniff, check, decode, orient, strip, normalize, thumbnail.

Everything a user sends is hostile until proven otherwise. The steps, in order, each cheap before the next:
1. size: empty or over the byte limit is refused before anything is parsed;
2. type: sniffed from the magic bytes (never the file name or the declared header);
3. pixels: width x height read from the header and checked BEFORE decoding, so a small file that would
   decompress into gigabytes (a "decompression bomb") is refused without allocating it;
4. decode: truncated or corrupt data is refused (Pillow never "loads truncated images" here); JPEGs are
   decoded at a reduced scale with draft() when the output is much smaller (DCT scaling: a 12-MP photo
   decodes at 1/2 or 1/4 the work);
5. orient: the EXIF orientation is applied to the pixels;
6. normalize: converted to sRGB (through the embedded ICC profile, if any), flattened onto white, bounded
   long edge, re-encoded as a baseline JPEG from the pixels alone, so no metadata survives (EXIF, GPS, XMP,
   ICC, comments);
7. thumbnail from the normalized pixels.

Pillow is imported lazily (cold starts of functions that do not process images), pillow-heif only when a
HEIC actually arrives.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image as PILImage

ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic")
OUTPUT_TYPE = "image/jpeg"
JPEG_QUALITY = 85
THUMBNAIL_QUALITY = 80
# draft() may pick a DCT scale whose long edge lands up to this much under the bound (e.g. 2016 px for a
# 4032 px photo and a 2048 px bound): the bound is a maximum, and halving the decode work is worth 1.5 %.
DRAFT_SLACK = 0.9

log = logging.getLogger("zipkku.images")

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_PILLOW_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heic"}


class ImageRejected(Exception):
    """A photo we refuse, with a stable machine code (stored as the upload's reason) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class NormalizedImage:
    jpeg: bytes
    thumbnail: bytes
    width: int
    height: int
    thumbnail_width: int
    thumbnail_height: int
    source_type: str


def sniff(data: bytes) -> str | None:
    """The image type the bytes really are (by magic number), or None."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "image/heic"
    return None


def _pil():
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated photo is an error, not a grey half-image
    return Image


def _register_heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def check(data: bytes, *, max_bytes: int, max_pixels: int) -> tuple[PILImage.Image, str]:
    """Steps 1-3: an opened (not yet decoded) image and its sniffed type, or ImageRejected."""
    if not data:
        raise ImageRejected("empty", "The file is empty.")
    if len(data) > max_bytes:
        raise ImageRejected("too_large", f"The file is larger than {max_bytes} bytes.")
    kind = sniff(data)
    if kind is None:
        raise ImageRejected("not_an_image", "The file is not a JPEG, PNG, WebP or HEIC image.")
    if kind == "image/heic":
        _register_heif()
    Image = _pil()
    try:
        # formats= stops Pillow from trying every other decoder on bytes we already identified.
        with warnings.catch_warnings():  # our own pixel limit below decides, not Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[_format_for(kind)])
    except Image.DecompressionBombError:
        raise ImageRejected("too_many_pixels", f"The image has more than {max_pixels} pixels.") from None
    except Exception:  # noqa: BLE001 - any parser failure on hostile bytes is "corrupt", never a 500
        raise ImageRejected("corrupt", "The image header is damaged or truncated.") from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageRejected("corrupt", "The image has no pixels.")
    if width * height > max_pixels:
        raise ImageRejected(
            "too_many_pixels", f"The image is {width}x{height}; at most {max_pixels} pixels are accepted."
        )
    return img, kind


def _format_for(kind: str) -> str:
    return next(fmt for fmt, mime in _PILLOW_FORMATS.items() if mime == kind)


def _decode(img: PILImage.Image, kind: str, max_edge: int) -> PILImage.Image:
    """Step 4: decode the pixels (first frame only), JPEGs at the smallest DCT scale that still fits."""
    Image = _pil()
    width, height = img.size
    if kind == "image/jpeg" and max(width, height) > max_edge:
        scale = max_edge / max(width, height) * DRAFT_SLACK
        img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        img.seek(0)
        img.load()
    except Image.DecompressionBombError:
        raise ImageRejected("too_many_pixels", "The image has too many pixels.") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise ImageRejected("truncated", "The image data is truncated or corrupt.") from None
    return img


def _to_srgb(img: PILImage.Image) -> PILImage.Image:
    """Step 6a: RGB in sRGB; transparency flattened onto white (JPEG has no alpha)."""
    Image = _pil()
    icc = img.info.get("icc_profile")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        img = background
    elif img.mode.startswith("I;16"):
        img = img.point(lambda v: v / 256).convert("L").convert("RGB")  # 16-bit grey: keep the top 8 bits
    if icc and img.mode in ("RGB", "CMYK", "L"):
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, source, srgb, outputMode="RGB")
        except Exception:  # noqa: BLE001 - a broken profile is ignored, not fatal: the pixels are still good
            log.info("ignoring an unusable ICC profile")
    return img.convert("RGB") if img.mode != "RGB" else img


def _encode(img: PILImage.Image, quality: int) -> bytes:
    out = io.BytesIO()
    # Only pixels are written: no exif=, icc_profile= or comment=, so nothing of the original's metadata.
    img.save(out, format="JPEG", quality=quality, optimize=False, progressive=False)
    return out.getvalue()


def normalize(data: bytes, *, max_bytes: int, max_pixels: int, max_edge: int, thumbnail_edge: int) -> NormalizedImage:
    """The whole pipeline; raises ImageRejected with a reason for anything we refuse."""
    from PIL import ImageOps

    Image = _pil()
    img, kind = check(data, max_bytes=max_bytes, max_pixels=max_pixels)
    img = _decode(img, kind, max_edge)
    try:
        oriented = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - an unreadable EXIF block must not sink a good photo
        oriented = img
    rgb = _to_srgb(oriented)
    if max(rgb.size) > max_edge:
        rgb.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
    rgb.info = {}
    thumb = rgb.copy()
    thumb.thumbnail((thumbnail_edge, thumbnail_edge), Image.Resampling.LANCZOS)
    return NormalizedImage(
        jpeg=_encode(rgb, JPEG_QUALITY), thumbnail=_encode(thumb, THUMBNAIL_QUALITY),
        width=rgb.width, height=rgb.height, thumbnail_width=thumb.width, thumbnail_height=thumb.height,
        source_type=kind,
    )


def normalize_with_settings(data: bytes, *, max_bytes: int | None = None) -> NormalizedImage:
    """normalize() with the limits from configuration (what uploads use); `max_bytes` may lower the byte
    limit (a signed upload's declared size)."""
    from lib.config import get_settings

    settings = get_settings()
    return normalize(
        data, max_bytes=max_bytes or settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
        max_edge=settings.max_image_edge_px, thumbnail_edge=settings.thumbnail_edge_px,
    )
