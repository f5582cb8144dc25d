"""Section planning: how many sections, how many latents each, where they sit in time, and which frames are
dropped so that a video has exactly the requested number of frames. Pure arithmetic, no model needed, so nodes
and the API client can show users what a length will cost.

Latents and frames. The first latent (the start image) decodes to 1 frame, every later latent to 4, so
L latents make 4L - 3 frames.

Exact length. For `num_frames` N (30-1800 at 30 fps):
  L = ceil((N + 3) / 4) latents in all (start latent included), G = L - 1 generated latents,
  n = ceil(G / window) sections, and the windows are BALANCED: each is floor(G/n) or ceil(G/n) latents (the larger
  ones first in time), so no section is tiny. The video then has F = 4L - 3 >= N frames; the e = F - N excess
  frames (0 to 3) are dropped at evenly spaced INTERIOR positions
      drop_k = round((k + 1) * (F - 1) / (e + 1)),  k = 0 .. e-1
  never frame 0 (the start image) and never frame F-1 (the true last frame, the end image when there is one).

Modes. "inverted" (FramePackI2V_HY): sections are sampled from the end of the video back to the start, with the
original padding schedule in sampling order: n-1, n-2, ..., 0, or [3, 2, ..., 2, 1, 0] when n > 4. "forward" (F1):
sections are sampled from the start, padding 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError

MIN_FRAMES, MAX_FRAMES = 30, 1800
MIN_WINDOW, MAX_WINDOW = 1, 33
FPS = 30
MODES = ("inverted", "forward")


def frames_for_latents(n: int) -> int:
    if n < 1:
        raise ValueError("at least one latent")
    return 4 * n - 3


def latents_for_frames(f: int) -> int:
    return math.ceil((f + 3) / 4)


def latent_index_for_frame(f: int) -> int:
    """Generated numbering: frame 0 -> latent 0; frames 4i-3 .. 4i -> latent i."""
    return 0 if f <= 0 else (f + 3) // 4


def padding_schedule(n: int) -> list[int]:
    """The original FramePack's padding levels, in sampling order."""
    if n > 4:
        return [3] + [2] * (n - 3) + [1, 0]
    return list(reversed(range(n)))


@dataclass(frozen=True)
class Section:
    sampling_index: int  # 0 = sampled first
    time_index: int  # 0 = earliest in the video
    latent_start: int  # index of its first latent in the final sequence (the start latent is 0)
    num_latents: int  # its window
    padding: int  # inverted mode's padding level; 0 in forward mode
    frame_start: int  # first generated frame its latents produce (generated numbering, before drops)
    frame_end: int  # one past its last generated frame
    is_video_end: bool  # holds the last latent
    is_next_to_start: bool  # latent_start == 1

    def time_range(self, fps: int = FPS) -> tuple[float, float]:
        return self.frame_start / fps, self.frame_end / fps


@dataclass(frozen=True)
class SectionPlan:
    mode: str
    requested_frames: int
    window: int
    fps: int
    sections: tuple[Section, ...]  # sampling order

    @property
    def sections_in_time_order(self) -> tuple[Section, ...]:
        return tuple(sorted(self.sections, key=lambda s: s.time_index))

    @property
    def total_latents(self) -> int:
        return 1 + sum(s.num_latents for s in self.sections)

    @property
    def generated_frames(self) -> int:
        return frames_for_latents(self.total_latents)

    @property
    def dropped_frames(self) -> tuple[int, ...]:
        f, e = self.generated_frames, self.generated_frames - self.requested_frames
        return tuple(round((k + 1) * (f - 1) / (e + 1)) for k in range(e))

    @property
    def output_frames(self) -> int:
        return self.generated_frames - len(self.dropped_frames)

    @property
    def duration_s(self) -> float:
        return self.output_frames / self.fps

    def summary(self) -> dict:
        windows = [s.num_latents for s in self.sections_in_time_order]
        return {
            "mode": self.mode, "frames": self.output_frames, "fps": self.fps, "duration_s": round(self.duration_s, 3),
            "sections": len(self.sections), "windows_in_time_order": windows,
            "paddings_in_sampling_order": [s.padding for s in self.sections],
            "total_latents": self.total_latents, "generated_frames": self.generated_frames,
            "dropped_frames": list(self.dropped_frames),
            "description": (f"{self.output_frames} frames ({self.duration_s:.2f} s at {self.fps} fps) in "
                            f"{len(self.sections)} section{'s' * (len(self.sections) != 1)} of "
                            f"{'/'.join(str(w) for w in sorted(set(windows), reverse=True))} latents, sampled "
                            f"{'end to start' if self.mode == 'inverted' else 'start to end'}"
                            + (f"; {len(self.dropped_frames)} interior frame(s) dropped for the exact length"
                               if self.dropped_frames else "")),
        }


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{name} {value} is out of range; use {low}-{high}")
    return value


