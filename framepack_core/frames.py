"""Frame math: output sizes, the resize rule, and section-wise decoding with FramePack's overlap blending.

Output size (shown to users):
- "480p": 848x480 for 16:9, 480x848 for 9:16; "720p": 1280x720 / 720x1280;
- aspect "auto" keeps the start image's aspect ratio at the same pixel area as that resolution's 16:9 size;
- "640": FramePack's own 640 buckets (the nearest bucket to the image, or to 16:9 / 9:16);
- "custom": the given width and height.
All sizes are multiples of 16 (8x VAE downsampling, then 2x2 patches).

Resize rule: the image is scaled to COVER the output size and centre-cropped (nothing is stretched).

Decoding: the latents of each section (time order) are decoded together with up to `window` latents before it as
decoder context; the frames both decodes share are cross-faded linearly (FramePack's soft append). Decoding latents
[a, b) with the causal video VAE gives 4(b-a)-3 frames covering video frames [4a, 4b-3) -- the first latent of a
chunk yields a single frame, the last of its 4-frame group -- so a chunk that starts `ov` latents before the previous
chunk's end shares 4*ov-3 frames with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import InputError
from .planning import SectionPlan

BUCKETS_640 = ((416, 960), (448, 864), (480, 832), (512, 768), (544, 704), (576, 672), (608, 640), (640, 608),
               (672, 576), (704, 544), (768, 512), (832, 480), (864, 448), (960, 416))  # (height, width)
RESOLUTIONS = {"480p": (848, 480), "720p": (1280, 720)}  # 16:9 (width, height)
ASPECT_RATIOS = ("auto", "16:9", "9:16")
RESOLUTION_CHOICES = ("480p", "720p", "640", "custom")
MIN_SIDE, MAX_SIDE = 64, 2048


def find_nearest_bucket(height: int, width: int, resolution: int = 640) -> tuple[int, int]:
    """The original's rule: the bucket minimising |h*bw - w*bh| (best aspect match); ties go to the later one."""
    if resolution != 640:
        raise InputError("only FramePack's 640 buckets exist")
    best, best_metric = BUCKETS_640[0], math.inf
    for bh, bw in BUCKETS_640:
        metric = abs(height * bw - width * bh)
        if metric <= best_metric:
            best, best_metric = (bh, bw), metric
    return best


def _multiple_of_16(x: float) -> int:
    return max(MIN_SIDE, int(round(x / 16)) * 16)


def output_size(image_height: int, image_width: int, aspect_ratio: str = "auto", resolution: str = "480p",
                custom_width: int | None = None, custom_height: int | None = None) -> tuple[int, int]:
    """(width, height) of the video; see the module docstring for the rules."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise InputError(f"aspect_ratio {aspect_ratio!r} must be one of {', '.join(ASPECT_RATIOS)}")
    if resolution not in RESOLUTION_CHOICES:
        raise InputError(f"resolution {resolution!r} must be one of {', '.join(RESOLUTION_CHOICES)}")
    if image_height < 1 or image_width < 1:
        raise InputError(f"the image is empty ({image_width}x{image_height})")
    if resolution == "custom":
        for name, value in (("custom_width", custom_width), ("custom_height", custom_height)):
            if not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE:
                raise InputError(f"{name} must be a whole number of pixels from {MIN_SIDE} to {MAX_SIDE}, got {value!r}")
        return _multiple_of_16(custom_width), _multiple_of_16(custom_height)
    if resolution == "640":
        h, w = {"auto": (image_height, image_width), "16:9": (9, 16), "9:16": (16, 9)}[aspect_ratio]
        bh, bw = find_nearest_bucket(h, w)
        return bw, bh
    w169, h169 = RESOLUTIONS[resolution]
    if aspect_ratio == "16:9":
        return w169, h169
    if aspect_ratio == "9:16":
        return h169, w169
    ratio = image_width / image_height
    area = w169 * h169
    return _multiple_of_16(math.sqrt(area * ratio)), _multiple_of_16(math.sqrt(area / ratio))


def resize_and_center_crop(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """images [B, H, W, C] in [0, 1] -> [B, height, width, C]: scale to cover, centre crop (the crop is taken
    from the source first, so extreme aspect ratios never make a huge intermediate); bicubic with antialiasing."""
    b, h, w, c = images.shape
    if (h, w) == (height, width):
        return images
    scale = max(width / w, height / h)
    crop_w, crop_h = min(w, max(1, round(width / scale))), min(h, max(1, round(height / scale)))
    x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
    region = images[:, y0:y0 + crop_h, x0:x0 + crop_w].movedim(-1, 1).float()
    resized = F.interpolate(region, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp(0, 1).movedim(1, -1).to(images.dtype)


# -- section-wise decoding -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodeChunk:
    latent_start: int  # first latent to decode (includes the overlap context)
    latent_end: int  # one past the last latent
    overlap_frames: int  # leading decoded frames that repeat the previous chunk's last frames (0 for the first)

    @property
    def first_frame(self) -> int:
        """Video frame (generated numbering) of the chunk's first decoded frame."""
        return 4 * self.latent_start

    @property
    def num_frames(self) -> int:
        return 4 * (self.latent_end - self.latent_start) - 3


