"""diffusers' HunyuanVideoFramepackTransformer3DModel, an independent implementation of the same network, as the
reference for the parity test and the speed benchmark. Its state dict has our (the released checkpoints') key
names, so the same weights load into both; only the forward's argument names differ.

diffusers is a test-only dependency, imported when a reference is built.
"""

from __future__ import annotations

import torch

from framepack_core.config import FramePackConfig


def reference_model(config: FramePackConfig) -> torch.nn.Module:
    """diffusers' model of ``config`` (randomly initialised, in train mode, like any freshly built module)."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    return HunyuanVideoFramepackTransformer3DModel(**config.to_diffusers_kwargs())


def reference_forward(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    """diffusers' forward on ``inputs``, which are FramePackTransformer.forward's keyword arguments."""
    return model(
        hidden_states=inputs["hidden_states"], timestep=inputs["timestep"],
        encoder_hidden_states=inputs["encoder_hidden_states"], encoder_attention_mask=inputs["encoder_attention_mask"],
        pooled_projections=inputs["pooled_projections"], image_embeds=inputs["image_embeddings"],
        indices_latents=inputs["latent_indices"], guidance=inputs["guidance"],
        latents_clean=inputs["clean_latents"], indices_latents_clean=inputs["clean_latent_indices"],
        latents_history_2x=inputs["clean_latents_2x"], indices_latents_history_2x=inputs["clean_latent_2x_indices"],
        latents_history_4x=inputs["clean_latents_4x"], indices_latents_history_4x=inputs["clean_latent_4x_indices"],
        return_dict=False)[0]
