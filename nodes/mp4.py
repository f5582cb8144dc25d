"""Streaming MP4 (H.264, yuv420p, BT.709) writer on PyAV: frames are encoded as they come, so a long video never
has to sit in memory.

The same frames give the same file, for two reasons:
- the RGB -> yuv420p conversion is framepack_core.color's integer math, not swscale's, so the encoder's input is a
  fixed function of the frames;
- on CPUs with AVX-512, libx264 (core 165, as bundled with PyAV) is capped at AVX2. Its AVX-512 kernels read
  memory they never wrote, so with the default CPU flags identical frames encode to different packets at widths
  such as 832 or 848; at AVX2 the packets are identical, at the same speed.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import torch

from ..framepack_core.color import rgb_to_yuv420p, to_rgb24

# FFmpeg's enum values: AVCOL_PRI_BT709 = AVCOL_TRC_BT709 = AVCOL_SPC_BT709 = 1, AVCOL_RANGE_MPEG (limited) = 1
BT709, LIMITED_RANGE = 1, 1


def x264_params() -> dict[str, str]:
    """Extra libx264 options: the AVX2 cap on AVX-512 CPUs (module docstring). Asked only there, because naming AVX2
    on a CPU without it would enable instructions that CPU lacks."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()  # "AVX512", "AVX2", "DEFAULT", ... (torch >= 2.1)
    except AttributeError:
        capability = ""
    return {"x264-params": "asm=AVX2"} if "AVX512" in capability else {}


class Mp4Writer:
    def __init__(self, path: str, width: int, height: int, fps: int = 30, crf: int = 19, metadata: dict | None = None):
        self.path = path
        self.container = av.open(path, mode="w")
        for key, value in (metadata or {}).items():
            self.container.metadata[key] = value
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps, 1))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        context = self.stream.codec_context
        context.color_primaries = context.color_trc = context.colorspace = BT709
        context.color_range = LIMITED_RANGE
        self.stream.options = {"crf": str(crf), **x264_params()}
        self.frames = 0

    def write(self, frames: torch.Tensor) -> None:
        """frames: [T, H, W, 3] floats in [0, 1]."""
        for frame in to_rgb24(frames):
            picture = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame).numpy(), format="yuv420p")
            picture.colorspace, picture.color_range = BT709, LIMITED_RANGE
            for packet in self.stream.encode(picture):
                self.container.mux(packet)
            self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        """Closes and deletes a partial file (interrupted or failed decode)."""
        try:
            self.container.close()
        finally:
            if os.path.exists(self.path):
                os.remove(self.path)
