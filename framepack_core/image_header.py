"""Every frame of an image file, read from its headers alone, so that a picture is refused before a decoder builds
it. Standard library only (the API client imports it without torch or Pillow); linear in the file's size; no pixel
is decoded.

Why every frame and not the first header: ComfyUI's LoadImage decodes every frame of a file (Pillow's
ImageSequence), and Pillow composites each frame of a GIF, APNG or animated WebP onto the whole canvas, growing a
GIF's canvas to its largest frame: a 47 KB GIF that declares 1 x 1 pixels and holds one 8000 x 8000 frame grew
ComfyUI by 1.85 GB. So the checks here are on what a decoder really builds:
- every frame's size (its extent on the canvas) and the canvas it grows to, against MAX_IMAGE_SIDE and
  MAX_IMAGE_PIXELS, as for a still image;
- the frame count, against MAX_IMAGE_FRAMES;
- the pixels of all frames together (frames x canvas for composited animations, the pages' own sizes for a
  multi-page TIFF), against MAX_IMAGE_ALL_FRAMES_PIXELS.

Formats: PNG and APNG, JPEG and MPO (several JPEGs listed in an APP2 "MPF" index), GIF, WebP (also animated), BMP
and TIFF (every page). The walk follows what Pillow reads: a GIF's bytes that are no block are skipped one at a
time as Pillow does, so no frame hides behind junk; a JPEG's every frame header before its scan is checked (Pillow
takes the last).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

from .errors import InputError
from .limits import MAX_IMAGE_ALL_FRAMES_PIXELS, MAX_IMAGE_FRAMES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE

IMAGE_KINDS = "PNG, JPEG, WebP, BMP, GIF or TIFF"
# Pillow's format names for the kinds above: a decoder given a file that was checked as one kind reads only that
PILLOW_FORMATS = {"png": ("PNG",), "jpeg": ("JPEG", "MPO"), "gif": ("GIF",), "webp": ("WEBP",), "bmp": ("BMP",),
                  "tiff": ("TIFF",)}


class ImageHeaderError(InputError):
    """Not a usable image, or one over the limits; the message starts with "it" (the caller names the file)."""


@dataclass(frozen=True)
class ImageFrames:
    """What decoding the file builds: the first frame's size (a GIF's canvas grown to its frames), the frame count
    and the pixels of all frames together."""

    kind: str
    width: int
    height: int
    frames: int
    all_pixels: int


def sniff_image_kind(head: bytes) -> str | None:
    """The image format from a file's first bytes (the formats ComfyUI's LoadImage users give), or None."""
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
        raise ImageHeaderError("it does not decode as an image (its header is cut off: the file is truncated)") \
            from None


# Each reader returns (declared canvas, the frames' sizes, composited): a composited format decodes every frame at
# the canvas size, which grows to the frames' extents; otherwise each frame (page) is decoded at its own size.
Reader = tuple[tuple[int, int], Iterator[tuple[int, int]], bool]


def _png(data: bytes) -> Reader:
    length, chunk = _unpack(">I4s", data, 8)
    if chunk != b"IHDR" or length != 13:
        raise ImageHeaderError("it does not decode as an image (a PNG signature without an IHDR header)")
    canvas = _unpack(">II", data, 16)
    return canvas, _apng_frames(data), True


def _apng_frames(data: bytes) -> Iterator[tuple[int, int]]:
    """The extent of every APNG frame (fcTL chunks), and the default image when it is not the first of them (Pillow
    then gives it as a frame of its own); none for a still PNG. Chunk by chunk, each step forward."""
    pos, animated, controls = 8, False, 0
    while pos + 8 <= len(data):
        length, chunk = struct.unpack_from(">I4s", data, pos)
        if chunk == b"acTL":
            animated = True
        elif chunk == b"IDAT" and animated and not controls:
            controls = 1  # the default image, decoded at the canvas size; once
            yield struct.unpack_from(">II", data, 16)
        elif chunk == b"fcTL" and pos + 28 <= len(data):
            controls += 1
            width, height, x, y = struct.unpack_from(">IIII", data, pos + 12)
            yield x + width, y + height
        elif chunk == b"IEND":
            return
        pos += 12 + length


_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_headers(data: bytes, start: int) -> tuple[list[tuple[int, int]], int | None]:
    """Every frame header's (width, height) of the JPEG at ``start`` up to its scan, and where its MPF index (an APP2
    "MPF" segment's TIFF header) is, if any. Segment by segment: each step moves forward by the segment length."""
    damaged = ImageHeaderError("it does not decode as an image (its JPEG segments are damaged)")
    sizes, mpf, offset = [], None, start + 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise damaged
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            offset += 2
            continue
        (length,) = _unpack(">H", data, offset + 2)
        if length < 2:
            raise damaged
        if marker in _JPEG_FRAMES:
            height, width = _unpack(">HH", data, offset + 5)
            sizes.append((width, height))
        elif marker == 0xE2 and data[offset + 4:offset + 8] == b"MPF\x00":
            mpf = offset + 8
        elif marker in (0xD9, 0xDA):  # end of image / start of scan
            break
        offset += 2 + length
    if not sizes:
        raise ImageHeaderError("it does not decode as an image (a JPEG without a frame header: damaged or truncated)")
    return sizes, mpf