def decode_chunks(plan: SectionPlan, overlap_latents: int | None = None) -> list[DecodeChunk]:
    """One chunk per section in time order; the first includes the start latent."""
    overlap = plan.window if overlap_latents is None else overlap_latents
    chunks = []
    for section in plan.sections_in_time_order:
        end = section.latent_start + section.num_latents
        if section.latent_start == 1:
            chunks.append(DecodeChunk(0, end, 0))
        else:
            ov = max(1, min(overlap, section.latent_start))
            chunks.append(DecodeChunk(section.latent_start - ov, end, 4 * ov - 3))
    return chunks


class StreamingBlender:
    """Turns decoded chunks into final video frames in order, with linear cross-fades over the shared frames and
    the plan's dropped frames removed. Holds back only the frames a next chunk may still blend into."""

    def __init__(self, plan: SectionPlan):
        self.dropped = set(plan.dropped_frames)
        self.tail = None  # frames not yet emitted
        self.tail_start = 0  # generated index of tail[0]
        self.emitted = 0

    def _emit(self, frames: torch.Tensor, first_index: int) -> torch.Tensor:
        keep = [i for i in range(len(frames)) if first_index + i not in self.dropped]
        out = frames if len(keep) == len(frames) else frames[keep]
        self.emitted += len(out)
        return out

    def push(self, chunk: DecodeChunk, frames: torch.Tensor) -> torch.Tensor:
        if len(frames) != chunk.num_frames:
            raise ValueError(f"chunk {chunk} decoded to {len(frames)} frames, expected {chunk.num_frames}")
        o = chunk.overlap_frames
        if self.tail is None:
            if o:
                raise ValueError("the first chunk cannot overlap")
            sequence, start = frames, chunk.first_frame
        else:
            if chunk.first_frame + o != self.tail_start + len(self.tail):
                raise ValueError(f"chunk {chunk} does not continue the frames produced so far")
            if o > len(self.tail):
                raise ValueError(f"chunk overlaps {o} frames but only {len(self.tail)} are held back")
            w = torch.linspace(1, 0, o, dtype=frames.dtype, device=frames.device).view(-1, *[1] * (frames.ndim - 1))
            blended = w * self.tail[len(self.tail) - o:] + (1 - w) * frames[:o]
            sequence = torch.cat([self.tail[:len(self.tail) - o], blended, frames[o:]])
            start = self.tail_start
        # a later chunk overlaps at most 4*window-3 frames, and never more than this chunk adds
        hold = min(len(sequence), 4 * max(chunk.latent_end - chunk.latent_start, 1))
        ready, self.tail = sequence[: len(sequence) - hold], sequence[len(sequence) - hold:]
        self.tail_start = start + len(ready)
        return self._emit(ready, start)

    def flush(self) -> torch.Tensor:
        if self.tail is None:
            return torch.empty(0)
        out = self._emit(self.tail, self.tail_start)
        self.tail = None
        return out


def blend_all(plan: SectionPlan, decoded: list[torch.Tensor], overlap_latents: int | None = None) -> torch.Tensor:
    """All frames of a video from its decoded chunks (in decode_chunks order)."""
    blender = StreamingBlender(plan)
    parts = [blender.push(c, f) for c, f in zip(decode_chunks(plan, overlap_latents), decoded)]
    return torch.cat(parts + [blender.flush()])
