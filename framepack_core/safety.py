"""The safety checker's scoring: which frames of a video are scored, the image classifier's input (resized and
normalised as its preprocessor says) and the probability of its NSFW label. Torch only: the caller loads the
classifier and hands it in as a function from normalised pixel batches to logits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

# Labels that mean "safe"; every other label of a two-way classifier is the NSFW one.
SAFE_LABELS = ("normal", "sfw", "safe", "neutral")
SCORE_BATCH = 8


def sample_indices(frame_count: int, samples: int) -> list[int]:
    """``samples`` frame indices spread evenly over the video, always including the first and the last frame."""
    if frame_count <= 0:
        return []
    samples = max(1, min(samples, frame_count))
    if samples == 1:
        return [0] if frame_count == 1 else [0, frame_count - 1]
    step = (frame_count - 1) / (samples - 1)
    return sorted({round(i * step) for i in range(samples)})


def nsfw_label_index(labels: dict[int, str]) -> int | None:
    """The index of the label meaning NSFW: the one unsafe label naming "nsfw", or the unsafe one of two labels;
    None when the labels do not say."""
    unsafe = [i for i, name in labels.items() if str(name).lower() not in SAFE_LABELS]
    named = [i for i in unsafe if "nsfw" in str(labels[i]).lower()]
    if len(named) == 1:
        return named[0]
    if len(labels) == 2 and len(unsafe) == 1:
        return unsafe[0]
    return None


@dataclass
class FrameScorer:
    logits: Callable[[torch.Tensor], torch.Tensor]  # [N, 3, H, W] normalised float32 -> [N, labels]
    nsfw_index: int
    size: tuple[int, int]  # (height, width) the classifier expects
    mean: torch.Tensor  # [1, 3, 1, 1]
    std: torch.Tensor

    @torch.no_grad()
    def scores(self, frames: torch.Tensor) -> torch.Tensor:
        """NSFW probability of each frame of ``frames`` ([N, H, W, C] floats in 0..1, ComfyUI's IMAGE layout)."""
        out = []
        for start in range(0, frames.shape[0], SCORE_BATCH):
            pixels = frames[start:start + SCORE_BATCH, ..., :3].to(torch.float32).permute(0, 3, 1, 2)
            pixels = F.interpolate(pixels, size=self.size, mode="bilinear", align_corners=False, antialias=True)
            pixels = (pixels - self.mean) / self.std
            out.append(torch.softmax(self.logits(pixels).float(), dim=-1)[:, self.nsfw_index])
        return torch.cat(out) if out else torch.zeros(0)
