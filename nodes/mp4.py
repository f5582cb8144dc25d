"""Streaming MP4 (H.264, yuv420p) writer on PyAV: frames are encoded as they come, so a long video never has
to sit in memory."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import torch


class Mp4Writer:
    def __init__(self, path: str, width: int, height: int, fps: int = 30, crf: int = 19, metadata: dict | None = None):
        self.path = path
        self.container = av.open(path, mode="w")
        for key, value in (metadata or {}).items():
            self.container.metadata[key] = value
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps, 1))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(crf)}
        self.frames = 0

    def write(self, frames: torch.Tensor) -> None:
        """frames: [T, H, W, 3] floats in [0, 1]."""
        pixels = (frames[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        for frame in pixels:
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
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
