"""Frame math: output sizes, the resize rule, and section-wise decoding with FramePack's overlap blending.

Output size (shown to users); every size is a multiple of SIDE_STEP (16: 8x VAE downsampling, then 2x2 patches),
and the names, sizes and side limits are in limits.py:
- "480p": 848x480 for 16:9 (the closest 16:9 size in multiples of 16), 480x848 for 9:16;
  "720p": 1280x720 / 720x1280.
- aspect "auto" keeps the start image's aspect ratio at the same pixel area as that resolution's 16:9 size,
  each side rounded to the nearest multiple of 16 (no side above MAX_SIDE or below MIN_SIDE: extreme aspect
  ratios are narrowed to fit, and the crop below takes the rest).
- "640": FramePack's own 640 buckets; "auto" takes the bucket nearest to the image's aspect ratio, "16:9" /
  "9:16" the bucket nearest to that ratio.
- "custom": custom_width x custom_height, each MIN_SIDE-MAX_SIDE, rounded to the nearest multiple of 16 (halves
  up).

Resize rule: the image is scaled to COVER the output size (scale = max(out_w / w, out_h / h)), so one side fits
exactly and the other overflows, and the overflow is cut off equally on both sides (centre crop). Nothing is
stretched or letterboxed. Bicubic with antialiasing, values clamped to [0, 1].

Decoding: see decode_chunks and StreamingBlender; decode_video runs them with any VAE's decode function.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .config import VAE_SPATIAL_FACTOR
from .errors import InputError
from .limits import (ASPECT_RATIOS, BUCKETS_RESOLUTION, CUSTOM_RESOLUTION, MAX_SIDE, MIN_SIDE, RESOLUTION_CHOICES,
                     RESOLUTION_SIZES, SIDE_STEP)
from .planning import SectionPlan

BUCKETS_640 = ((416, 960), (448, 864), (480, 832), (512, 768), (544, 704), (576, 672), (608, 640), (640, 608),
               (672, 576), (704, 544), (768, 512), (832, 480), (864, 448), (960, 416))  # (height, width)


def find_nearest_bucket(height: int, width: int, resolution: int = 640) -> tuple[int, int]:
    """(height, width) of the 640 bucket with the closest aspect ratio: the original's rule, minimising
    |height * bucket_w - width * bucket_h|, ties going to the later bucket in BUCKETS_640."""
    if resolution != 640:
        raise InputError(f"resolution {resolution!r} has no buckets; FramePack only has the 640 buckets")
    if height <= 0 or width <= 0:
        raise InputError(f"the image is empty ({width}x{height})")
    # min() keeps the first of equal keys, so scan in reverse to let the later bucket win ties
    return min(reversed(BUCKETS_640), key=lambda b: abs(height * b[1] - width * b[0]))


def _nearest_multiple_of_16(x: float) -> int:
    """Nearest multiple of SIDE_STEP (16; halves up), kept within MIN_SIDE..MAX_SIDE."""
    return min(max(int(x / SIDE_STEP + 0.5) * SIDE_STEP, MIN_SIDE), MAX_SIDE)


def output_size(image_height: int, image_width: int, aspect_ratio: str = "auto", resolution: str = "480p",
                custom_width: int | None = None, custom_height: int | None = None) -> tuple[int, int]:
    """(width, height) of the video for an image of image_height x image_width; the rules are in the module
    docstring."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise InputError(f"aspect_ratio {aspect_ratio!r} is not valid; use one of: {', '.join(ASPECT_RATIOS)}")
    if resolution not in RESOLUTION_CHOICES:
        raise InputError(f"resolution {resolution!r} is not valid; use one of: {', '.join(RESOLUTION_CHOICES)}")
    if image_height < 1 or image_width < 1:
        raise InputError(f"the image is empty ({image_width}x{image_height})")
    if resolution == CUSTOM_RESOLUTION:
        for name, value in (("custom_width", custom_width), ("custom_height", custom_height)):
            if isinstance(value, bool) or not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE:
                raise InputError(f"{name} must be a whole number of pixels from {MIN_SIDE} to {MAX_SIDE} "
                                 f"(resolution 'custom'), got {value!r}")
        return _nearest_multiple_of_16(custom_width), _nearest_multiple_of_16(custom_height)
    if resolution == BUCKETS_RESOLUTION:
        h, w = {"auto": (image_height, image_width), "16:9": (9, 16), "9:16": (16, 9)}[aspect_ratio]
        bucket_h, bucket_w = find_nearest_bucket(h, w)
        return bucket_w, bucket_h
    wide_w, wide_h = RESOLUTION_SIZES[resolution]
    if aspect_ratio == "16:9":
        return wide_w, wide_h
    if aspect_ratio == "9:16":
        return wide_h, wide_w
    ratio = image_width / image_height
    width, height = (wide_w * wide_h * ratio) ** 0.5, (wide_w * wide_h / ratio) ** 0.5
    fit = min(1.0, MAX_SIDE / max(width, height))  # an extreme panorama must not ask for a 60000-pixel side
    return _nearest_multiple_of_16(width * fit), _nearest_multiple_of_16(height * fit)


