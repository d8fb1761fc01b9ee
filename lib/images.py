"""Safe image processing for user photos: sniff, check, decode, orient, strip, normalize, thumbnail.

Everything a user sends is hostile until proven otherwise. The steps, in order, each cheap before the next:
1. size: empty or over the byte limit is refused before anything is parsed;
2. type: sniffed from the magic bytes (never the file name or the declared header);
3. pixels and memory: width x height and the mode are read from the header and checked BEFORE decoding, so
   a small file that would decompress into gigabytes (a "decompression bomb") is refused without allocating
   it. Two bounds: the pixel count (every format), and the bytes the decoded pixels take (width x height x
   bytes per pixel of the mode the decoder produces: alpha and 16-bit included) for the formats decoded at
   full size (PNG, WebP, HEIC). JPEG is exempt from the second: it decodes at a reduced scale (step 5);
4. size: photos too small or too narrow to redesign are refused (the generators need both edges);
5. decode: truncated or corrupt data is refused (Pillow never "loads truncated images" here); JPEGs are
   decoded at a reduced scale with draft() when the output is much smaller (DCT scaling: a 12-MP photo
   decodes at 1/2 or 1/4 the work); other formats are shrunk to the bounded long edge right after decoding,
   before orientation and colour conversion would copy them at full size (scripts/bench_image_memory.py
   measures what each format costs at the limits);
6. orient: the EXIF orientation is applied to the pixels;
7. normalize: converted to sRGB (through the embedded ICC profile, if any), flattened onto white, bounded
   long edge, re-encoded as a baseline JPEG from the pixels alone, so no metadata survives (EXIF, GPS, XMP,
   ICC, comments);
8. thumbnail from the normalized pixels.

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

from lib.config import get_settings

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
# Decoded at full size: no DCT scaling, so their decoded bytes are bounded (JPEG's are by draft()).
FULL_SIZE_DECODE = ("image/png", "image/webp", "image/heic")


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


def pixel_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an image we produced or received, read from its header (no pixel is decoded)."""
    with _pil().open(io.BytesIO(data)) as img:
        return img.size


def _pil():
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated photo is an error, not a grey half-image
    return Image


def _register_heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def bytes_per_pixel(mode: str) -> int:
    """Bytes a pixel of `mode` takes in Pillow's memory (libImaging/Storage.c): one for 8-bit single-band
    modes, two for 16-bit grey, four for everything else (RGB is stored as 4 bytes, 16-bit colour is decoded
    to 8 bits). Palette and 1-bit images count as 4: they are expanded to RGB(A) before resampling."""
    if mode == "L":
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """The memory the decoded pixels of a width x height image of `mode` take."""
    return width * height * bytes_per_pixel(mode)


def open_checked(data: bytes, *, max_bytes: int, max_pixels: int,
                 max_decoded_bytes: int) -> tuple[PILImage.Image, str]:
    """Steps 1-3: the image opened from its header (pixels NOT decoded yet) and its sniffed type, once its byte
    size, type, pixel count and decoded bytes are within the limits; ImageRejected otherwise."""
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
    needed = decoded_bytes(width, height, img.mode)
    if kind in FULL_SIZE_DECODE and needed > max_decoded_bytes:
        raise ImageRejected(
            "decoded_too_large",
            f"The image is {width}x{height} {img.mode}: decoded it would take {_mib(needed)} of memory; PNG, WebP "
            f"and HEIC images may take at most {_mib(max_decoded_bytes)} (about "
            f"{max_decoded_bytes // 4 / 1e6:.0f} megapixels in colour). Send it smaller or as a JPEG.",
        )
    return img, kind


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def check_redesignable(width: int, height: int, *, min_edge: int, max_aspect_ratio: float) -> None:
    """Step 4: a photo the generators can redesign: both edges at least `min_edge` pixels and the long edge at
    most `max_aspect_ratio` times the short one (else the model's input shrinks to a sliver)."""
    if min(width, height) < min_edge:
        raise ImageRejected(
            "too_small", f"The image is {width}x{height}; both edges must be at least {min_edge} pixels.")
    if max(width, height) > max_aspect_ratio * min(width, height):
        raise ImageRejected(
            "too_narrow", f"The image is {width}x{height}; the long edge may be at most {max_aspect_ratio:g} "
                          "times the short one.")


def _format_for(kind: str) -> str:
    return next(fmt for fmt, mime in _PILLOW_FORMATS.items() if mime == kind)


def _decode(img: PILImage.Image, kind: str, max_edge: int) -> PILImage.Image:
    """Step 5: decode the pixels (first frame only), JPEGs at the smallest DCT scale that still fits."""
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


def _shrink(img: PILImage.Image, max_edge: int) -> PILImage.Image:
    """Step 5b: a decoded image within `max_edge`, as a new image, so the caller can let go of the full-size
    one (and of the decoder's buffers it holds: libwebp keeps its canvas) before orientation and colour
    conversion copy it. Resampling stays in the decoded mode (alpha is premultiplied by Pillow, which costs one
    full-size copy); palette images are expanded first, as palette indexes cannot be averaged."""
    Image = _pil()
    if img.mode in ("1", "P"):
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if max(img.size) <= max_edge:
        return img
    scale = max_edge / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _to_srgb(img: PILImage.Image) -> PILImage.Image:
    """Step 7a: RGB in sRGB; transparency flattened onto white (JPEG has no alpha)."""
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
            converted = ImageCms.profileToProfile(img, source, srgb, outputMode="RGB")
            if converted is not None:  # None only for an in-place conversion, which this is not
                return converted
        except Exception:  # noqa: BLE001 - a broken profile is ignored, not fatal: the pixels are still good
            log.info("ignoring an unusable ICC profile")
    return img.convert("RGB") if img.mode != "RGB" else img


def _encode(img: PILImage.Image, quality: int) -> bytes:
    out = io.BytesIO()
    # Only pixels are written: no exif=, icc_profile= or comment=, so nothing of the original's metadata.
    img.save(out, format="JPEG", quality=quality, optimize=False, progressive=False)
    return out.getvalue()


def normalize(data: bytes, *, max_bytes: int, max_pixels: int, max_decoded_bytes: int, min_edge: int,
              max_aspect_ratio: float, max_edge: int, thumbnail_edge: int) -> NormalizedImage:
    """The whole pipeline; raises ImageRejected with a reason for anything we refuse."""
    from PIL import ImageOps

    Image = _pil()
    opened, kind = open_checked(data, max_bytes=max_bytes, max_pixels=max_pixels,
                                max_decoded_bytes=max_decoded_bytes)
    check_redesignable(*opened.size, min_edge=min_edge, max_aspect_ratio=max_aspect_ratio)
    img = _shrink(_decode(opened, kind, max_edge), max_edge)
    del opened  # unless _shrink kept it (already small), the full-size pixels go before anything copies them
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
    settings = get_settings()
    return normalize(
        data, max_bytes=max_bytes or settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
        max_decoded_bytes=settings.max_decoded_image_bytes, min_edge=settings.min_image_edge_px,
        max_aspect_ratio=settings.max_image_aspect_ratio, max_edge=settings.max_image_edge_px,
        thumbnail_edge=settings.thumbnail_edge_px,
    )
