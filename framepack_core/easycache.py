"""EasyCache (Zhou et al. 2025, "Less is Enough: Training-Free Video Diffusion Acceleration via Runtime-Adaptive
Caching", arXiv:2507.02860) for FramePack, beside TeaCache and MagCache.

Between denoising steps the model's "transformation" Delta = v - x (its output v minus its input x) changes little,
and how fast the output moves against the input, the transformation rate k, stays nearly constant once the first
steps are past. So a step can reuse the last computed Delta while the output change it would have caused, estimated
from the input change and k, adds up to little. No calibration and no per-model coefficients: k is measured during
the run, which suits two checkpoints and user LoRAs.

The rule, as the authors' HunyuanVideo code runs it (github.com/H-EmbodVis/EasyCache,
EasyCache4HunyuanVideo/easycache_sample_video.py at commit 313ae5f79b802774044e35d8cb90f6550b48414b, function
easycache_forward, settings in main(); the file at 95e2b19 is the same apart from its licence header):

- x_t is the transformer's own input, the noisy latent [B, 16, T, H, W] before patch embedding, and v_t its output
  after the output head, unpatchified to the same shape: the cache spans the whole model (embedders, text
  refiner, every block, output head), not only the block stack. A skipped step returns x_t + Delta_s, where s is
  the last computed step.
- The first `WARMUP_STEPS` = 5 steps (their ret_steps) and the last step of the sequence are always computed, and
  the accumulated estimate restarts at 0 there.
- Every other step t: eps_t = k * mean|x_t - x_t-1| / mean|v_s| (x_t-1 is the previous step's input, computed or
  skipped; v_s the last computed output); E += eps_t; skip while E < threshold, otherwise compute and restart
  E = 0.
- After a computed step t that has an earlier computed step s: k = mean|v_t - v_s| / mean|x_t - x_s|.
- Threshold 0.025 for HunyuanVideo (limits.DEFAULT_EASYCACHE_THRESHOLD); 0 never skips (E is never below 0).

Here, as for TeaCache and MagCache, one EasyCache serves one section and one guidance branch (the authors keep one
state on the model across calls). Where the authors' tensors would turn into inf or NaN (an input that did not move
since the last computed step, a zero output) the step is computed, as their NaN comparison also ends up doing.
The warm-up is the authors' absolute 5 steps, which at FramePack's 25 steps is a fifth of a section (a tenth of
HunyuanVideo's 50): more steps are computed than in the published setting.

Sequence parallelism: x and v are whole latents, the same on every rank (a split token sequence is gathered before
the output head), so every rank makes the same decision without communicating. Every number the decision uses
comes from `mean_abs`; a caller holding only a shard of the latent would all-reduce there (sum of |.| and count).
"""

from __future__ import annotations

import torch

from .limits import DEFAULT_EASYCACHE_THRESHOLD

WARMUP_STEPS = 5  # the authors' ret_steps for HunyuanVideo


def mean_abs(tensor: torch.Tensor) -> float:
    """Mean absolute value over every element: the one statistic EasyCache takes of a tensor (module doc)."""
    return float(tensor.float().abs().mean())


class EasyCache:
    """The skip decision and the reused transformation for one section and one guidance branch (see the module
    doc). The transformer calls `should_compute(x)`, then either `reuse(x)` or, after running, `store(x, v)`."""

    def __init__(self, num_steps: int, threshold: float = DEFAULT_EASYCACHE_THRESHOLD,
                 warmup_steps: int = WARMUP_STEPS):
        self.num_steps = int(num_steps)
        self.threshold = float(threshold)
        self.warmup_steps = int(warmup_steps)
        self.reset()

    def reset(self) -> None:
        self.step = 0
        self.accumulated = 0.0  # E: estimated output change since the last computed step
        self.rate: float | None = None  # k, measured between the last two computed steps
        self.previous_input: torch.Tensor | None = None  # x_t-1
        self.computed_input: torch.Tensor | None = None  # x_s
        self.computed_output: torch.Tensor | None = None  # v_s
        self.output_magnitude = 0.0  # mean|v_s|
        self.transformation: torch.Tensor | None = None  # Delta_s = v_s - x_s
        self.computed_steps = 0
        self.skipped_steps = 0

    def should_compute(self, latent: torch.Tensor) -> bool:
        """Decides for the current step from the model's input and advances the step counter."""
        skip = False
        if self.warmup_steps <= self.step < self.num_steps - 1 and self.transformation is not None:
            change = self._estimated_change(latent)
            if change is not None:
                self.accumulated += change
                skip = self.accumulated < self.threshold
        if not skip:
            self.accumulated = 0.0
        self.previous_input = latent.detach().clone()
        self.step = (self.step + 1) % self.num_steps
        if skip:
            self.skipped_steps += 1
        else:
            self.computed_steps += 1
        return not skip

    def _estimated_change(self, latent: torch.Tensor) -> float | None:
        """eps_t, the output change this step's input change predicts; None where it cannot be estimated."""
        if self.rate is None or self.output_magnitude <= 0.0 or self.previous_input is None:
            return None
        return self.rate * mean_abs(latent - self.previous_input) / self.output_magnitude

    def reuse(self, latent: torch.Tensor) -> torch.Tensor:
        """A skipped step's output: its input plus the last computed transformation."""
        return latent + self.transformation

    def store(self, latent: torch.Tensor, output: torch.Tensor) -> None:
        """Records a computed step: its transformation, and the rate k since the previous computed step."""
        if self.computed_output is not None:
            input_change = mean_abs(latent - self.computed_input)
            self.rate = mean_abs(output - self.computed_output) / input_change if input_change > 0.0 else None
        self.transformation = output - latent
        self.computed_input = latent.detach().clone()
        self.computed_output = output.detach().clone()
        self.output_magnitude = mean_abs(output)