def cover_crop(source_width: int, source_height: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(crop_width, crop_height, left, top): the centred region of a source_width x source_height picture that,
    scaled, covers width x height exactly (the resize rule)."""
    scale = max(width / source_width, height / source_height)
    crop_w = min(source_width, max(1, round(width / scale)))
    crop_h = min(source_height, max(1, round(height / scale)))
    return crop_w, crop_h, (source_width - crop_w) // 2, (source_height - crop_h) // 2


def resize_and_center_crop(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """images [B, H, W, C] in [0, 1] -> [B, height, width, C]: scale to cover, centre crop (module docstring).

    The crop is taken from the source before resizing, which is the same picture up to sub-pixel rounding but
    never builds a huge intermediate for extreme aspect ratios. Same size in and out: returned unchanged."""
    if images.ndim != 4:
        raise InputError(f"expected images shaped [batch, height, width, channels], got {list(images.shape)}")
    _, h, w, _ = images.shape
    if (h, w) == (height, width):
        return images
    crop_w, crop_h, x0, y0 = cover_crop(w, h, width, height)
    region = images[:, y0:y0 + crop_h, x0:x0 + crop_w].movedim(-1, 1).float()
    resized = F.interpolate(region, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp(0, 1).movedim(1, -1).to(images.dtype)


# -- section-wise decoding -------------------------------------------------------------------------------------
#
# Alignment with the causal video VAE. Decoding latents [a, b) on their own gives 4(b-a) - 3 frames: the chunk's
# first latent is decoded like a still image (1 frame), each later latent gives its 4 frames. In the full video
# latent i >= 1 covers generated frames 4i-3 .. 4i, and a lone first latent stands for the LAST frame of its group
# (frame 4a; for a = 0 that is frame 0, the start image). So the chunk [a, b) covers frames [4a, 4b - 3), and a
# chunk that begins `ov` latents before the previous chunk's end b shares frames [4(b - ov), 4b - 3) with it:
# exactly 4*ov - 3 frames. This is the original's soft append (2W latents decoded, 4W-3 frames overlapped),
# streamed in time order with the decoder context taken from BEFORE each section, where a causal decoder wants it.
#
# Lead latents and the seam. The latents handed to the decoder start with `lead_latents` latents at indices
# 1 - lead .. 0: the start latent alone (lead 1), or a continued video's history, whose last latent ends on the
# input's last frame (frame 0 of the chain; negative frames are the input's earlier frames, frame -k being input
# frame N-1-k). A continuation joins the input the way sections join each other (`seam=True`): its first chunk
# starts c = min(overlap, lead) latents early, so the decoder has the input's own latents as context, and its
# first 4c - 3 frames are cross-faded with the input's last 4c - 3 frames. Input frames before those pass through.

@dataclass(frozen=True)
class DecodeChunk:
    """Latents [latent_start, latent_end) to decode together; the first overlap_frames decoded frames cover the
    same time as the last overlap_frames frames of the chunks before it (or of the input, at a seam)."""

    latent_start: int  # first latent to decode (includes the overlap context); <= 0 at a seam
    latent_end: int  # one past the last latent
    overlap_frames: int  # 4 * context_latents - 3; 0 for the first chunk without a seam

    @property
    def first_frame(self) -> int:
        """Generated-numbering index of the chunk's first decoded frame."""
        return 4 * self.latent_start

    @property
    def num_frames(self) -> int:
        return 4 * (self.latent_end - self.latent_start) - 3


def decode_chunks(plan: SectionPlan, overlap_latents: int | None = None, lead_latents: int = 1,
                  seam: bool = False) -> list[DecodeChunk]:
    """One chunk per section in time order: its latents (the first chunk also latent 0) plus up to overlap_latents
    (default: the plan's window, as the original) latents before it as decoder context. At least one latent of
    context is needed: without it the section's first latent would decode to 1 frame instead of 4. With `seam`,
    the first chunk also takes up to overlap_latents of the lead latents as context (comment above)."""
    overlap = plan.window if overlap_latents is None else overlap_latents
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
        raise ValueError(f"overlap_latents must be a whole number >= 1, got {overlap_latents!r}")
    if isinstance(lead_latents, bool) or not isinstance(lead_latents, int) or lead_latents < 1:
        raise ValueError(f"lead_latents must be a whole number >= 1, got {lead_latents!r}")
    chunks = []
    for section in plan.sections_in_time_order:
        if section.is_next_to_start and seam:
            context = min(overlap, lead_latents)
            chunks.append(DecodeChunk(1 - context, section.latent_end, 4 * context - 3))
        elif section.is_next_to_start:
            chunks.append(DecodeChunk(0, section.latent_end, 0))
        else:
            context = min(overlap, section.latent_start)
            chunks.append(DecodeChunk(section.latent_start - context, section.latent_end, 4 * context - 3))
    return chunks


class StreamingBlender:
    """Turns decoded chunks (pushed in decode_chunks order) into final video frames in output order.

    Overlaps are cross-faded linearly, output = w * previous + (1 - w) * current with w = linspace(1, 0, overlap)
    (the original's soft append; the chunk's first, image-like frame gets weight 0). The plan's dropped frames
    are removed, and frame 0 when the plan leaves the start out. Only the frames the next chunk will blend into are
    held back (one overlap tail, 4*overlap-3 frames), so memory does not grow with the video's length.

    A continuation passes `seam_frames`, the input's last frames (float, as many as the first chunk overlaps), and
    `lead_latents`: the first chunk blends into them. The blended frames take the place of the input's last frames
    and are output first when `emit_seam` (the video keeps its input), not at all otherwise (new frames only).
    The blender blends into float32 `seam_frames` in place: the caller hands them over.

    Working memory: the chunk being pushed (its output frames are views of it) and one overlap held back; see
    push_parts and release_chunk.
    """

    def __init__(self, plan: SectionPlan, overlap_latents: int | None = None, *, lead_latents: int = 1,
                 seam_frames: torch.Tensor | None = None, emit_seam: bool = True):
        self.plan = plan
        seam = seam_frames is not None
        self.chunks = decode_chunks(plan, overlap_latents, lead_latents, seam)
        self.dropped = frozenset(plan.dropped_frames)
        self.pushed = 0  # chunks received
        self.emitted = 0  # frames returned so far
        self.tail: torch.Tensor | None = None  # blended frames the next chunk still overlaps
        self._tail_parts: list[torch.Tensor] = []  # the tail while it is still slices of the last chunk
        self.tail_start = 0  # generated index of tail[0]
        self._empty = torch.empty(0)  # becomes an empty [0, H, W, C] tensor like the decoded frames
        self.seam_output = 0  # input frames (blended at the seam) that are output
        if seam:
            first = self.chunks[0]
            if plan.start_in_output:
                raise ValueError("a seam joins a continuation, whose start frame is the input's last frame: plan it "
                                 "with start_in_output=False")
            if len(seam_frames) != first.overlap_frames:
                raise ValueError(f"the seam needs the input's last {first.overlap_frames} frames, got "
                                 f"{len(seam_frames)}")
            # blended into in place (the caller hands the seam frames over)
            self.tail, self.tail_start = seam_frames.float().contiguous(), first.first_frame
            self.seam_output = first.overlap_frames if emit_seam else 0
        self._emit_from = first.first_frame if seam and emit_seam else plan.first_output_frame

    @property
    def held_frames(self) -> int:
        return sum(len(part) for part in self._tail_parts) if self.tail is None else len(self.tail)

    @property
    def output_frames(self) -> int:
        """Frames this blender hands out in all: the plan's, plus the seam's input frames when they are output."""
        return self.plan.output_frames + self.seam_output

    def _emit(self, frames: torch.Tensor, first_index: int) -> list[torch.Tensor]:
        """The runs of frames that are output (views: a dropped frame splits a run rather than copying it)."""
        keep = [first_index + i >= self._emit_from and first_index + i not in self.dropped for i in range(len(frames))]
        runs, begin = [], None
        for i, kept in enumerate(keep + [False]):
            if kept and begin is None:
                begin = i
            elif not kept and begin is not None:
                runs.append(frames[begin:i])
                begin = None
        self.emitted += sum(keep)
        return runs

    def push(self, chunk: DecodeChunk, frames: torch.Tensor) -> torch.Tensor:
        """frames [T, H, W, C] decoded from chunk -> the frames that are now final (possibly none), in one tensor."""
        parts = self.push_parts(chunk, frames)
        self.release_chunk()
        if not parts:
            return self._empty
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def release_chunk(self) -> None:
        """Copies the frames held back out of the last pushed chunk, so that the chunk can be freed: call it once
        its parts are handed on (then the blended overlap is gone too, and only one overlap is ever copied)."""
        if self._tail_parts:
            parts, self._tail_parts = self._tail_parts, []
            self.tail = parts[0].clone() if len(parts) == 1 else torch.cat(parts)

    def push_parts(self, chunk: DecodeChunk, frames: torch.Tensor) -> list[torch.Tensor]:
        """As push, but the final frames come as consecutive parts (possibly none), so that no copy of the chunk is
        made: the frames after the overlap are views of `frames`, the overlap is blended into the held tail in
        place, one frame at a time, and the next overlap is held back as a view until release_chunk() (or the
        next push) copies it. A dropped frame splits a part rather than being cut out of a copy."""
        if self.pushed >= len(self.chunks):
            raise ValueError(f"all {len(self.chunks)} chunks were already pushed")
        expected = self.chunks[self.pushed]
        if chunk != expected:
            raise ValueError(f"chunk {self.pushed} should be {expected}, got {chunk}; push them in decode_chunks order")
        if len(frames) != chunk.num_frames:
            raise ValueError(f"chunk {chunk} decoded to {len(frames)} frames, expected {chunk.num_frames}")
        self.release_chunk()  # the tail is blended into in place, never the caller's frames
        o = chunk.overlap_frames
        self._empty = frames.new_empty((0, *frames.shape[1:]))  # not a view: that would keep the chunk alive
        if self.tail is None:
            pieces, start = [(frames, False)], chunk.first_frame
        else:
            # decode_chunks aligned it: the tail held back by the previous push (or the seam) is exactly this overlap
            assert len(self.tail) == o and self.tail_start == chunk.first_frame
            w = torch.linspace(1, 0, o, dtype=frames.dtype, device=frames.device)
            blended = self.tail
            for i in range(o):  # w * tail + (1 - w) * frames, the same numbers as on whole tensors
                blended[i].mul_(w[i]).add_(frames[i] * (1 - w[i]))
            pieces, start = [(blended, True), (frames[o:], False)], self.tail_start
        self.pushed += 1
        hold = self.chunks[self.pushed].overlap_frames if self.pushed < len(self.chunks) else 0
        total = sum(len(p) for p, _ in pieces)
        ready, offset = [], 0
        self.tail = None
        for piece, is_blended in pieces:
            cut = min(max(total - hold - offset, 0), len(piece))
            if cut:
                ready.append((piece[:cut], start + offset))
            if cut < len(piece):
                # blended frames held again (a few at most) are copied now, so that the blended overlap goes out
                # with this push; the chunk's frames are copied by release_chunk
                self._tail_parts.append(piece[cut:].clone() if is_blended else piece[cut:])
            offset += len(piece)
        self.tail_start = start + total - hold
        return [run for part, first in ready for run in self._emit(part, first)]

    def flush(self) -> torch.Tensor:
        """Frames still held back; after the last chunk there are none. Raises if chunks are missing, since the
        video would silently come out short."""
        if self.pushed != len(self.chunks):
            raise ValueError(f"only {self.pushed} of {len(self.chunks)} chunks were pushed")
        assert self.tail is None and self.emitted == self.output_frames
        return self._empty


def blend_all(plan: SectionPlan, decoded: list[torch.Tensor], overlap_latents: int | None = None) -> torch.Tensor:
    """All output frames of a video from its decoded chunks (in decode_chunks order): push() each, then flush()."""
    blender = StreamingBlender(plan, overlap_latents)
    chunks = blender.chunks
    if len(decoded) != len(chunks):
        raise ValueError(f"expected {len(chunks)} decoded chunks, got {len(decoded)}")
    parts = [blender.push(c, f) for c, f in zip(chunks, decoded)]
    blender.flush()
    return torch.cat(parts)


def video_size(latents: torch.Tensor) -> tuple[int, int]:
    """(width, height) in pixels of the frames that latents [..., h, w] decode to."""
    return latents.shape[-1] * VAE_SPATIAL_FACTOR, latents.shape[-2] * VAE_SPATIAL_FACTOR


def check_video_latents(plan: SectionPlan, latents: torch.Tensor, lead_latents: int = 1) -> None:
    """latents must be [B, C, T, h, w] with the plan's T (its latents after the start, plus the lead latents)."""
    if latents.ndim != 5:
        raise InputError(f"expected video latents shaped [batch, channels, time, height, width], got "
                         f"{list(latents.shape)}")
    expected = plan.total_latents - 1 + lead_latents
    if latents.shape[2] != expected:
        raise InputError(f"the latent has {latents.shape[2]} frames but its plan expects {expected}")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None


def return_freed_memory() -> None:
    """Hands the heap pages freed since the last call back to the OS (glibc's malloc_trim; a no-op elsewhere).
    Once a frame-sized block has been freed, glibc raises its mmap threshold and serves later blocks of up to 32 MB
    from the heap, whose freed pages it keeps: the server's RSS would keep every decoded chunk's temporaries (about
    150 MB at 720p, bench/extend_memory.md). Called once per decoded chunk: a heap walk, well under a millisecond
    next to a chunk's decode."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def decode_video(plan: SectionPlan, latents: torch.Tensor, decode_fn: Callable[[torch.Tensor], torch.Tensor],
                 on_frames: Callable[[torch.Tensor], None], *, on_chunk: Callable[[int, int], None] | None = None,
                 overlap_latents: int | None = None, lead_latents: int = 1, seam_frames: torch.Tensor | None = None,
                 emit_seam: bool = True) -> int:
    """Decodes a sampled video section by section and hands its final frames to on_frames, in order, as they are
    ready; returns how many there were (plan.output_frames, plus the seam's input frames when they are output).

    latents: [B, C, lead_latents - 1 + plan.total_latents, h, w]. decode_fn maps a slice of them (one decode_chunks
    chunk) to its frames [..., H, W, C] (leading dimensions are flattened into time, so a video VAE's
    [B, T, H, W, C] works). The frames pass through StreamingBlender as float32 on the CPU, so only one overlap is
    held back at a time. on_chunk(done, total) runs after each chunk (a caller's progress and interrupt point).
    seam_frames / emit_seam: a continuation's join to its input (StreamingBlender)."""
    check_video_latents(plan, latents, lead_latents)
    blender = StreamingBlender(plan, overlap_latents, lead_latents=lead_latents, seam_frames=seam_frames,
                               emit_seam=emit_seam)
    shift = lead_latents - 1  # tensor index of latent 0
    emitted = 0

    def emit(frames: torch.Tensor) -> None:
        nonlocal emitted
        if len(frames):
            on_frames(frames)
            emitted += len(frames)

    for done, chunk in enumerate(blender.chunks, start=1):
        pixels = decode_fn(latents[:, :, chunk.latent_start + shift:chunk.latent_end + shift])
        parts = blender.push_parts(chunk, pixels.reshape(-1, *pixels.shape[-3:]).float().cpu())
        del pixels  # no name may keep the chunk alive while the next one decodes (a loop variable would)
        while parts:
            emit(parts.pop(0))
        blender.release_chunk()
        return_freed_memory()
        if on_chunk is not None:
            on_chunk(done, len(blender.chunks))
    emit(blender.flush())
    return emitted
