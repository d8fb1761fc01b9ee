"""lib.images on real files made with Pillow: orientation, metadata stripping, bounds, formats, and every
hostile input refused with its reason, fast and before decoding."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from lib import images
from tests import photos

LIMITS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 60_000_000, "max_edge": 2048, "thumbnail_edge": 384}


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
    result = normalize(photos.image_bytes("JPEG", 300, 200))
    assert (result.width, result.height) == (300, 200)


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "L"),
                                           ("PNG", "I;16"), ("WEBP", "RGB"), ("WEBP", "RGBA"), ("HEIF", "RGB"),
                                           ("JPEG", "CMYK"), ("JPEG", "L")])
def test_every_accepted_format_becomes_an_srgb_jpeg(fmt, mode):
    result = normalize(photos.image_bytes(fmt, 320, 240, mode))
    out = opened(result.jpeg)
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (320, 240))
    assert result.source_type == images.sniff(photos.image_bytes(fmt, 8, 8, mode))


def test_transparency_is_flattened_onto_white():
    img = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    out = opened(normalize(buffer.getvalue()).jpeg)
    assert min(out.getpixel((25, 25))) > 245


def test_icc_profile_is_applied_then_dropped():
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # any non-sRGB profile
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    photos._scene(64, 64).save(buffer, format="JPEG", icc_profile=srgb)
    out = opened(normalize(buffer.getvalue()).jpeg)
    assert "icc_profile" not in out.info
    broken = io.BytesIO()
    photos._scene(64, 64).save(broken, format="JPEG", icc_profile=profile[:40])  # damaged profile: ignored
    assert normalize(broken.getvalue()).width == 64


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
