"""Is this an image ComfyUI's LoadImage can use, and how big is it? Checked before an image is uploaded or
stored, so that a small file that decodes to a huge picture (a 500 KB PNG of 13000 x 13000 pixels needs GBs in
the server) never reaches a server.

The size comes from the file's own header (PNG, JPEG, GIF, BMP, WebP, TIFF), read with the standard library, so the
client needs no imaging package. Where Pillow is installed (the service requires it; ComfyUI ships it) the image is
then decoded in full as well, which also catches files whose header is fine but whose data is not.
"""

from __future__ import annotations

import io
import struct

from framepack_core.limits import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MAX_SIDE

IMAGE_KINDS = "PNG, JPEG, WebP, BMP, GIF or TIFF"


class ImageProblem(ValueError):
    """The bytes are not a usable image; the message says what is wrong and what to do, starting with "it"."""


def sniff_image_kind(head: bytes) -> str | None:
    """The image format from a file's first bytes (the formats ComfyUI's LoadImage reads), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    return None


def _unpack(fmt: str, data: bytes, offset: int) -> tuple:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise ImageProblem("it does not decode as an image (its header is cut off: the file is truncated)") from None


def _png(data: bytes) -> tuple[int, int]:
    length, chunk = _unpack(">I4s", data, 8)
    if chunk != b"IHDR" or length != 13:
        raise ImageProblem("it does not decode as an image (a PNG signature without an IHDR header)")
    return _unpack(">II", data, 16)


_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> tuple[int, int]:
    offset = 2
    while offset + 4 <= len(data):  # segment by segment: each step moves forward by the segment length
        if data[offset] != 0xFF:
            raise ImageProblem("it does not decode as an image (its JPEG segments are damaged)")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            offset += 2
            continue
        (length,) = _unpack(">H", data, offset + 2)
        if length < 2:
            raise ImageProblem("it does not decode as an image (its JPEG segments are damaged)")
        if marker in _JPEG_FRAMES:
            height, width = _unpack(">HH", data, offset + 5)
            return width, height
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        offset += 2 + length
    raise ImageProblem("it does not decode as an image (a JPEG without a frame header: damaged or truncated)")


def _gif(data: bytes) -> tuple[int, int]:
    return _unpack("<HH", data, 6)


def _bmp(data: bytes) -> tuple[int, int]:
    (header_size,) = _unpack("<I", data, 14)
    if header_size == 12:
        return _unpack("<HH", data, 18)
    if header_size not in (40, 52, 56, 64, 108, 124):
        raise ImageProblem("it does not decode as an image (it starts with 'BM' but has no BMP header)")
    width, height = _unpack("<ii", data, 18)
    return width, abs(height)  # a negative height means rows stored top-down


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = _unpack("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = _unpack("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w0, w1, w2, h0, h1, h2 = _unpack("<6B", data, 24)
        return (w0 | w1 << 8 | w2 << 16) + 1, (h0 | h1 << 8 | h2 << 16) + 1
    raise ImageProblem("it does not decode as an image (a WebP without a VP8/VP8L/VP8X header)")


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = _unpack(order + "I", data, 4)
    (count,) = _unpack(order + "H", data, ifd)
    size: dict[int, int] = {}
    for i in range(min(count, 4096)):  # the first image's directory; its entries are 12 bytes each
        tag, kind, _, value = _unpack(order + "HHI4s", data, ifd + 2 + 12 * i)
        if tag in (256, 257):
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2] if kind == 3 else value)[0]
    if len(size) != 2:
        raise ImageProblem("it does not decode as an image (a TIFF whose first directory gives no width and height)")
    return size[256], size[257]


_SIZE_READERS = {"png": _png, "jpeg": _jpeg, "gif": _gif, "bmp": _bmp, "webp": _webp, "tiff": _tiff}


def image_size(data: bytes) -> tuple[str, int, int]:
    """(kind, width, height) from the image's header; ImageProblem when it is not one of the formats."""
    kind = sniff_image_kind(data[:16])
    if kind is None:
        raise ImageProblem(f"it is not a {IMAGE_KINDS} image; convert it to PNG or JPEG")
    width, height = _SIZE_READERS[kind](data)
    return kind, width, height


def _decode(data: bytes) -> None:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        return  # the header checks above are what the client alone can do
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        raise ImageProblem(f"it does not decode as an image ({err}); open it in an image editor and save it again "
                           "as PNG or JPEG") from err


def check_image(data: bytes, *, max_side: int = MAX_IMAGE_SIDE, max_pixels: int = MAX_IMAGE_PIXELS) -> str:
    """The image kind ("png", "jpeg", ...) of ``data`` when it is an image within the size limits; ImageProblem
    otherwise. The size is checked from the header before anything is decoded."""
    kind, width, height = image_size(data)
    if width < 1 or height < 1:
        raise ImageProblem(f"it does not decode as an image (its header says {width}x{height} pixels)")
    if width > max_side or height > max_side or width * height > max_pixels:
        raise ImageProblem(f"it is {width}x{height} pixels; the limit is {max_side} pixels per side and "
                           f"{max_pixels} pixels in all: scale it down (videos are at most {MAX_SIDE} pixels wide)")
    _decode(data)
    return kind
