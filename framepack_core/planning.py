"""Section planning: how many sections, how many latents each, where they sit in time, and which frames are
dropped so that a video has exactly the requested number of frames. Pure arithmetic (no torch, no model), so
nodes and the API client can show users what a length will cost before anything runs.

Latents and frames. The first latent (the start image) decodes to 1 frame, every later latent to 4, so
L latents make 4L - 3 frames. In the "generated numbering", frame 0 comes from latent 0 and frames 4i-3 .. 4i
from latent i.

Exact length. For `num_frames` N (MIN_FRAMES..MAX_FRAMES, see limits.py) and a window of W latents (default 9 =
33 frames):
  L = ceil((N + 3) / 4) latents in all (start latent included), G = L - 1 generated latents,
  n = ceil(G / W) sections, and the windows are BALANCED: each is floor(G/n) or ceil(G/n) latents, the larger
  ones first in time, so no section is tiny (e.g. 240 frames: 9,9,9,9,8,8,8 rather than 9 x 6 + 4).
The sampled video then has F = 4L - 3 >= N frames. The e = F - N excess frames (0 to 3) are dropped at evenly
spaced INTERIOR positions of the generated numbering:
      drop_k = round((k + 1) * (F - 1) / (e + 1)),   k = 0 .. e-1
Because F - 1 = 4G and e + 1 is 2, 3 or 4, the quotient is never exactly halfway between two integers, so the
rounding is unambiguous. The drops split [0, F-1] into e + 1 gaps whose lengths differ by at most one, and never
touch frame 0 (the start image) or frame F-1 (the true last frame, the end image when one is given).

Start frame not in the output (`start_in_output=False`). A text-to-video start (a blank image) and a continued
video's last frame are frame 0 of the chain but not new frames: the plan is then made for N + 1 frames, frame 0
included, and frame 0 is left out of the output, so there are still exactly N new frames (1 to N in the generated
numbering, less the drops). Output frame j then stands for generated frame j + 1 before the drops.

Modes. Mode.INVERTED (FramePackI2V_HY, anti-drifting): sections are sampled from the end of the video back to
the start, with the original padding levels in sampling order n-1, n-2, ..., 0, replaced by [3, 2, ..., 2, 1, 0]
when n > 4; the section with padding 0 is the one right after the start latent. Mode.FORWARD (F1): sections are
sampled from start to end, padding 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from .errors import InputError
from .limits import DEFAULT_WINDOW, FPS, MAX_FPS, MAX_FRAMES, MAX_WINDOW, MIN_FRAMES, MIN_WINDOW, MODES, Mode


def frames_for_latents(n: int) -> int:
    """Pixel frames that n latents decode to (the first latent gives 1 frame, each later one 4)."""
    if n < 1:
        raise ValueError(f"at least one latent is needed, got {n}")
    return 4 * n - 3


def latents_for_frames(f: int) -> int:
    """The fewest latents whose frames cover f frames: ceil((f + 3) / 4)."""
    return -(-(f + 3) // 4)


def latent_index_for_frame(f: int) -> int:
    """Generated numbering: frame 0 -> latent 0; frames 4i-3 .. 4i -> latent i."""
    if f < 0:
        raise ValueError(f"frame index must be >= 0, got {f}")
    return (f + 3) // 4


def padding_schedule(n: int) -> list[int]:
    """The original FramePack's padding levels for n sections, in sampling order (the last one is 0)."""
    if n > 4:
        return [3] + [2] * (n - 3) + [1, 0]  # the original found repeating 2 looks better than counting down
    return list(reversed(range(n)))


