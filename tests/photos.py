"""Test photos made with Pillow: phone-like JPEGs with EXIF orientation and GPS, and the hostile files the
upload path must refuse (truncated, bombs, huge headers). Shared by the tests and scripts/bench_images.py."""

from __future__ import annotations

import io
import struct
import zlib

GPS_LATITUDE = (60.0, 10.0, 12.34)  # a recognizable position that must not survive
CAMERA_MAKE = "ZipkkuTestCam"


def _scene(width: int, height: int):
    """A photo-like picture: smooth gradients plus noise (noise keeps JPEG sizes realistic), with a red
    block in the top-left corner so orientation can be checked after processing."""
    from PIL import Image, ImageDraw

    small = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    img = Image.merge("RGB", (small, noise, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, width // 4, height // 4), fill=(255, 0, 0))
    return img


def phone_jpeg(width: int = 4032, height: int = 3024, *, orientation: int = 1, gps: bool = True,
               quality: int = 90) -> bytes:
    """A JPEG the way phones write them: EXIF with Make, Orientation and GPS; the stored pixels are the
    sensor's (landscape) and the orientation tag says how to turn them."""
    from PIL import Image

    img = _scene(width, height)
    exif = Image.Exif()
    exif[0x010F] = CAMERA_MAKE  # Make
    exif[0x0112] = orientation  # Orientation
    if gps:
        exif[0x8825] = {1: "N", 2: GPS_LATITUDE, 3: "E", 4: (24.0, 56.0, 0.0)}
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, exif=exif.tobytes(), comment=b"secret comment")
    return out.getvalue()


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """The JPEG's marker segments before the compressed scan, as (marker, payload): where metadata lives.
    Searching the whole file for a word like b"GPS" is flaky, because the random noise in the compressed
    pixels spells any three bytes now and then."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    segments, at = [], 2
    while at < len(data):
        assert data[at] == 0xFF, f"bad marker at {at}"
        marker = data[at + 1]
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        segments.append((marker, data[at + 4:at + 2 + length]))
        if marker == 0xDA:  # start of scan: compressed pixels follow, no more metadata
            break
        at += 2 + length
    return segments


def jpeg_metadata(data: bytes) -> bytes:
    """Every byte of the JPEG's header segments joined, for asserting what must not survive."""
    return b"".join(payload for _, payload in jpeg_segments(data))


def image_bytes(fmt: str, width: int = 640, height: int = 480, mode: str = "RGB") -> bytes:
    img = _scene(width, height).convert(mode)
    out = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    img.save(out, format=fmt)
    return out.getvalue()


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG (a few hundred KB) that would decode to width*height*3 bytes of zeros."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * (width * 3)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()  # first rows only
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def jpeg_with_header_size(width: int = 30000, height: int = 30000) -> bytes:
    """A small valid JPEG whose SOF header claims width x height (the body is a 16x16 image's)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(out, format="JPEG")
    data = bytearray(out.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def truncated_jpeg() -> bytes:
    data = phone_jpeg(800, 600, gps=False)
    return data[: len(data) // 2]


def _png(width: int, height: int, color_type: int, bit_depth: int, rows: int | None = None) -> bytes:
    """A PNG of zeros: `rows` rows of data (all of them if None; fewer makes a bomb that is refused from its
    header). zlib squeezes a row of zeros to almost nothing, so a 7745x7745 RGBA PNG is ~230 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = b"\x00" * (1 + (width * channels * bit_depth + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows)) + compressor.flush()
    chunks = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if color_type == 3:
        chunks += chunk(b"PLTE", bytes(range(0, 256)) * 3)
    return b"\x89PNG\r\n\x1a\n" + chunks + chunk(b"IDAT", body) + chunk(b"IEND", b"")


_PNG_COLOR_TYPES = {"L": (0, 8), "I;16": (0, 16), "RGB": (2, 8), "RGB;16": (2, 16), "P": (3, 8), "LA": (4, 8),
                    "RGBA": (6, 8), "RGBA;16": (6, 16)}


def png_of(width: int, height: int, kind: str = "RGBA", *, complete: bool = True) -> bytes:
    """A PNG of zeros of one of _PNG_COLOR_TYPES (`RGBA;16` is 16 bits per channel with alpha): complete, so it
    decodes (benchmarks), or with only its first rows (a bomb refused before decoding; cheap to make)."""
    color_type, bit_depth = _PNG_COLOR_TYPES[kind]
    return _png(width, height, color_type, bit_depth, rows=None if complete else 16)


def webp_lossless_bomb(width: int = 7745, height: int = 7745) -> bytes:
    """A ~40-byte lossless WebP that decodes to width x height pixels of one colour: a solid image's lossless
    bitstream spends zero bits per pixel, so only the header's dimensions say how big it is."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(out, format="WEBP", lossless=True)
    data = out.getvalue()
    at = data.index(b"VP8L") + 9  # after the chunk header and the 0x2f signature: 14 bits width-1, 14 height-1
    (bits,) = struct.unpack("<I", data[at:at + 4])
    bits = (bits & ~((1 << 28) - 1)) | ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
    return data[:at] + struct.pack("<I", bits) + data[at + 4:]


def jpeg_of(width: int, height: int, *, progressive: bool = False, subsampling: int = 2, mode: str = "RGB",
            quality: int = 75) -> bytes:
    """A JPEG of a flat picture (small and quick to encode even at 60 MP); 4:2:0 unless subsampling=0 (4:4:4)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, (width, height), (120, 90, 60, 0)[:len(mode)] if mode != "L" else 120).save(
        out, format="JPEG", progressive=progressive, subsampling=subsampling, quality=quality)
    return out.getvalue()


def heic_of(width: int, height: int, mode: str = "RGB") -> bytes:
    """A HEIC of a flat picture (HEVC encoding of a large noisy picture takes minutes; flat takes seconds)."""
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.new(mode, (width, height), (120, 90, 60, 255)[:len(mode)]).save(out, format="HEIF", quality=50)
    return out.getvalue()


def peak_rss_growth():
    """A context manager measuring how far this process's peak RSS rose above its RSS at the start (MiB),
    read after the block as `.mib`. Linux: writing 5 to /proc/self/clear_refs resets the high-water mark."""
    import contextlib

    class Growth:
        mib = 0.0

    def status(field: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

    @contextlib.contextmanager
    def measure():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        start, growth = status("VmRSS"), Growth()
        try:
            yield growth
        finally:
            growth.mib = (status("VmHWM") - start) / 1024

    return measure()