def _jpeg(data: bytes) -> Reader:
    sizes, mpf = _jpeg_headers(data, 0)
    # Pillow decodes with the last frame header; an MPO's later pictures are decoded at the first one's size
    return sizes[-1], _jpeg_frames(data, sizes, mpf), mpf is not None


def _jpeg_frames(data: bytes, sizes: list[tuple[int, int]], mpf: int | None) -> Iterator[tuple[int, int]]:
    yield from sizes[:-1]  # frame headers Pillow passes over are still checked, as pictures of their own
    yield sizes[-1]
    if mpf is None:
        return
    order = "<" if data[mpf:mpf + 2] == b"II" else ">"
    (ifd,) = _unpack(order + "I", data, mpf + 4)
    (count,) = _unpack(order + "H", data, mpf + ifd)
    images, entries = 1, None
    for i in range(min(count, 64)):  # the MP index IFD has a handful of entries
        tag, _, length, value = _unpack(order + "HHII", data, mpf + ifd + 2 + 12 * i)
        if tag == 0xB001:
            images = value
        elif tag == 0xB002:
            entries = (value, length // 16)
    if images <= 1 or entries is None:
        return  # Pillow reads it as one plain JPEG
    first, listed = entries
    end = 0  # the pictures follow each other: overlapping ones are no MPO a camera writes, and would be walked twice
    for i in range(1, min(images, listed)):
        _, size, offset = _unpack(order + "III", data, mpf + first + 16 * i)
        where = mpf + offset
        if where < end or data[where:where + 2] != b"\xff\xd8":
            raise ImageHeaderError("it does not decode as an image (its MPO index lists a picture that is not there)")
        end = where + size
        yield from _jpeg_headers(data, where)[0]


def _gif(data: bytes) -> Reader:
    screen = _unpack("<HH", data, 6)
    (flags,) = _unpack("B", data, 10)
    start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    return screen, _gif_frames(data, start), True


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos


def _gif_frames(data: bytes, pos: int) -> Iterator[tuple[int, int]]:
    """The extent (left + width, top + height) of every image descriptor, in order."""
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            return
        if block == 0x21:  # extension: a label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:
            if pos + 10 > len(data):
                return
            left, top, width, height, flags = struct.unpack_from("<HHHHB", data, pos + 1)
            yield left + width, top + height
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # the local colour table
            pos = _skip_sub_blocks(data, pos + 1)  # the LZW code size, then the image data
        else:
            pos += 1  # Pillow skips a byte that starts no block and looks at the next one


def _bmp(data: bytes) -> Reader:
    (header_size,) = _unpack("<I", data, 14)
    if header_size == 12:
        size = _unpack("<HH", data, 18)
    elif header_size in (40, 52, 56, 64, 108, 124):
        width, height = _unpack("<ii", data, 18)
        size = (width, abs(height))  # a negative height means rows stored top-down
    else:
        raise ImageHeaderError("it does not decode as an image (it starts with 'BM' but has no BMP header)")
    return size, iter(()), False


def _u24(data: bytes, pos: int) -> int:
    low, high = _unpack("<HB", data, pos)
    return low | high << 16


def _vp8_size(data: bytes, pos: int, chunk: bytes) -> tuple[int, int]:
    if chunk == b"VP8 ":
        width, height = _unpack("<HH", data, pos + 14)
        return width & 0x3FFF, height & 0x3FFF
    (bits,) = _unpack("<I", data, pos + 9)
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1


def _webp(data: bytes) -> Reader:
    chunk = data[12:16]
    if chunk in (b"VP8 ", b"VP8L"):
        return _vp8_size(data, 12, chunk), iter(()), False
    if chunk == b"VP8X":
        return (_u24(data, 24) + 1, _u24(data, 27) + 1), _webp_frames(data), True
    raise ImageHeaderError("it does not decode as an image (a WebP without a VP8/VP8L/VP8X header)")


def _webp_frames(data: bytes) -> Iterator[tuple[int, int]]:
    """An extended WebP's frames (ANMF: offset and size on the canvas) or its still picture (VP8/VP8L)."""
    (length,) = _unpack("<I", data, 16)
    pos = 20 + length + (length & 1)  # after the RIFF header and the VP8X chunk
    while pos + 8 <= len(data):
        chunk, length = struct.unpack_from("<4sI", data, pos)
        if chunk == b"ANMF":
            left, top = 2 * _u24(data, pos + 8), 2 * _u24(data, pos + 11)
            yield left + _u24(data, pos + 14) + 1, top + _u24(data, pos + 17) + 1
        elif chunk in (b"VP8 ", b"VP8L"):
            yield _vp8_size(data, pos, chunk)
        pos += 8 + length + (length & 1)


def _tiff(data: bytes) -> Reader:
    pages = _tiff_pages(data, "<" if data[:2] == b"II" else ">")
    first = next(pages, None)
    if first is None:
        raise ImageHeaderError("it does not decode as an image (a TIFF whose first directory gives no width and "
                               "height)")
    return first, _chain(first, pages), False


def _chain(first: tuple[int, int], rest: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    yield first
    yield from rest


def _tiff_pages(data: bytes, order: str) -> Iterator[tuple[int, int]]:
    """(width, height) of every page: the directories chained from the header, each visited once."""
    (ifd,) = _unpack(order + "I", data, 4)
    seen = set()
    while ifd and ifd not in seen:
        seen.add(ifd)
        (count,) = _unpack(order + "H", data, ifd)
        size: dict[int, int] = {}
        for i in range(count):  # entries are sorted by tag; width (256) and height (257) are the first ones
            tag, kind, _, value = _unpack(order + "HHI4s", data, ifd + 2 + 12 * i)
            if tag > 257:
                break
            if tag in (256, 257):
                size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2] if kind == 3 else value)[0]
        if len(size) != 2:
            return
        yield size[256], size[257]
        (ifd,) = _unpack(order + "I", data, ifd + 2 + 12 * count)


