"""Noise-level (sigma) schedule of the original FramePack sampler.

Flow matching with x_sigma = (1 - sigma) * x0 + sigma * noise, sampled from sigma = 1 (pure noise) to sigma = 0
(clean data). The original spaces `steps` intervals evenly in t and bends them towards high noise with the Flux
"time shift" sigma = s*t / (1 + (s - 1)*t), s = e^mu, where mu grows linearly with the number of image tokens
(Flux's rule) but is capped at ln(max_shift) = ln 7.

At every one of the original's 640 buckets (416x960 ... 960x416) one 9-latent-frame window (33 video frames) has
13,464-14,040 tokens, far above the ~8.8k where the cap starts to bite, so the effective shift is exactly 7.0
there; only small test sizes (or an explicit `shift`) give anything else.
"""

from __future__ import annotations

import math
import numbers

import torch

from .errors import InputError

# Flux's linear rule for mu (the log of the shift): two anchor points in token count.
_MU_ANCHOR_LOW = (256, 0.5)
_MU_ANCHOR_HIGH = (4096, 1.15)
DEFAULT_MAX_SHIFT = 7.0


def _is_positive_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def flux_mu(seq_len: int) -> float:
    """mu (log shift) for `seq_len` image tokens: the line through (256, 0.5) and (4096, 1.15), uncapped."""
    (x1, y1), (x2, y2) = _MU_ANCHOR_LOW, _MU_ANCHOR_HIGH
    slope = (y2 - y1) / (x2 - x1)
    return y1 + slope * (seq_len - x1)


def seq_len_for_latents(num_latent_frames: int, latent_height: int, latent_width: int) -> int:
    """Image-token count the original feeds to `flux_mu`: T*H*W // 4 (the 1x2x2 patchify), noisy latents only."""
    for name, value in (("num_latent_frames", num_latent_frames), ("latent_height", latent_height),
                        ("latent_width", latent_width)):
        if not _is_positive_int(value):
            raise InputError(f"{name} must be a positive whole number of latent cells, got {value!r}.")
    return int(num_latent_frames) * int(latent_height) * int(latent_width) // 4


def resolve_shift(*, seq_len: int | None = None, shift: float | None = None,
                  max_shift: float = DEFAULT_MAX_SHIFT) -> float:
    """The shift s = e^mu that `sigma_schedule` uses: `shift` if given, else e^min(flux_mu(seq_len), ln max_shift)."""
    if shift is not None:
        if not (math.isfinite(shift) and shift > 0):
            raise InputError(f"shift must be a positive number (e.g. 7.0), got {shift!r}; "
                             "pass shift=None to derive it from the token count.")
        return float(shift)
    if seq_len is None:
        raise InputError("sigma_schedule needs either seq_len (image tokens per window, see seq_len_for_latents) "
                         "or an explicit shift; neither was given.")
    if not _is_positive_int(seq_len):
        raise InputError(f"seq_len must be a positive whole number of tokens, got {seq_len!r}.")
    if not (math.isfinite(max_shift) and max_shift > 0):
        raise InputError(f"max_shift must be a positive number (the original uses 7.0), got {max_shift!r}.")
    mu = flux_mu(int(seq_len))
    # Capped: return max_shift itself rather than exp(log(max_shift)), which is off by an ulp.
    return float(max_shift) if mu >= math.log(max_shift) else math.exp(mu)


def sigma_schedule(steps: int, *, seq_len: int | None = None, shift: float | None = None,
                   max_shift: float = DEFAULT_MAX_SHIFT) -> torch.Tensor:
    """float32 tensor of `steps + 1` sigmas, strictly decreasing from exactly 1.0 to exactly 0.0.

    t = linspace(1, 0, steps + 1) mapped through sigma = s*t / (1 + (s - 1)*t) with s = e^mu, where
    mu = ln(shift) when `shift` is given (an explicit override; seq_len is then ignored), otherwise
    mu = min(flux_mu(seq_len), ln(max_shift)).
    """
    if not _is_positive_int(steps):
        raise InputError(f"steps must be a whole number >= 1, got {steps!r}.")
    s = resolve_shift(seq_len=seq_len, shift=shift, max_shift=max_shift)
    # float64 for the mapping, rounded once to float32 at the end.
    t = torch.linspace(1.0, 0.0, int(steps) + 1, dtype=torch.float64)
    sigmas = s * t / (1.0 + (s - 1.0) * t)
    # The endpoints are exact in the math; pin them so float rounding of s cannot move them.
    sigmas[0] = 1.0
    sigmas[-1] = 0.0
    return sigmas.to(torch.float32)
