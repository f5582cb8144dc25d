"""Is this an image ComfyUI can use, and how big is it? Checked before an image is uploaded or stored, so that a
small file that decodes to a huge picture (a 500 KB PNG of 13000 x 13000 pixels, a 47 KB GIF that declares 1 x 1
pixels and holds one 8000 x 8000 frame) never reaches a server.

The size of every frame, the frame count and the pixels of all frames together come from the file's own headers
(framepack_core.image_header: PNG/APNG, JPEG/MPO, GIF, BMP, WebP, TIFF), read with the standard library, so the
client needs no imaging package. Where Pillow is installed (the service requires it; ComfyUI ships it) the first
frame is then decoded as well, which also catches files whose header is fine but whose data is not. Animated
images are accepted within the limits; FramePack uses their first frame (FramePack Load Image decodes only that).
"""

from __future__ import annotations

import io

from framepack_core.image_header import (IMAGE_KINDS, PILLOW_FORMATS, ImageHeaderError, check_image_frames,
                                         first_frame_size, sniff_image_kind)
from framepack_core.limits import (MAX_IMAGE_ALL_FRAMES_PIXELS, MAX_IMAGE_FRAMES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE,
                                   MAX_SIDE)

__all__ = ["IMAGE_KINDS", "ImageProblem", "check_image", "image_size", "sniff_image_kind"]


class ImageProblem(ValueError):
    """The bytes are not a usable image; the message says what is wrong and what to do, starting with "it"."""


def image_size(data: bytes) -> tuple[str, int, int]:
    """(kind, width, height) from the image's first header; ImageProblem when it is not one of the formats."""
    try:
        return first_frame_size(data)
    except ImageHeaderError as err:
        raise ImageProblem(str(err)) from None


def _decode(data: bytes, kind: str) -> None:
    """Decodes the first frame with Pillow, where installed, reading the file only as the kind its header showed."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        return  # the header checks are what the client alone can do
    try:
        with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS[kind]) as image:
            image.load()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        raise ImageProblem(f"it does not decode as an image ({err}); open it in an image editor and save it again "
                           "as PNG or JPEG") from err


def check_image(data: bytes, *, max_side: int = MAX_IMAGE_SIDE, max_pixels: int = MAX_IMAGE_PIXELS,
                max_frames: int = MAX_IMAGE_FRAMES, max_all_pixels: int = MAX_IMAGE_ALL_FRAMES_PIXELS) -> str:
    """The image kind ("png", "jpeg", ...) of ``data`` when it is an image within the limits; ImageProblem
    otherwise. Every frame's size, the frame count and all frames' pixels are checked from the headers before
    anything is decoded."""
    try:
        kind = check_image_frames(data, max_side=max_side, max_pixels=max_pixels, max_frames=max_frames,
                                  max_all_pixels=max_all_pixels).kind
    except ImageHeaderError as err:
        hint = f" (videos are at most {MAX_SIDE} pixels wide)" if str(err).endswith("scale it down") else ""
        raise ImageProblem(f"{err}{hint}") from None
    _decode(data, kind)
    return kind