_READERS = {"png": _png, "jpeg": _jpeg, "gif": _gif, "bmp": _bmp, "webp": _webp, "tiff": _tiff}


def first_frame_size(data: bytes) -> tuple[str, int, int]:
    """(kind, width, height) from the image's first header, nothing more; ImageHeaderError when it is not one of
    the formats."""
    kind = sniff_image_kind(data[:16])
    if kind is None:
        raise ImageHeaderError(f"it is not a {IMAGE_KINDS} image; convert it to PNG or JPEG")
    (width, height), _, _ = _READERS[kind](data)
    return kind, width, height


def _check_size(width: int, height: int, max_side: int, max_pixels: int, what: str) -> None:
    if width > max_side or height > max_side or width * height > max_pixels:
        raise ImageHeaderError(f"it is {width}x{height} pixels{what}; the limit is {max_side} pixels per side and "
                               f"{max_pixels} pixels in all: scale it down")


def check_image_frames(data: bytes, *, max_side: int = MAX_IMAGE_SIDE, max_pixels: int = MAX_IMAGE_PIXELS,
                       max_frames: int = MAX_IMAGE_FRAMES,
                       max_all_pixels: int = MAX_IMAGE_ALL_FRAMES_PIXELS) -> ImageFrames:
    """What decoding every frame of ``data`` builds, when all of it is within the limits (module docstring);
    ImageHeaderError naming the first limit passed otherwise. Stops at the first frame over a limit."""
    kind = sniff_image_kind(data[:16])
    if kind is None:
        raise ImageHeaderError(f"it is not a {IMAGE_KINDS} image; convert it to PNG or JPEG")
    (width, height), frames, composited = _READERS[kind](data)
    if width < 1 or height < 1:
        raise ImageHeaderError(f"it does not decode as an image (its header says {width}x{height} pixels)")
    _check_size(width, height, max_side, max_pixels, "")
    declared, count, pages_pixels = (width, height), 0, 0
    for frame_width, frame_height in frames:
        count += 1
        if count > max_frames:
            raise ImageHeaderError(f"it has more than {max_frames} frames; FramePack uses the first frame only: save "
                                   "that frame as PNG")
        _check_size(frame_width, frame_height, max_side, max_pixels, f" in its frame {count}")
        if composited:  # every frame is decoded onto the canvas, which grows to hold it
            width, height = max(width, frame_width), max(height, frame_height)
            _check_size(width, height, max_side, max_pixels,
                        f" once its frame {count} is placed (its header declares {declared[0]}x{declared[1]})")
        else:
            pages_pixels += frame_width * frame_height
        all_pixels = max(count, 1) * width * height if composited else pages_pixels
        if all_pixels > max_all_pixels:
            raise ImageHeaderError(
                f"its first {count} frames decode to {all_pixels} pixels in all; the limit for all frames together "
                f"is {max_all_pixels}: FramePack uses the first frame only: save that frame as PNG")
    count = max(count, 1)
    all_pixels = count * width * height if composited else max(pages_pixels, width * height)
    return ImageFrames(kind, width, height, count, all_pixels)
