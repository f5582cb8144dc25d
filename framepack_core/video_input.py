"""Input videos for continuation, read in order a few frames at a time and never held whole: a video file (PyAV,
imported when a file is read, as in mp4.py) or frames already in memory (ComfyUI's IMAGE batch plus its fps),
optionally fitted to the output size with the image rule (frames.resize_and_center_crop).

Size and memory (issue 21): what a file costs must not depend on what its header says or on its resolution. The
decoder refuses any frame over MAX_INPUT_FRAME_PIXELS before building it (FFmpeg's max_pixels, also while the file
is probed at open: a MOV whose header says 64x64 but whose frames are 16000x16000 is refused in milliseconds);
every decoded frame's size is checked before it is converted; a file is fitted to the output size inside the
decoder, one frame at a time (crop, scale and RGB conversion in one FFmpeg filter graph), so no frame is ever
converted at the input's size; frames before the tail are decoded but not converted; and pixels x frames is
bounded (MAX_INPUT_PIXEL_FRAMES), since the file is decoded two or three times.

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
from .frames import cover_crop, resize_and_center_crop
from .limits import (FPS, FPS_TOLERANCE, MAX_INPUT_FRAME_PIXELS, MAX_INPUT_FRAMES, MAX_INPUT_PIXEL_FRAMES,
                     MAX_INPUT_SIDE)

CHUNK_FRAMES = 16  # frames converted at a time: 20 MB of uint8 at 480p, 44 MB at 720p
# The decoder-side fit: crop to the covered region, then scale (FFmpeg's bicubic, which widens its filter when
# downscaling, like the antialiased bicubic of frames.resize_and_center_crop) and convert to RGB in one pass
SCALE_FLAGS = "bicubic"
# FFmpeg demuxers that read still images: such a "video" is a picture given where a video belongs
_IMAGE_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")
_IMAGE_HINT = ("it is a picture, not a video: to start from one image use FramePack Image Conditioning "
               "(start_image), to continue a video give a video file")


def _decoder_options() -> dict[str, str]:
    """FFmpeg's decoder refuses a frame over max_pixels before allocating it, so a header that names a small size
    cannot make it build huge frames; set for the probing at open and for every decode."""
    return {"max_pixels": str(MAX_INPUT_FRAME_PIXELS)}


def _size_limits() -> str:
    return (f"input videos may have at most {MAX_INPUT_SIDE} pixels a side and {MAX_INPUT_FRAME_PIXELS} pixels a "
            "frame")


def check_fps(fps: Fraction | float | None, what: str = "the input video") -> None:
    if fps is None or fps <= 0:
        raise InputError(f"{what} has no frame rate; FramePack continues 30 fps videos: re-encode it at 30 fps, "
                         "e.g. ffmpeg -i in.mp4 -r 30 out.mp4")
    if abs(float(fps) - FPS) > FPS_TOLERANCE:
        raise InputError(f"{what} runs at {float(fps):.3g} fps; FramePack continues {FPS} fps videos only (its models "
                         f"were trained at {FPS} fps): convert it first, e.g. ffmpeg -i in.mp4 -r {FPS} out.mp4")


def max_frames_at(width: int, height: int) -> int:
    """How many frames of width x height an input may have: MAX_INPUT_FRAMES, fewer for large frames
    (MAX_INPUT_PIXEL_FRAMES)."""
    return min(MAX_INPUT_FRAMES, MAX_INPUT_PIXEL_FRAMES // max(1, width * height))


class FrameSource:
    """Frames read in order: `frames` of `width` x `height` at `fps`."""

    frames: int
    width: int
    height: int
    fps: Fraction

    def chunks(self, size: tuple[int, int] | None = None, skip: int = 0) -> Iterator[torch.Tensor]:
        """uint8 RGB chunks [t, H, W, 3] of the frames from `skip` on, in order, fitted to `size` (width, height) by
        the image rule when given; the frames before `skip` are read but not converted. Reading to the end checks
        that the source still has `frames` frames."""
        raise NotImplementedError

    def iter_rgb24(self) -> Iterator[torch.Tensor]:
        """uint8 RGB chunks [t, height, width, 3], in order, all frames."""
        return self.chunks()

    def read_tail(self, count: int) -> torch.Tensor:
        """The last `count` frames, uint8 [count, H, W, 3], reading the whole source but keeping only those."""
        return torch.cat(list(self.chunks(skip=self.frames - count)))

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

    def chunks(self, size: tuple[int, int] | None = None, skip: int = 0) -> Iterator[torch.Tensor]:
        for i in range(skip, self.frames, CHUNK_FRAMES):
            chunk = to_rgb24(self.images[i:i + CHUNK_FRAMES])
            if size is not None and size != (self.width, self.height):
                chunk = to_rgb24(resize_and_center_crop(chunk.float() / 255, *size))
            yield chunk


class VideoFile(FrameSource):
    """A video file (a path, or the bytes of one in a BytesIO) decoded with PyAV. Opening it checks that it is a
    readable video of a bounded size at 30 fps and counts its frames by decoding them (container metadata can be
    wrong); nothing is kept. Every frame's size is checked, before it is converted, whenever the file is read."""

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
            if self.width < 1 or self.height < 1:
                # the probe decodes a frame when the header lacks the size; a frame over the limit is not built
                raise InputError(f"{self.name} gives no frame size within the limits ({_size_limits()}): its frames "
                                 "are larger, or it is damaged: scale it down or re-encode it")
            self._check_size(self.width, self.height)
            check_fps(stream.average_rate, self.name)
            self.fps = Fraction(stream.average_rate)
            self.max_frames = max_frames_at(self.width, self.height)
            if stream.frames > self.max_frames:  # what the container says; the count below is what is decoded
                raise self._too_long()
        self.frames = self._count()

    def _check_size(self, width: int, height: int) -> None:
        if not (width <= MAX_INPUT_SIDE and height <= MAX_INPUT_SIDE and width * height <= MAX_INPUT_FRAME_PIXELS):
            raise InputError(f"{self.name} is {width}x{height}; {_size_limits()}: scale it down first")

    def _too_long(self) -> InputError:
        if self.max_frames == MAX_INPUT_FRAMES:
            return InputError(f"{self.name} has more than {MAX_INPUT_FRAMES} frames: cut it first, only its end "
                              "matters for the continuation")
        return InputError(f"{self.name} has more than {self.max_frames} frames of {self.width}x{self.height}; at "
                          f"that size at most {self.max_frames} can be continued (an input may hold "
                          f"{MAX_INPUT_PIXEL_FRAMES} pixels x frames): cut it or scale it down first, only its end "
                          "matters for the continuation")

    def _open(self):
        import av

        if isinstance(self.source, io.BytesIO):
            self.source.seek(0)
        try:
            container = av.open(self.source, mode="r", options=_decoder_options())
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise InputError(f"{self.name} is not a readable video ({_reason(err)}): give an MP4, WebM, MOV or MKV "
                             "file") from err
        for stream in container.streams.video:
            stream.codec_context.options = _decoder_options()
        return container

    def _decoded(self) -> Iterator:
        """Every frame (a PyAV VideoFrame), in order, its size checked before the caller converts it."""
        import av

        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            index = 0
            try:
                for frame in container.decode(stream):
                    if (frame.width, frame.height) != (self.width, self.height):
                        self._check_size(frame.width, frame.height)
                        raise InputError(f"{self.name} changes size at frame {index} ({frame.width}x{frame.height}, "
                                         f"{self.width}x{self.height} before): re-encode it at one size, e.g. "
                                         f"ffmpeg -i in.mp4 -vf scale={self.width}:{self.height} out.mp4")
                    yield frame
                    index += 1
            except av.error.ArgumentError as err:  # EINVAL: among others, a frame over the decoder's max_pixels
                raise InputError(f"{self.name} cannot be decoded ({_reason(err)}): a frame over the limits "
                                 f"({_size_limits()}) or a damaged file: scale it down or re-encode it") from err
            except av.error.FFmpegError as err:
                raise InputError(f"{self.name} is damaged ({_reason(err)}): re-encode or re-download it") from err

    def _count(self) -> int:
        count = 0
        for _ in self._decoded():
            count += 1
            if count > self.max_frames:
                raise self._too_long()
        if count == 0:
            raise InputError(f"{self.name} holds no frames: give a video that plays")
        return count

    def chunks(self, size: tuple[int, int] | None = None, skip: int = 0) -> Iterator[torch.Tensor]:
        fit = None if size is None or size == (self.width, self.height) else _DecoderFit(self.width, self.height,
                                                                                         *size)
        batch, seen = [], 0
        for frame in self._decoded():
            seen += 1
            if seen <= skip:
                continue  # decoded (the codec needs it) but never converted
            batch.append(torch.from_numpy(self._convert(frame, fit)))
            if len(batch) == CHUNK_FRAMES:
                yield torch.stack(batch)
                batch = []
        if batch:
            yield torch.stack(batch)
        self.check_unchanged(seen)

    @staticmethod
    def _convert(frame, fit: _DecoderFit | None):
        """One decoded frame as uint8 RGB [H, W, 3]: exactly as decoded, or fitted inside FFmpeg."""
        return frame.to_ndarray(format="rgb24") if fit is None else fit(frame)


