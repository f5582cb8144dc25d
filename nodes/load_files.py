"""FramePack Load Image and FramePack Load Video: the shipped workflows' inputs, read only from ComfyUI's input
folder (framepack_core.input_files) and bounded before anything is decoded.

Why not core LoadImage / LoadVideo (README "Security"): LoadImage decodes every frame of a file (a 47 KB GIF that
declares 1 x 1 pixels with one 8000 x 8000 frame grew ComfyUI by 1.85 GB) and LoadVideo reads any path it is given
(ComfyUI does not hold a V3 combo to its list). FramePack Load Image checks every frame's size, the frame count and
all frames' pixels from the file's headers (framepack_core.image_header) and then decodes the first frame only;
FramePack Load Video hands the file to FramePack Video Conditioning, whose decoder is bounded
(framepack_core.video_input)."""

from __future__ import annotations

import os

import folder_paths
import node_helpers
import numpy as np
import torch
from comfy_api.latest import InputImpl, io
from PIL import Image, ImageOps

from ..framepack_core.errors import InputError
from ..framepack_core.image_header import PILLOW_FORMATS, ImageHeaderError, check_image_frames
from ..framepack_core.input_files import confined_input_file
from ..framepack_core.limits import MAX_IMAGE_BYTES
from .types import CATEGORY


def _input_files(kind: str) -> list[str]:
    """The input folder's files of one content type ("image", "video"), as core LoadImage/LoadVideo list them."""
    folder = folder_paths.get_input_directory()
    names = [n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))]
    return sorted(folder_paths.filter_files_content_types(names, [kind]))


def _confined(name: str, what: str):
    return confined_input_file(folder_paths.get_input_directory(), name, what)


def _validation(name: str, what: str) -> bool | str:
    try:
        _confined(name, what)
    except InputError as err:
        return str(err)
    return True


def _fingerprint(name: str, what: str):
    try:
        stat = _confined(name, what).stat()
    except (InputError, OSError):
        return name  # validation refuses it
    return (stat.st_mtime_ns, stat.st_size)


def read_first_frame(path, name: str) -> torch.Tensor:
    """The file's first frame as an IMAGE [1, H, W, 3] after its headers passed the image limits; nothing else of
    the file is decoded."""
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise InputError(f"image {name!r} is {size} bytes; the limit is {MAX_IMAGE_BYTES}: save it as PNG or JPEG at "
                         "a smaller size")
    data = path.read_bytes()
    try:
        kind = check_image_frames(data).kind
    except ImageHeaderError as err:
        raise InputError(f"image {name!r}: {err}") from None
    try:
        with Image.open(path, formats=PILLOW_FORMATS[kind]) as image:  # the first frame is the one opened
            frame = node_helpers.pillow(ImageOps.exif_transpose, image)
            if frame.mode == "I":  # 16-bit greyscale PNG, scaled as core LoadImage does
                frame = frame.point(lambda value: value * (1 / 255))
            rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise InputError(f"image {name!r} does not decode ({err}); open it in an image editor and save it again as "
                         "PNG or JPEG") from err
    return torch.from_numpy(rgb)[None]


class FramePackLoadImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackLoadImage", display_name="FramePack Load Image", category=CATEGORY,
            description="An image from ComfyUI's input folder, for FramePack's start or end image. Every frame's size, "
                        "the frame count and all frames' pixels are checked from the file's headers before anything "
                        "is decoded; only the first frame is decoded (FramePack uses one picture).",
            inputs=[io.Combo.Input("image", options=_input_files("image"), upload=io.UploadType.image,
                                   tooltip="A file in ComfyUI's input folder (upload one with the button)")],
            outputs=[io.Image.Output(display_name="IMAGE")],
        )

    @classmethod
    def validate_inputs(cls, image):
        return _validation(image, "image")

    @classmethod
    def fingerprint_inputs(cls, image):
        return _fingerprint(image, "image")

    @classmethod
    def execute(cls, image):
        return io.NodeOutput(read_first_frame(_confined(image, "image"), image))


class FramePackLoadVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackLoadVideo", display_name="FramePack Load Video", category=CATEGORY,
            description="A video from ComfyUI's input folder to continue (FramePack Video Conditioning). Unlike core "
                        "Load Video it reads no other path: absolute paths, '..' and links out of the folder are "
                        "refused. The file is decoded by FramePack Video Conditioning, frame by frame, within the "
                        "input video limits.",
            inputs=[io.Combo.Input("file", options=_input_files("video"), upload=io.UploadType.video,
                                   tooltip="A file in ComfyUI's input folder (upload one with the button)")],
            outputs=[io.Video.Output(display_name="VIDEO")],
        )

    @classmethod
    def validate_inputs(cls, file):
        return _validation(file, "video")

    @classmethod
    def fingerprint_inputs(cls, file):
        return _fingerprint(file, "video")

    @classmethod
    def execute(cls, file):
        return io.NodeOutput(InputImpl.VideoFromFile(str(_confined(file, "video"))))
