"""image_header: every frame of an image file from its headers, against what Pillow (ComfyUI's decoder) builds.

The bombs are small: a frame far larger than the canvas its header declares, an animation whose frames together
pass a limit made tiny for the test. The walker must report the size Pillow gives the decoded picture and the
frame count Pillow iterates, for every format, and refuse before any pixel is decoded."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image, ImageSequence

from framepack_core.image_header import ImageHeaderError, check_image_frames, first_frame_size


def _frames(count: int, size: tuple[int, int]) -> list[Image.Image]:
    return [Image.new("RGB", size, (40 * i % 256, 90, 200 - 10 * i % 200)) for i in range(count)]


def _save(frames: list[Image.Image], fmt: str, **options) -> bytes:
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=len(frames) > 1, append_images=frames[1:], **options)
    return out.getvalue()


def gif_declaring(canvas: tuple[int, int], frame: tuple[int, int], junk: bytes = b"") -> bytes:
    """A one-colour GIF of ``frame`` pixels whose logical screen says ``canvas`` (the issue's bomb: Pillow grows
    the canvas to the frame); ``junk`` goes between the header and the frame, where Pillow skips it byte by byte."""
    data = bytearray(_save(_frames(1, frame), "GIF"))
    data[6:10] = struct.pack("<HH", *canvas)
    descriptor = data.index(b"\x2c", 13)
    return bytes(data[:descriptor]) + junk + bytes(data[descriptor:])


def pillow_view(data: bytes) -> tuple[tuple[int, int], int]:
    """(size of the first decoded frame, number of frames ImageSequence gives), as ComfyUI's LoadImage sees them."""
    with Image.open(io.BytesIO(data)) as image:
        size = image.size
        frames = sum(1 for _ in ImageSequence.Iterator(image))
    return size, frames


SAMPLES = {
    "png": lambda: _save(_frames(1, (40, 30)), "PNG"),
    "apng": lambda: _save(_frames(5, (40, 30)), "PNG"),
    "apng_default_image_apart": lambda: _save(_frames(4, (40, 30)), "PNG", default_image=True),
    "gif": lambda: _save(_frames(1, (40, 30)), "GIF"),
    "animated_gif": lambda: _save(_frames(6, (40, 30)), "GIF"),
    "jpeg": lambda: _save(_frames(1, (40, 30)), "JPEG"),
    "mpo": lambda: _save(_frames(3, (40, 30)), "MPO"),
    "webp": lambda: _save(_frames(1, (40, 30)), "WEBP", lossless=True),
    "animated_webp": lambda: _save(_frames(4, (40, 30)), "WEBP"),
    "bmp": lambda: _save(_frames(1, (40, 30)), "BMP"),
    "tiff": lambda: _save(_frames(1, (40, 30)), "TIFF"),
    "tiff_pages": lambda: _save(_frames(3, (40, 30)) + _frames(1, (20, 50)), "TIFF"),
    "gif_bomb": lambda: gif_declaring((1, 1), (90, 70)),
    "gif_bomb_behind_junk": lambda: gif_declaring((1, 1), (90, 70), junk=b"\x00junk\x01" * 5),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_the_walk_finds_the_size_and_the_frames_pillow_decodes(name):
    data = SAMPLES[name]()
    info = check_image_frames(data)
    size, frames = pillow_view(data)
    assert ((info.width, info.height), info.frames) == (size, frames)
    if name == "tiff_pages":
        assert info.all_pixels == 3 * 40 * 30 + 20 * 50  # pages keep their own sizes
    elif frames > 1:
        assert info.all_pixels == frames * size[0] * size[1]  # frames are composited at the canvas size


def test_a_frame_larger_than_the_declared_canvas_is_refused_before_decoding():
    """The issue's GIF (1x1 declared, one 8000x8000 frame) at a small scale: the first header alone passes any limit,
    the frame does not."""
    bomb = gif_declaring((1, 1), (90, 70))
    assert first_frame_size(bomb) == ("gif", 1, 1)  # what the old check read
    with pytest.raises(ImageHeaderError, match=r"90x70 pixels in its frame 1; the limit is 64 pixels per side"):
        check_image_frames(bomb, max_side=64)
    with pytest.raises(ImageHeaderError, match="90x70 pixels in its frame 1"):
        check_image_frames(gif_declaring((1, 1), (90, 70), junk=b"\x00" * 40), max_side=64)
    offset = bytearray(gif_declaring((60, 60), (50, 50)))  # a frame placed at (30, 30) grows the canvas to 80x80
    descriptor = offset.index(b"\x2c", 13)
    offset[descriptor + 1:descriptor + 5] = struct.pack("<HH", 30, 30)
    with pytest.raises(ImageHeaderError, match=r"80x80 pixels in its frame 1.*limit is 64"):
        check_image_frames(bytes(offset), max_side=64)
    assert pillow_view(bytes(offset))[0] == (80, 80)


@pytest.mark.parametrize("name", ["animated_gif", "apng", "animated_webp", "mpo", "tiff_pages"])
def test_animations_are_bounded_by_frame_count_and_by_all_their_pixels(name):
    data = SAMPLES[name]()
    frames = pillow_view(data)[1]
    check_image_frames(data, max_frames=frames)
    with pytest.raises(ImageHeaderError, match=f"more than {frames - 1} frames; FramePack uses the first frame only"):
        check_image_frames(data, max_frames=frames - 1)
    with pytest.raises(ImageHeaderError, match="frames decode to .* pixels in all; the limit for all frames"):
        check_image_frames(data, max_all_pixels=40 * 30 * 2 - 1)


def test_a_huge_header_is_refused_and_bad_headers_say_so():
    ihdr = struct.pack(">IIBBBBB", 13000, 13000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"
    with pytest.raises(ImageHeaderError, match="13000x13000 pixels; the limit is"):
        check_image_frames(png)
    with pytest.raises(ImageHeaderError, match="not a PNG, JPEG"):
        check_image_frames(b"hello world, no picture here")
    with pytest.raises(ImageHeaderError, match="truncated"):
        check_image_frames(b"GIF89a\x01")
    tiff = bytearray(SAMPLES["tiff_pages"]())
    (first,) = struct.unpack_from("<I", tiff, 4)
    # the last page's "next directory" pointing back at the first one: each directory is read once
    last = first
    while True:
        (count,) = struct.unpack_from("<H", tiff, last)
        (following,) = struct.unpack_from("<I", tiff, last + 2 + 12 * count)
        if following == 0:
            break
        last = following
    struct.pack_into("<I", tiff, last + 2 + 12 * count, first)
    assert check_image_frames(bytes(tiff)).frames == 4
