"""Streaming MP4 (H.264, yuv420p, BT.709) writer on PyAV: frames are encoded as they come, so a long video never
has to sit in memory. PyAV (`av`, which ComfyUI ships) is imported when a file is written, so the rest of the core
does not need it.

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
from typing import Callable, Sequence

import torch

from .color import rgb_to_yuv420p, to_rgb24
from .errors import InputError
from .frames import check_video_latents, decode_chunks, decode_video, return_freed_memory, video_size
from .limits import DEFAULT_CRF, FPS, MAX_RETURNED_FRAMES_BYTES
from .planning import SectionPlan
from .video_input import FrameSource

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
    """Writes a new file: the path is opened exclusively (an existing file is never overwritten) and by Python, so
    a path that FFmpeg would read differently (cut at a NUL byte, its container chosen by a suffix after it) is
    refused rather than reinterpreted.

    ``metadata``: container tags, string values. They are written as the MP4's own key/value tags
    (movflags=use_metadata_tags, as ComfyUI's SaveVideo writes them), which keeps keys such as "prompt" and
    "workflow" that the plain MP4 muxer drops; ComfyUI restores the graph from "workflow" when the file is dropped
    on its canvas."""

    def __init__(self, path: str, width: int, height: int, fps: int = FPS, crf: int = DEFAULT_CRF,
                 metadata: dict | None = None):
        import av

        self._av = av
        self.path = path
        try:
            self._file = open(path, "xb")  # noqa: SIM115 - closed by close()/abort()
        except FileExistsError:
            raise InputError(f"{os.path.basename(path)} already exists; the video writer never overwrites a file") \
                from None
        except ValueError as err:  # an embedded NUL byte
            raise InputError(f"the output path is not usable ({err})") from None
        try:
            self.container = av.open(self._file, mode="w", format="mp4", options={"movflags": "use_metadata_tags"})
        except BaseException:
            self._file.close()
            os.remove(path)
            raise
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
        """frames: [T, H, W, 3] floats in [0, 1], converted one at a time (a 720p float frame is 11 MB, and the
        conversion's temporaries are a few times that)."""
        for frame in frames:
            self._encode(to_rgb24(frame))

    def write_rgb24(self, frames: torch.Tensor) -> None:
        """frames: [T, H, W, 3] uint8 RGB, encoded as they are (an input video's pass-through frames)."""
        for frame in frames:
            self._encode(frame)

    def _encode(self, frame: torch.Tensor) -> None:
        picture = self._av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame).numpy(), format="yuv420p")
        picture.colorspace, picture.color_range = BT709, LIMITED_RANGE
        for packet in self.stream.encode(picture):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self._file.close()

    def abort(self) -> None:
        """Closes and deletes a partial file (interrupted or failed decode)."""
        try:
            self.container.close()
        finally:
            self._file.close()
            if os.path.exists(self.path):
                os.remove(self.path)


def returned_frames_bytes(frames: int, width: int, height: int) -> int:
    """Memory of frames returned as ComfyUI IMAGE (float32 RGB)."""
    return frames * width * height * 3 * 4


def check_returned_frames(frames: int, width: int, height: int, budget: int = MAX_RETURNED_FRAMES_BYTES) -> None:
    """InputError when returning every frame would take more than ``budget`` bytes of memory."""
    need = returned_frames_bytes(frames, width, height)
    if need > budget:
        raise InputError(f"returning all {frames} frames at {width}x{height} would hold {need / 1024 ** 3:.1f} GiB "
                         f"in memory; the limit is {budget / 1024 ** 3:g} GiB. Turn return_frames off (the MP4 and the "
                         "video output have every frame; frames then holds the last one), or make the video shorter "
                         "or smaller")