class _DecoderFit:
    """Fits decoded frames of source_width x source_height to width x height inside FFmpeg (crop, scale and RGB
    conversion in one filter graph), so no frame is converted at the input's size: a 2048 x 2048 input costs what
    its output size does."""

    def __init__(self, source_width: int, source_height: int, width: int, height: int):
        self.crop = cover_crop(source_width, source_height, width, height)
        self.size, self.graph = (width, height), None

    def _build(self, frame):
        import av.filter

        graph = av.filter.Graph()
        crop_w, crop_h, left, top = self.crop
        chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                  time_base=frame.time_base or Fraction(1, FPS)),
                 graph.add("crop", f"w={crop_w}:h={crop_h}:x={left}:y={top}:exact=1"),
                 graph.add("scale", f"w={self.size[0]}:h={self.size[1]}:flags={SCALE_FLAGS}"),
                 graph.add("format", "pix_fmts=rgb24"), graph.add("buffersink")]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        return graph

    def __call__(self, frame):
        if self.graph is None:
            self.graph = self._build(frame)
        self.graph.push(frame)
        return self.graph.pull().to_ndarray()


class Fitted(FrameSource):
    """A source scaled to cover width x height and centre-cropped (the image rule); unchanged at that size."""

    def __init__(self, source: FrameSource, width: int, height: int):
        self.inner, self.width, self.height = source, width, height
        self.frames, self.fps = source.frames, source.fps

    @property
    def resized(self) -> bool:
        return (self.inner.width, self.inner.height) != (self.width, self.height)

    def chunks(self, size: tuple[int, int] | None = None, skip: int = 0) -> Iterator[torch.Tensor]:
        if size is not None and size != (self.width, self.height):
            raise ValueError(f"a source fitted to {self.width}x{self.height} cannot be read at {size}")
        return self.inner.chunks((self.width, self.height), skip)

    def check_unchanged(self, seen: int) -> None:
        self.inner.check_unchanged(seen)


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__
