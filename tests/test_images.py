"""lib.images on real files made with Pillow: orientation, metadata stripping, bounds, formats, and every
hostile input refused with its reason, fast and before decoding."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from lib import images
from tests import photos

# The defaults of lib/config.py.
LIMITS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 60_000_000, "max_decoded_bytes": 128 * 2**20, "min_edge": 256,
          "max_aspect_ratio": 4.0, "max_edge": 2048, "thumbnail_edge": 384}
OPEN_LIMITS = {key: LIMITS[key] for key in ("max_bytes", "max_pixels", "max_decoded_bytes")}


def normalize(data: bytes, **overrides) -> images.NormalizedImage:
    return images.normalize(data, **{**LIMITS, **overrides})


def opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def is_red(pixel) -> bool:
    r, g, b = pixel[:3]
    return r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(("kind", "data"), [
    ("image/jpeg", photos.image_bytes("JPEG")),
    ("image/png", photos.image_bytes("PNG")),
    ("image/webp", photos.image_bytes("WEBP")),
    ("image/heic", photos.image_bytes("HEIF")),
    (None, b"GIF89a......"),
    (None, b"hello, I am text renamed to photo.jpg"),
    (None, b""),
])
def test_sniff_reads_the_bytes_not_the_name(kind, data):
    assert images.sniff(data) == kind


def test_phone_photo_is_oriented_bounded_and_stripped():
    # Orientation 6: the sensor's landscape pixels must be turned 90 degrees clockwise; the red block that
    # is top-left in the stored pixels ends up top-right.
    source = photos.phone_jpeg(4032, 3024, orientation=6)
    assert b"ZipkkuTestCam" in source and opened(source).getexif().get_ifd(0x8825)  # the input has GPS

    result = normalize(source)

    assert (result.width, result.height) == opened(result.jpeg).size
    assert result.height > result.width  # portrait after orientation
    assert max(result.width, result.height) <= 2048
    assert max(result.width, result.height) >= 2048 * images.DRAFT_SLACK
    out = opened(result.jpeg)
    assert out.format == "JPEG" and out.mode == "RGB"
    assert is_red(out.getpixel((out.width - 5, 5))) and not is_red(out.getpixel((5, 5)))
    # Nothing of the original's metadata survives: no EXIF (so no GPS, no orientation), no comment, no ICC.
    assert len(out.getexif()) == 0
    assert not {"exif", "comment", "icc_profile", "xmp"} & set(out.info)
    for data in (result.jpeg, result.thumbnail):
        markers = {marker for marker, _ in photos.jpeg_segments(data)}
        assert not markers & {0xE1, 0xE2, 0xFE}  # no APP1 (EXIF, XMP), APP2 (ICC) or COM segment
        for needle in (b"Exif", b"ZipkkuTestCam", b"secret comment", b"GPS"):
            assert needle not in photos.jpeg_metadata(data)
    thumb = opened(result.thumbnail)
    assert max(thumb.size) == 384 and thumb.size == (result.thumbnail_width, result.thumbnail_height)
    assert len(thumb.getexif()) == 0


@pytest.mark.parametrize(("orientation", "red_corner"), [(1, "top_left"), (3, "bottom_right"), (8, "bottom_left")])
def test_each_exif_orientation_is_applied(orientation, red_corner):
    out = opened(normalize(photos.phone_jpeg(400, 300, orientation=orientation, gps=False)).jpeg)
    corners = {"top_left": (5, 5), "bottom_right": (out.width - 5, out.height - 5),
               "bottom_left": (5, out.height - 5)}
    assert is_red(out.getpixel(corners[red_corner]))
    assert out.size == ((400, 300) if orientation in (1, 3) else (300, 400))


def test_small_images_are_not_upscaled():
    result = normalize(photos.image_bytes("JPEG", 400, 300))
    assert (result.width, result.height) == (400, 300)


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "L"),
                                           ("PNG", "I;16"), ("WEBP", "RGB"), ("WEBP", "RGBA"), ("HEIF", "RGB"),
                                           ("JPEG", "CMYK"), ("JPEG", "L")])
def test_every_accepted_format_becomes_an_srgb_jpeg(fmt, mode):
    result = normalize(photos.image_bytes(fmt, 400, 300, mode))
    out = opened(result.jpeg)
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (400, 300))
    assert result.source_type == images.sniff(photos.image_bytes(fmt, 8, 8, mode))


def test_transparency_is_flattened_onto_white():
    img = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    out = opened(normalize(buffer.getvalue()).jpeg)
    assert min(out.getpixel((150, 150))) > 245


def test_icc_profile_is_applied_then_dropped():
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # any non-sRGB profile
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    photos._scene(256, 256).save(buffer, format="JPEG", icc_profile=srgb)
    out = opened(normalize(buffer.getvalue()).jpeg)
    assert "icc_profile" not in out.info
    broken = io.BytesIO()
    photos._scene(256, 256).save(broken, format="JPEG", icc_profile=profile[:40])  # damaged profile: ignored
    assert normalize(broken.getvalue()).width == 256


@pytest.mark.parametrize(("data", "code"), [
    (b"", "empty"),
    (b"just some text renamed to room.jpg\n" * 10, "not_an_image"),
    (b"GIF89a" + b"\x00" * 100, "not_an_image"),
    (photos.truncated_jpeg(), "truncated"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "corrupt"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "corrupt"),
    (photos.png_bomb(20000, 20000), "too_many_pixels"),
    (photos.png_bomb(9000, 9000), "too_many_pixels"),  # 81 MP: over our limit, under Pillow's own warning
    (photos.jpeg_with_header_size(30000, 30000), "too_many_pixels"),
])
def test_hostile_inputs_are_rejected_with_a_reason(data, code):
    started = time.perf_counter()
    with pytest.raises(images.ImageRejected) as caught:
        normalize(data)
    assert caught.value.code == code
    assert caught.value.message
    # Refused from the header: no bomb is ever decompressed.
    assert time.perf_counter() - started < 0.5


def test_too_many_bytes_is_refused_before_parsing():
    with pytest.raises(images.ImageRejected) as caught:
        normalize(photos.image_bytes("PNG"), max_bytes=1024)
    assert caught.value.code == "too_large"
    assert "1024" in caught.value.message


def test_pixel_limit_is_configurable():
    with pytest.raises(images.ImageRejected) as caught:
        normalize(photos.image_bytes("PNG", 200, 100), max_pixels=10_000)
    assert caught.value.code == "too_many_pixels" and "200x100" in caught.value.message


# --- memory: decoded bytes, not only pixels -------------------------------------------------------------------

@pytest.mark.parametrize(("data", "decoded_mib"), [
    # Under the 60 MP pixel limit, yet each decodes to far more than the 128 MiB a full-size decode may take.
    (photos.webp_lossless_bomb(7745, 7745), 229),  # ~40 bytes; took an instance from 370 MB to 1.4 GB
    (photos.png_of(7745, 7745, "RGBA"), 229),  # ~230 KB, complete: it would really decode
    (photos.png_of(7745, 7745, "RGBA;16", complete=False), 229),  # 16 bits per channel
    (photos.png_of(6000, 6000, "RGB;16", complete=False), 137),  # no alpha: RGB is stored as 4 bytes too
    (photos.png_of(7745, 7745, "P", complete=False), 229),  # a palette is expanded to RGB before resampling
])
def test_photos_that_decode_to_too_many_bytes_are_refused_before_decoding(data, decoded_mib):
    started = time.perf_counter()
    with photos.peak_rss_growth() as growth, pytest.raises(images.ImageRejected) as caught:
        normalize(data)
    assert caught.value.code == "decoded_too_large"
    assert f"{decoded_mib} MiB" in caught.value.message and "128 MiB" in caught.value.message
    assert time.perf_counter() - started < 1.0
    assert growth.mib < 30  # a decode would add 229 MiB at least


@pytest.mark.parametrize(("data", "accepted"), [
    (photos.png_of(5792, 5792, "RGBA", complete=False), True),  # 127.97 MiB: the largest square RGBA accepted
    (photos.png_of(5793, 5793, "RGBA", complete=False), False),
    (photos.png_of(7745, 7745, "I;16", complete=False), True),  # 16-bit grey: 2 bytes a pixel, 114 MiB
    (photos.png_of(7745, 7745, "L", complete=False), True),  # 8-bit grey: 1 byte a pixel
    (photos.jpeg_with_header_size(7745, 7745), True),  # JPEG decodes reduced: only the pixel limit applies
])
def test_the_decoded_bytes_count_the_mode_and_spare_jpeg(data, accepted):
    try:
        images.open_checked(data, **OPEN_LIMITS)
        refused = None
    except images.ImageRejected as rejected:
        refused = rejected.code
    assert refused is None if accepted else refused == "decoded_too_large"


def test_heic_counts_too_and_the_limit_is_configurable():
    heic = photos.image_bytes("HEIF", 640, 480)  # 1.2 MiB decoded
    with pytest.raises(images.ImageRejected) as caught:
        normalize(heic, max_decoded_bytes=2**20)
    assert caught.value.code == "decoded_too_large" and "1 MiB" in caught.value.message
    assert normalize(heic).width == 640


def test_a_photo_at_the_memory_limit_decodes_without_full_size_copies():
    """The full-size pixels are shrunk as soon as they are decoded, so an RGBA PNG at the limit costs its
    decoded bytes about twice (Pillow premultiplies alpha into a copy to resample), not four times.
    scripts/bench_image_memory.py measures every format in fresh processes."""
    data = photos.png_of(5792, 5792, "RGBA")
    with photos.peak_rss_growth() as growth:
        result = normalize(data)
    assert (result.width, result.height) == (2048, 2048)
    assert growth.mib < 2.5 * 128


# --- photos too small to redesign -------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "code"), [
    ((1, 1), "too_small"), ((2048, 1), "too_small"), ((1, 2048), "too_small"), ((255, 400), "too_small"),
    ((1100, 256), "too_narrow"), ((300, 1300), "too_narrow"),
])
def test_photos_too_small_or_narrow_to_redesign_are_refused(size, code):
    with pytest.raises(images.ImageRejected) as caught:
        normalize(photos.image_bytes("PNG", *size))
    assert caught.value.code == code
    assert ("256" if code == "too_small" else "4 times") in caught.value.message


@pytest.mark.parametrize("size", [(256, 256), (1024, 256), (256, 1024)])
def test_the_smallest_redesignable_photos_are_accepted(size):
    result = normalize(photos.image_bytes("JPEG", *size))
    assert (result.width, result.height) == size