def balanced_windows(generated_latents: int, max_window: int) -> list[int]:
    """Window sizes in time order: the fewest sections of at most max_window latents, sizes differing by at most
    one, larger ones first."""
    n = -(-generated_latents // max_window)
    base, extra = divmod(generated_latents, n)
    return [base + 1] * extra + [base] * (n - extra)


@dataclass(frozen=True)
class Section:
    """One sampling step of the chain: a window of latents and where it sits in the video."""

    sampling_index: int  # 0 = sampled first
    time_index: int  # 0 = earliest in the video
    latent_start: int  # index of its first latent in the final sequence (the start latent is 0, so >= 1)
    num_latents: int  # its window
    padding: int  # inverted mode's padding level; 0 in forward mode
    frame_start: int  # first generated frame its latents produce (generated numbering, before drops)
    frame_end: int  # one past its last generated frame; the first section also owns frame 0 (the start image)
    is_video_end: bool  # holds the last latent
    is_next_to_start: bool  # latent_start == 1

    @property
    def latent_end(self) -> int:
        return self.latent_start + self.num_latents

    def time_range(self, fps: int = FPS) -> tuple[float, float]:
        """(t0, t1) seconds covered by its frames, frame f spanning [f/fps, (f+1)/fps). Generated numbering: the
        up-to-3 dropped frames shift later times by at most 0.1 s at 30 fps, which prompts and keyframes ignore."""
        return self.frame_start / fps, self.frame_end / fps


@dataclass(frozen=True)
class SectionPlan:
    """The sections of a video, in sampling order, and the exact-length bookkeeping."""

    mode: Mode
    requested_frames: int
    window: int
    fps: int
    sections: tuple[Section, ...]  # sampling order
    start_in_output: bool = True  # False: frame 0 (a blank start or a continued video's last frame) is not output

    @property
    def first_output_frame(self) -> int:
        """Generated index of the first frame that can be output: 0, or 1 when the start frame is left out."""
        return 0 if self.start_in_output else 1

    @property
    def planned_frames(self) -> int:
        """Frames of the chain the drops are computed for: the requested ones plus a start frame left out."""
        return self.requested_frames + self.first_output_frame

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
        """Generated-frame indices removed for the exact length (see the module docstring), ascending."""
        span, e = self.generated_frames - 1, self.generated_frames - self.planned_frames
        # round(x) for x = (k+1)*span/(e+1) in integers: floor(x + 1/2); never a tie (module docstring)
        return tuple(((k + 1) * span * 2 + (e + 1)) // (2 * (e + 1)) for k in range(e))

    @property
    def output_frames(self) -> int:
        return self.generated_frames - len(self.dropped_frames) - self.first_output_frame

    @property
    def duration_s(self) -> float:
        return self.output_frames / self.fps

    def summary(self) -> dict:
        """JSON-friendly overview for users: cost (sections, windows) and exact-length bookkeeping."""
        in_time = self.sections_in_time_order
        windows = [s.num_latents for s in in_time]
        n = len(self.sections)
        sizes = "/".join(str(w) for w in sorted(set(windows), reverse=True))
        order = "end to start" if self.mode == Mode.INVERTED else "start to end"
        description = (f"{self.output_frames} frames ({self.duration_s:.2f} s at {self.fps} fps) in {n} "
                       f"section{'s' if n != 1 else ''} of {sizes} latents, sampled {order}")
        if self.dropped_frames:
            description += f"; {len(self.dropped_frames)} interior frame(s) dropped for the exact length"
        if not self.start_in_output:
            description += "; the start frame itself is not in the output"
        return {
            "mode": self.mode, "frames": self.output_frames, "fps": self.fps, "duration_s": round(self.duration_s, 3),
            "sections": n,
            "windows": windows,  # time order
            "paddings": [s.padding for s in self.sections],  # sampling order
            "section_times_s": [[round(t, 3) for t in s.time_range(self.fps)] for s in in_time],  # time order
            "total_latents": self.total_latents, "generated_frames": self.generated_frames,
            "dropped": list(self.dropped_frames), "start_frame_in_output": self.start_in_output,
            "description": description,
        }


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{name} {value} is out of range; use {low} to {high}")
    return value


def plan_video(num_frames: int, mode: str = Mode.INVERTED, window: int = DEFAULT_WINDOW,
               fps: int = FPS, *, start_in_output: bool = True) -> SectionPlan:
    """The section plan for a video of exactly num_frames output frames (see the module docstring for the rule;
    start_in_output=False leaves frame 0 out and plans one frame more)."""
    _check_int("num_frames", num_frames, MIN_FRAMES, MAX_FRAMES)
    _check_int("window size", window, MIN_WINDOW, MAX_WINDOW)
    _check_int("fps", fps, 1, MAX_FPS)
    if mode not in MODES:
        raise InputError(f"mode {mode!r} is not valid; use one of: {', '.join(MODES)}")
    mode = Mode(mode)
    planned = num_frames + (0 if start_in_output else 1)
    windows = balanced_windows(latents_for_frames(planned) - 1, window)  # time order
    n = len(windows)
    starts = [1 + sum(windows[:i]) for i in range(n)]
    paddings = padding_schedule(n) if mode == Mode.INVERTED else [0] * n
    sections = []
    for sampling_index in range(n):
        time_index = n - 1 - sampling_index if mode == Mode.INVERTED else sampling_index
        start, w = starts[time_index], windows[time_index]
        frame_start = 0 if start == 1 else frames_for_latents(start)
        sections.append(Section(sampling_index=sampling_index, time_index=time_index, latent_start=start,
                                num_latents=w, padding=paddings[sampling_index], frame_start=frame_start,
                                frame_end=frames_for_latents(start + w), is_video_end=time_index == n - 1,
                                is_next_to_start=start == 1))
    return SectionPlan(mode, num_frames, window, fps, tuple(sections), bool(start_in_output))


def kept_frame_indices(plan: SectionPlan) -> list[int]:
    """Generated-frame indices that survive the exact-length drops, in order (len == plan.output_frames)."""
    dropped = set(plan.dropped_frames)
    return [f for f in range(plan.first_output_frame, plan.generated_frames) if f not in dropped]


def output_frame_to_generated(plan: SectionPlan, j: int) -> int:
    """Generated-frame index of output frame j (0 <= j < plan.output_frames)."""
    if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < plan.output_frames:
        raise ValueError(f"output frame {j!r} is outside 0..{plan.output_frames - 1}")
    g = j + plan.first_output_frame
    for d in plan.dropped_frames:  # ascending: each drop at or before the candidate pushes it one further
        if d <= g:
            g += 1
    return g


def _check_seconds(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)


def prompt_weights(plan: SectionPlan, prompt_starts: list[float]) -> list[list[float]]:
    """Per section (sampling order), the weight of each prompt (caller's order).

    Prompt k is active on [start_k, next larger start) seconds; the earliest prompt is active from 0 whatever its
    start, the latest until the end. A section's weight for a prompt is the fraction of the section's time span
    (Section.time_range) that the prompt's range covers, so a section straddling a change blends both prompts,
    and every row sums to 1. Prompts with equal starts: the one later in the caller's list wins.
    """
    if not prompt_starts:
        raise InputError("at least one prompt is needed")
    starts = [_check_seconds("a prompt start time", t) for t in prompt_starts]
    if any(t < 0 for t in starts):
        raise InputError(f"prompt start times must be >= 0 seconds, got {list(prompt_starts)}")
    order = sorted(range(len(starts)), key=lambda k: starts[k])  # stable: equal starts keep the caller's order
    bounds = [0.0] + [starts[k] for k in order[1:]] + [math.inf]  # prompt order[r] covers [bounds[r], bounds[r+1])
    weights = []
    for section in plan.sections:
        t0, t1 = section.time_range(plan.fps)
        row = [0.0] * len(starts)
        for rank, k in enumerate(order):
            row[k] = max(0.0, min(t1, bounds[rank + 1]) - max(t0, bounds[rank])) / (t1 - t0)
        total = sum(row)  # the ranges tile [0, inf), so this is 1 up to rounding
        weights.append([w / total for w in row])
    return weights


def keyframe_latent_index(plan: SectionPlan, time_s: float) -> int:
    """The latent holding the output frame nearest to time_s, clamped to 1 .. total_latents-1 (latent 0 is the
    start image and cannot be pinned again)."""
    time_s = _check_seconds("keyframe time", time_s)
    j = min(max(round(time_s * plan.fps), 0), plan.output_frames - 1)
    latent = latent_index_for_frame(output_frame_to_generated(plan, j))
    return min(max(latent, 1), plan.total_latents - 1)