def plan_video(num_frames: int, mode: str = "inverted", window: int = 9, fps: int = FPS) -> SectionPlan:
    _check_int("num_frames", num_frames, MIN_FRAMES, MAX_FRAMES)
    _check_int("window size", window, MIN_WINDOW, MAX_WINDOW)
    if mode not in MODES:
        raise InputError(f"mode {mode!r} must be one of {', '.join(MODES)}")
    generated = latents_for_frames(num_frames) - 1
    n = math.ceil(generated / window)
    base, extra = divmod(generated, n)
    windows = [base + 1] * extra + [base] * (n - extra)  # time order, larger first
    starts = [1 + sum(windows[:i]) for i in range(n)]
    paddings = padding_schedule(n) if mode == "inverted" else [0] * n
    sections = []
    for sampling_index in range(n):
        time_index = n - 1 - sampling_index if mode == "inverted" else sampling_index
        start, w = starts[time_index], windows[time_index]
        frame_start = 0 if start == 1 else 4 * start - 3
        sections.append(Section(sampling_index, time_index, start, w, paddings[sampling_index], frame_start,
                                4 * (start + w) - 3, time_index == n - 1, start == 1))
    return SectionPlan(mode, num_frames, window, fps, tuple(sections))


def kept_frame_indices(plan: SectionPlan) -> list[int]:
    dropped = set(plan.dropped_frames)
    return [f for f in range(plan.generated_frames) if f not in dropped]


def output_frame_to_generated(plan: SectionPlan, j: int) -> int:
    return kept_frame_indices(plan)[j]


def prompt_weights(plan: SectionPlan, prompt_starts: list[float]) -> list[list[float]]:
    """Per section (sampling order), the weight of each prompt (caller's order): prompt k covers
    [start_k, next start) in time (the earliest covers from 0, the latest until the end); a section's weight for a
    prompt is the fraction of the section's time span it covers, so a section across a change blends both."""
    if not prompt_starts:
        raise InputError("at least one prompt is needed")
    if any(not math.isfinite(t) or t < 0 for t in prompt_starts):
        raise InputError(f"prompt start times must be >= 0 seconds, got {prompt_starts}")
    order = sorted(range(len(prompt_starts)), key=lambda k: prompt_starts[k])
    bounds = [0.0] + [prompt_starts[k] for k in order[1:]] + [math.inf]
    weights = []
    for section in plan.sections:
        t0, t1 = section.time_range(plan.fps)
        span = max(t1 - t0, 1e-9)
        row = [0.0] * len(prompt_starts)
        for rank, k in enumerate(order):
            row[k] = max(0.0, min(t1, bounds[rank + 1]) - max(t0, bounds[rank])) / span
        total = sum(row)
        weights.append([w / total for w in row])
    return weights


def keyframe_latent_index(plan: SectionPlan, time_s: float) -> int:
    frame = round(time_s * plan.fps)
    return min(max(latent_index_for_frame(frame), 1), plan.total_latents - 1)
