"""Input videos for continuation, read in order a few frames at a time and never held whole: a video file (PyAV,
imported when a file is read, as in mp4.py) or frames already in memory (ComfyUI's IMAGE batch plus its fps),
optionally fitted to the output size with the image rule (frames.resize_and_center_crop).

A continuation reads its input twice: once for the conditioning (count the frames, then keep only the tail the
history needs) and once more when the MP4 is written (the frames before the seam pass straight into the file).
Frames travel as uint8 RGB [t, H, W, 3], so the pass-through frames reach the encoder exactly as they were read.

Frame rate: the models were trained on 30 fps video, so an input at another rate is refused (29.97 counts as 30):
repeating or dropping frames to reach 30 would change the input's own frames and its motion. Convert it first,
e.g. `ffmpeg -i in.mp4 -r 30 out.mp4`.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Iterator

import torch

from .color import to_rgb24
from .errors import InputError
from .frames import resize_and_center_crop
from .limits import FPS, FPS_TOLERANCE, MAX_INPUT_FRAMES, MAX_INPUT_SIDE

CHUNK_FRAMES = 16  # frames converted at a time: 44 MB of uint8 at 720p
# FFmpeg demuxers that read still images: such a "video" is a picture given where a video belongs
_IMAGE_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")
_IMAGE_HINT = ("it is a picture, not a video: to start from one image use FramePack Image Conditioning "
               "(start_image), to continue a video give a video file")


def check_fps(fps: Fraction | float | None, what: str = "the input video") -> None:
    if fps is None or fps <= 0:
        raise InputError(f"{what} has no frame rate; FramePack continues 30 fps videos: re-encode it at 30 fps, "
                         "e.g. ffmpeg -i in.mp4 -r 30 out.mp4")
    if abs(float(fps) - FPS) > FPS_TOLERANCE:
        raise InputError(f"{what} runs at {float(fps):.3g} fps; FramePack continues {FPS} fps videos only (its models "
                         f"were trained at {FPS} fps): convert it first, e.g. ffmpeg -i in.mp4 -r {FPS} out.mp4")


class FrameSource:
    """Frames read in order: `frames` of `width` x `height` at `fps`."""

    frames: int
    width: int
    height: int
    fps: Fraction

    def iter_rgb24(self) -> Iterator[torch.Tensor]:
        """uint8 RGB chunks [t, height, width, 3], in order, all frames."""
        raise NotImplementedError

    def read_tail(self, count: int) -> torch.Tensor:
        """The last `count` frames, uint8 [count, H, W, 3], reading the whole source but keeping only those."""
        first, seen, kept = self.frames - count, 0, []
        for chunk in self._unfitted_chunks():
            if seen + len(chunk) > first:
                kept.append(self._fit(chunk[max(0, first - seen):]))
            seen += len(chunk)
        self.check_unchanged(seen)
        return torch.cat(kept)

    def _unfitted_chunks(self) -> Iterator[torch.Tensor]:
        return self.iter_rgb24()

    def _fit(self, chunk: torch.Tensor) -> torch.Tensor:
        return chunk

    def check_unchanged(self, seen: int) -> None:
        if seen != self.frames:
            raise InputError(f"the input video now has {seen} frames, {self.frames} when it was first read; it "
                             "changed while the job ran: run the workflow again")


class FrameTensor(FrameSource):
    """An IMAGE batch [N, H, W, C] of floats in [0, 1] (already in memory; converted a chunk at a time)."""

    def __init__(self, images: torch.Tensor, fps: float):
        if images.ndim != 4 or images.shape[-1] < 3:
            raise InputError(f"expected images shaped [frames, height, width, channels], got {list(images.shape)}")
        check_fps(fps, "the input frames")
        self.images = images
        self.frames, self.height, self.width = images.shape[0], images.shape[1], images.shape[2]
        self.fps = Fraction(fps).limit_denominator(1001)

    def iter_rgb24(self) -> Iterator[torch.Tensor]:
        for i in range(0, self.frames, CHUNK_FRAMES):
            yield to_rgb24(self.images[i:i + CHUNK_FRAMES])


class VideoFile(FrameSource):
    """A video file (a path, or the bytes of one in a BytesIO) decoded with PyAV. Opening it checks that it is a
    readable video of a bounded size at 30 fps and counts its frames by decoding them (container metadata can be
    wrong); nothing is kept."""

    def __init__(self, source: str | io.BytesIO, name: str | None = None):
        import av  # noqa: F401  (the clear error below needs it importable)

        self.source, self.name = source, name or (source if isinstance(source, str) else "the input video")
        with self._open() as container:
            if container.format.name in _IMAGE_DEMUXERS or any(
                    n in _IMAGE_DEMUXERS for n in container.format.name.split(",")):
                raise InputError(f"{self.name} is read as {container.format.name}: {_IMAGE_HINT}")
            if not container.streams.video:
                raise InputError(f"{self.name} has no video stream: give a video file (MP4, WebM, MOV, MKV...)")
            stream = container.streams.video[0]
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            if not (0 < self.width <= MAX_INPUT_SIDE and 0 < self.height <= MAX_INPUT_SIDE):
                raise InputError(f"{self.name} is {self.width}x{self.height}; input videos may be at most "
                                 f"{MAX_INPUT_SIDE} pixels on a side: scale it down first")
            check_fps(stream.average_rate, self.name)
            self.fps = Fraction(stream.average_rate)
        self.frames = self._count()

    def _open(self):
        import av

        if isinstance(self.source, io.BytesIO):
            self.source.seek(0)
        try:
            return av.open(self.source, mode="r")
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise InputError(f"{self.name} is not a readable video ({_reason(err)}): give an MP4, WebM, MOV or MKV "
                             "file") from err

    def _frames(self, convert: bool) -> Iterator:
        import av

        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="rgb24") if convert else None
            except av.error.FFmpegError as err:
                raise InputError(f"{self.name} is damaged ({_reason(err)}): re-encode or re-download it") from err

    def _count(self) -> int:
        count = 0
        for _ in self._frames(convert=False):
            count += 1
            if count > MAX_INPUT_FRAMES:
                raise InputError(f"{self.name} has more than {MAX_INPUT_FRAMES} frames: cut it first, only its end "
                                 "matters for the continuation")
        if count == 0:
            raise InputError(f"{self.name} holds no frames: give a video that plays")
        return count

    def iter_rgb24(self) -> Iterator[torch.Tensor]:
        batch = []
        for array in self._frames(convert=True):
            batch.append(torch.from_numpy(array))
            if len(batch) == CHUNK_FRAMES:
                yield torch.stack(batch)
                batch = []
        if batch:
            yield torch.stack(batch)


class Fitted(FrameSource):
    """A source scaled to cover width x height and centre-cropped (the image rule); unchanged at that size."""

    def __init__(self, source: FrameSource, width: int, height: int):
        self.inner, self.width, self.height = source, width, height
        self.frames, self.fps = source.frames, source.fps

    @property
    def resized(self) -> bool:
        return (self.inner.width, self.inner.height) != (self.width, self.height)

    def iter_rgb24(self) -> Iterator[torch.Tensor]:
        for chunk in self.inner.iter_rgb24():
            yield self._fit(chunk)

    def _unfitted_chunks(self) -> Iterator[torch.Tensor]:
        return self.inner.iter_rgb24()  # the tail alone is resized

    def _fit(self, chunk: torch.Tensor) -> torch.Tensor:
        if not self.resized:
            return chunk
        return to_rgb24(resize_and_center_crop(chunk.float() / 255, self.width, self.height))


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__
