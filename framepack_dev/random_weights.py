"""Random-weight FramePack transformers: the tests' tiny models and the benchmarks' full-size ones (no weights can
be downloaded here, and speed and memory do not depend on the values).

The model is built on the meta device and every tensor is drawn where the model will run: 12.9B normal samples
take well under a second from a CUDA generator but minutes from the CPU one. The values are drawn in sorted key
order from one generator, so a seed gives the same weights whatever the module order.
"""

from __future__ import annotations

import torch

from framepack_core.config import TINY, FramePackConfig
from framepack_core.transformer import FramePackTransformer

# Small enough that activations stay O(1) through the tiny model's blocks, large enough that outputs differ clearly.
TINY_STD = 0.05


def _draws(model: torch.nn.Module, seed: int, std: float, device: torch.device):
    """(name, N(0, std^2) float32 values on ``device``) for every tensor of the state dict, in sorted key order."""
    generator = torch.Generator(device).manual_seed(seed)
    for name, tensor in sorted(model.state_dict().items()):
        yield name, torch.randn(tensor.shape, generator=generator, device=device, dtype=torch.float32).mul_(std)


def randomize_(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Overwrites every tensor of a built model (any module, e.g. diffusers' reference) in place, one at a time, so
    no second copy of the weights is ever held. Returns the model in eval mode without gradients."""
    state = model.state_dict()
    device = next(iter(state.values())).device
    with torch.no_grad():
        for name, values in _draws(model, seed, std, device):
            state[name].copy_(values)
    return model.eval().requires_grad_(False)


def random_model(config: FramePackConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 seed: int = 0, std: float = 0.02) -> FramePackTransformer:
    """A model of ``config`` with N(0, std^2) weights stored and computed in ``dtype``, on ``device``, in eval mode."""
    with torch.device("meta"):
        model = FramePackTransformer(config)
    device = torch.device(device)
    model.load_state_dict({name: values.to(dtype) for name, values in _draws(model, seed, std, device)}, assign=True)
    model.compute_dtype = dtype
    return model.eval().requires_grad_(False)


def tiny_transformer(seed: int = 0) -> FramePackTransformer:
    """The tests' model: the TINY config (the released structure and key names, small sizes) in float32 on the CPU."""
    return random_model(TINY, seed=seed, std=TINY_STD)


def window_inputs(config: FramePackConfig, seed: int = 1) -> dict:
    """FramePackTransformer.forward's keyword arguments for a 2-latent 8x8 window without history, 5 prompt tokens
    and 3 SigLIP tokens of `config`'s widths: the small forward the storage tests (fp8, GGUF) compare."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(hidden_states=r(1, 16, 2, 8, 8), timestep=torch.tensor([700.0]), guidance=torch.tensor([10000.0]),
                encoder_hidden_states=r(1, 5, config.text_embed_dim), encoder_attention_mask=None,
                pooled_projections=r(1, config.pooled_projection_dim),
                image_embeddings=r(1, 3, config.image_proj_dim), latent_indices=torch.arange(2))