def write_mp4(path: str, plan: SectionPlan, latents: torch.Tensor, decode_fn: Callable[[torch.Tensor], torch.Tensor],
              *, crf: int = DEFAULT_CRF, metadata: dict | None = None, keep_frames: bool = True,
              on_chunk: Callable[[int, int], None] | None = None, lead_latents: int = 1,
              continues: FrameSource | None = None, keep_input: bool = True,
              frames_budget: int = MAX_RETURNED_FRAMES_BYTES) -> torch.Tensor:
    """Decodes a sampled video (frames.decode_video) straight into an MP4 at `path` and returns its frames
    [T, H, W, C]: all of them, or with keep_frames=False only the last, so a long video is never held in memory as
    float frames. All frames are refused before anything is decoded when they would pass `frames_budget` bytes, and
    are copied into one tensor allocated once (never a list of chunks joined at the end, which needs twice the
    memory). A failed or interrupted decode leaves no partial file.

    A continuation passes the input it continues (`continues`, at the video's size) and its history's
    `lead_latents`: with keep_input the input's frames before the seam go into the file unchanged as they are read,
    then the seam (frames.StreamingBlender), then the new frames; without it only the new frames."""
    check_video_latents(plan, latents, lead_latents)
    width, height = video_size(latents)
    expected = plan.output_frames + (continues.frames if continues is not None and keep_input else 0)
    if keep_frames:
        check_returned_frames(expected, width, height, frames_budget)
    if continues is not None and (continues.width, continues.height) != (width, height):
        raise InputError(f"the input video is {continues.width}x{continues.height} but the continuation "
                         f"{width}x{height}; fit the input to the video size")
    writer = Mp4Writer(path, width, height, plan.fps, crf, metadata)
    kept: torch.Tensor | None = None
    filled = 0
    last = None

    def keep(frames: torch.Tensor) -> None:
        nonlocal kept, filled
        if kept is None:
            kept = torch.empty((expected, *frames.shape[1:]), dtype=frames.dtype)
        kept[filled:filled + frames.shape[0]] = frames
        filled += frames.shape[0]

    def on_frames(frames: torch.Tensor) -> None:
        nonlocal last
        writer.write(frames)
        last = frames[-1:].clone()  # a view would keep the whole decoded chunk alive
        if keep_frames:
            keep(frames)

    try:
        seam = {}
        if continues is not None:
            overlap = decode_chunks(plan, lead_latents=lead_latents, seam=True)[0].overlap_frames
            seam = dict(seam_frames=_pass_through(continues, overlap, writer, keep_input, keep if keep_frames else None),
                        emit_seam=keep_input)
            return_freed_memory()  # the input's decoded chunks, before the first VAE decode
        decode_video(plan, latents, decode_fn, on_frames, on_chunk=on_chunk, lead_latents=lead_latents, **seam)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    if writer.frames != expected:
        raise RuntimeError(f"wrote {writer.frames} frames, expected {expected}")
    return kept if keep_frames else last


def _pass_through(source: FrameSource, overlap: int, writer: Mp4Writer, keep_input: bool,
                  keep: Callable[[torch.Tensor], None] | None) -> torch.Tensor:
    """Streams the input's frames before the seam into the writer (when the input is kept) and returns the last
    `overlap` frames as floats for the seam."""
    first_seam, seen, seam = source.frames - overlap, 0, []
    for chunk in source.iter_rgb24():
        before = chunk[:max(0, first_seam - seen)]
        if keep_input and len(before):
            writer.write_rgb24(before)
            if keep is not None:
                keep(before.float() / 255)
        if len(before) < len(chunk):  # an empty slice would still keep the whole chunk's storage alive
            seam.append(chunk[len(before):])
        seen += len(chunk)
    source.check_unchanged(seen)
    return torch.cat(seam).float().div_(255)


# -- reading back ---------------------------------------------------------------------------------------------------

def count_frames(source) -> int:
    """Frames in the video at ``source`` (a path or a binary file object): the container's count, or decoded."""
    import av

    with av.open(source, mode="r") as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for _ in container.decode(stream))


def read_frames(source, indices: Sequence[int]) -> torch.Tensor:
    """The frames at ``indices`` of the video at ``source`` as [N, H, W, 3] float32 in 0..1 (ComfyUI's IMAGE),
    decoded front to back and keeping only those, so a long video is never held whole."""
    import av

    wanted = sorted(set(indices))
    out: dict[int, torch.Tensor] = {}
    with av.open(source, mode="r") as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index in wanted:
                out[index] = torch.from_numpy(frame.to_ndarray(format="rgb24")).float().div_(255)
            if len(out) == len(wanted):
                break
    missing = [i for i in wanted if i not in out]
    if missing:
        raise InputError(f"the video has no frame {missing[0]} (it holds fewer frames than its header says)")
    return torch.stack([out[i] for i in indices])
