"""Random-weight FramePack transformers for the benchmarks (no weights can be downloaded, and speed and memory do
not depend on the values).

The model is built on the meta device and every tensor is drawn where the model will run: 12.9B normal samples
take well under a second from a CUDA generator but minutes from the CPU one.
"""

from __future__ import annotations

import torch

from framepack_core import FramePackConfig, FramePackTransformer


def random_model(config: FramePackConfig, dtype: torch.dtype, device: str | torch.device, seed: int = 0,
                 std: float = 0.02) -> FramePackTransformer:
    """A model of ``config`` with N(0, std^2) weights stored and computed in ``dtype``, on ``device``, in eval mode."""
    device = torch.device(device)
    with torch.device("meta"):
        model = FramePackTransformer(config)
    generator = torch.Generator(device).manual_seed(seed)
    state = {}
    for name, tensor in sorted(model.state_dict().items()):
        values = torch.randn(tensor.shape, generator=generator, device=device, dtype=torch.float32)
        state[name] = values.mul_(std).to(dtype)
    model.load_state_dict(state, assign=True)
    model.compute_dtype = dtype
    return model.eval().requires_grad_(False)


def sequence_tokens(model: FramePackTransformer, inputs: dict) -> dict[str, int]:
    """How many tokens one forward on ``inputs`` (FramePackTransformer.forward's keyword arguments) attends over:
    image tokens (noisy latents plus the packed 1x/2x/4x history), SigLIP tokens and text tokens."""
    context = model.prepare(inputs["hidden_states"].shape, inputs["latent_indices"], inputs["image_embeddings"],
                            inputs["clean_latents"], inputs["clean_latent_indices"], inputs["clean_latents_2x"],
                            inputs["clean_latent_2x_indices"], inputs["clean_latents_4x"],
                            inputs["clean_latent_4x_indices"])
    history = 0 if context.history_tokens is None else context.history_tokens.shape[1]
    _, _, t, h, w = inputs["hidden_states"].shape
    p = model.config.patch_size
    noisy = t // model.config.patch_size_t * (h // p) * (w // p)
    return {"image": history + noisy, "noisy": noisy, "history": history,
            "siglip": context.image_tokens.shape[1], "text": inputs["encoder_hidden_states"].shape[1]}
