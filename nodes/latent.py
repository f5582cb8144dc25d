"""The LATENT that FramePack Sampler hands to FramePack Video Combine (no ComfyUI import: tests/nodes runs it alone).

ComfyUI's LATENT is a dict. "samples" holds the video's latents in the VAE's space (config.to_vae_space), as for
any video latent, so ComfyUI's own latent nodes and VAE Decode read them too. Under "framepack" goes what decoding
needs and the samples do not say (SampledPlan): the section plan they were sampled with (planning.SectionPlan,
worked out once, by the sampler), the lead latents of a continued video's history, and the continued input. Video
Combine takes the plan from here and never plans again; the core's MP4 writer checks the samples against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..framepack_core.config import to_vae_space
from ..framepack_core.errors import InputError
from ..framepack_core.planning import SectionPlan
from ..framepack_core.video_input import FrameSource

META_KEY = "framepack"


@dataclass(frozen=True)
class SampledPlan:
    """How a video latent was sampled: its section plan and what decoding needs besides the samples."""

    plan: SectionPlan
    seed: int
    lead_latents: int = 1  # latents up to the start in time: the start latent, or a continued video's history
    continues: FrameSource | None = None  # the continued input, fitted to the video size
    keep_input: bool = True  # the MP4 holds the input before the continuation


def sampler_latent(model_latents: torch.Tensor, sampled: SampledPlan) -> dict:
    """The sampler's LATENT output: its model-space latents in the VAE's space, and how they were sampled."""
    return {"samples": to_vae_space(model_latents), META_KEY: sampled}


def sampled_video(latent) -> tuple[torch.Tensor, SampledPlan]:
    """(samples [B, C, T, h, w] in the VAE's space, how they were sampled) of a LATENT from FramePack Sampler. A
    latent node between the sampler and Video Combine may have replaced the samples; the MP4 writer checks them
    against the plan. InputError says what to connect when the LATENT did not come from FramePack Sampler."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor):
        raise InputError("the latent input holds no latent samples; connect FramePack Sampler's latent")
    if samples.ndim != 5:
        raise InputError(f"the latent is not a video latent (shape {list(samples.shape)}); connect FramePack Sampler")
    sampled = latent.get(META_KEY)
    if sampled is None:
        raise InputError("this latent does not come from FramePack Sampler (no section plan); decode it with "
                         "VAE Decode instead")
    if not isinstance(sampled, SampledPlan):
        raise InputError("this latent's FramePack data holds no section plan (it was made by an older version of this "
                         "pack or by another node): run FramePack Sampler again and connect its latent")
    return samples, sampled
