"""Input videos for tests and benchmarks: moving test pictures written with PyAV, losslessly (PNG frames in a MOV,
so every decoded frame is exactly the frame written) or as H.264 MP4s like a user's."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np


def moving_frames(count: int, height: int, width: int, seed: int = 0, start: int = 0) -> Iterable[np.ndarray]:
    """uint8 RGB frames [height, width, 3]: a gradient drifting right, a bright square moving down, mild noise,
    so consecutive frames differ and every frame is distinct. Frame i of one call is frame start + i."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(start, start + count):
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = (xx * 255 // max(1, width - 1) + 3 * i) % 256
        frame[..., 1] = (yy * 255 // max(1, height - 1)) % 256
        frame[..., 2] = (40 + 7 * i) % 256
        side = max(2, min(height, width) // 4)
        top = (2 * i) % max(1, height - side)
        frame[top:top + side, width // 3:width // 3 + side] = 250
        yield np.clip(frame.astype(np.int16) + rng.integers(-4, 5, frame.shape), 0, 255).astype(np.uint8)


def write_video(path: str | Path, frames: Iterable[np.ndarray], width: int, height: int, fps: int = 30,
                lossless: bool = True, crf: int = 18) -> Path:
    """Writes frames (uint8 RGB [H, W, 3]) to `path`: PNG frames in a MOV when lossless, else H.264 (yuv420p)."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png" if lossless else "libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb24" if lossless else "yuv420p"
        if not lossless:
            stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in stream.encode(picture if lossless else picture.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
