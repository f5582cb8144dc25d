"""From a velocity-predicting transformer to the x0 model function the samplers use, with real (two-pass) CFG.

FramePack is guidance-distilled (the distilled scale goes into the transformer as an embedding and is not handled
here); real classifier-free guidance is optional and off by default (cfg_scale = 1), exactly as in the original.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from .errors import InputError

Branch = Literal["positive", "negative"]
POSITIVE: Branch = "positive"
NEGATIVE: Branch = "negative"
# predict_velocity(x, timestep, branch) -> v, with timestep = sigma * 1000 as a float32 tensor of shape [B].
VelocityFn = Callable[[torch.Tensor, torch.Tensor, str], torch.Tensor]
BothBranchesFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

TIMESTEP_SCALE = 1000.0


def rescale_guided_velocity(guided: torch.Tensor, positive: torch.Tensor, rescale: float) -> torch.Tensor:
    """CFG rescale (Lin et al. 2023) as the original applies it: to the *velocity*, per sample.

    The guided velocity is scaled so its standard deviation over all non-batch dims matches the positive
    branch's, then blended with the unscaled one: rescale * scaled + (1 - rescale) * guided. rescale = 0 is a no-op.
    """
    if rescale == 0:
        return guided
    dims = list(range(1, guided.ndim))
    # Population std (correction=0): only the ratio matters, so this equals the original's unbiased std ratio
    # while staying defined for one-element samples.
    std_positive = positive.std(dim=dims, keepdim=True, correction=0)
    std_guided = guided.std(dim=dims, keepdim=True, correction=0)
    # A constant guided velocity (std 0) has no scale to fix; the floor avoids inf/nan there.
    scaled = guided * (std_positive / std_guided.clamp_min(torch.finfo(guided.dtype).tiny))
    return rescale * scaled + (1.0 - rescale) * guided


class FlowDenoiser:
    """Wraps `predict_velocity(x, timestep, branch) -> v` into `model_fn(x, sigma) -> x0` for the samplers.

    x0 = x - v * sigma, computed in float32, where v is the positive branch's velocity when cfg_scale == 1 (the
    negative branch is then never called, as in the original), and otherwise
    v = rescale(negative + cfg_scale * (positive - negative)), see `rescale_guided_velocity`.
    """

    def __init__(self, predict_velocity: VelocityFn, cfg_scale: float = 1.0, cfg_rescale: float = 0.0,
                 predict_both: BothBranchesFn | None = None):
        """`predict_both(x, timestep) -> (positive, negative)`: optional, for CFG parallelism, where each rank
        computes one branch and receives the other (parallel/mesh.py); used only when cfg_scale != 1."""
        if not callable(predict_velocity):
            raise InputError("predict_velocity must be a callable (x, timestep, branch) -> velocity.")
        if not (math.isfinite(cfg_scale) and cfg_scale >= 0):
            raise InputError(f"cfg_scale must be a number >= 0 (1.0 = no real CFG, the original's default), "
                             f"got {cfg_scale!r}.")
        if not (0.0 <= cfg_rescale <= 1.0):
            raise InputError(f"cfg_rescale must be between 0 and 1 (0 = off, the original's default), "
                             f"got {cfg_rescale!r}.")
        self.predict_velocity = predict_velocity
        self.cfg_scale = float(cfg_scale)
        self.cfg_rescale = float(cfg_rescale)
        self.predict_both = predict_both

    @property
    def uses_negative(self) -> bool:
        """Whether each evaluation costs two transformer passes."""
        return self.cfg_scale != 1.0

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The guided velocity (float32) at x and sigma ([B] or a scalar tensor)."""
        sigma = self._batch_sigma(x, sigma)
        timestep = sigma * TIMESTEP_SCALE
        if self.uses_negative and self.predict_both is not None:
            positive, negative = (v.float() for v in self.predict_both(x, timestep))
        else:
            positive = self.predict_velocity(x, timestep, POSITIVE).float()
            if not self.uses_negative:
                return positive
            negative = self.predict_velocity(x, timestep, NEGATIVE).float()
        guided = negative + self.cfg_scale * (positive - negative)
        return rescale_guided_velocity(guided, positive, self.cfg_rescale)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = self._batch_sigma(x, sigma)
        v = self.velocity(x, sigma)
        return x.float() - v * sigma.view(-1, *([1] * (x.ndim - 1)))

    @staticmethod
    def _batch_sigma(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).float()
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape != (x.shape[0],):
            raise InputError(f"sigma must be a scalar or have shape [batch] = [{x.shape[0]}], got {tuple(sigma.shape)}.")
        return sigma
