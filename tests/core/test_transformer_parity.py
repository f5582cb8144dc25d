"""Numerical parity of our transformer with an independent implementation: diffusers'
HunyuanVideoFramepackTransformer3DModel (test-only dependency). Same weights loaded strictly both ways, same inputs,
float32: max abs difference must stay <= 1e-5."""

import dataclasses
from pathlib import Path

import pytest
import torch

from framepack_core import RELEASED, TINY, FramePackConfig, FramePackTransformer

from framepack_dev.diffusers_reference import reference_forward, reference_model

pytest.importorskip("diffusers", reason="diffusers is the test-only parity reference")

TOLERANCE = 1e-5
# Key names and shapes of the released checkpoints (1,274 tensors), derived from the original model code.
KEYS_FILE = Path(__file__).resolve().parents[1] / "data" / "framepack_released_keys.tsv"

CONFIGS = {
    "tiny": TINY,
    "deeper": dataclasses.replace(TINY, num_layers=3, num_single_layers=4, num_refiner_layers=2),
    "wider": dataclasses.replace(TINY, num_attention_heads=4, attention_head_dim=24, rope_axes_dim=(8, 8, 8),
                                 mlp_ratio=2.0, text_embed_dim=40, pooled_projection_dim=12, image_proj_dim=20),
}


def _random_state_dict(model: torch.nn.Module, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    # Small random weights keep activations O(1) through many blocks, so the comparison is meaningful.
    return {k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in model.state_dict().items()}


def _models(config: FramePackConfig, seed: int = 0):
    ref = reference_model(config).eval()
    ours = FramePackTransformer(config).eval()
    weights = _random_state_dict(ref, seed)
    ref.load_state_dict(weights, strict=True)
    ours.load_state_dict(weights, strict=True)
    # and the other way round: our state dict loads strictly into the reference
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours, ref


def _inputs(config: FramePackConfig, batch: int, text_lengths: list[int], seed: int = 1, grid=(3, 8, 12)):
    gen = torch.Generator().manual_seed(seed)
    t, h, w = grid
    rnd = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    max_len = max(text_lengths)
    mask = torch.zeros(batch, max_len, dtype=torch.bool)
    for i, n in enumerate(text_lengths):
        mask[i, :n] = True
    return dict(
        hidden_states=rnd(batch, 16, t, h, w),
        timestep=torch.tensor([937.0, 412.5][:batch]),
        guidance=torch.tensor([10000.0, 6000.0][:batch]),
        encoder_hidden_states=rnd(batch, max_len, config.text_embed_dim),
        encoder_attention_mask=mask,
        pooled_projections=rnd(batch, config.pooled_projection_dim),
        image_embeddings=rnd(batch, 6, config.image_proj_dim),
        # the original inverted layout: [start | blank | window | post | 2x | 4x]
        latent_indices=torch.arange(3, 3 + t),
        clean_latents=rnd(batch, 16, 2, h, w), clean_latent_indices=torch.tensor([0, 3 + t]),
        clean_latents_2x=rnd(batch, 16, 2, h, w), clean_latent_2x_indices=torch.tensor([4 + t, 5 + t]),
        clean_latents_4x=rnd(batch, 16, 16, h, w), clean_latent_4x_indices=torch.arange(6 + t, 22 + t),
    )


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("batch,text_lengths", [(1, [7]), (2, [9, 4])])
def test_forward_matches_diffusers(name, batch, text_lengths):
    config = CONFIGS[name]
    ours, ref = _models(config)
    x = _inputs(config, batch, text_lengths)
    with torch.no_grad():
        expected = reference_forward(ref, x)
        actual = ours(**x)
    assert actual.shape == expected.shape == x["hidden_states"].shape
    assert expected.abs().max() > 0.1  # a degenerate (all ~0) output would make the comparison meaningless
    diff = (actual - expected).abs().max().item()
    assert diff <= TOLERANCE, f"max abs diff {diff:.3g} > {TOLERANCE}"


def test_batch_one_with_padding_equals_unpadded():
    """Batch 1 crops the padded text; the result must equal the same prompt without padding."""
    ours, _ = _models(TINY)
    x = _inputs(TINY, 1, [5])
    padded = dict(x, encoder_hidden_states=torch.cat([x["encoder_hidden_states"], torch.randn(1, 4, 32)], 1),
                  encoder_attention_mask=torch.cat([x["encoder_attention_mask"], torch.zeros(1, 4, dtype=torch.bool)], 1))
    with torch.no_grad():
        assert torch.equal(ours(**x), ours(**padded))


def test_batch_rows_are_independent():
    """Sample 0 of a masked batch of 2 equals the same sample run alone (the masking is correct)."""
    ours, _ = _models(TINY)
    x = _inputs(TINY, 2, [9, 4])
    single = {k: (v[:1] if torch.is_tensor(v) and v.ndim > 1 or k in ("timestep", "guidance") else v) for k, v in x.items()}
    with torch.no_grad():
        both = ours(**x)
        alone = ours(**single)
    assert (both[:1] - alone).abs().max().item() <= TOLERANCE


def test_prepared_context_gives_identical_output():
    ours, _ = _models(TINY)
    x = _inputs(TINY, 1, [7])
    with torch.no_grad():
        context = ours.prepare(x["hidden_states"].shape, x["latent_indices"], x["image_embeddings"], x["clean_latents"],
                               x["clean_latent_indices"], x["clean_latents_2x"], x["clean_latent_2x_indices"],
                               x["clean_latents_4x"], x["clean_latent_4x_indices"])
        assert torch.equal(ours(**x), ours(**x, context=context))


def test_released_key_set_loads_strictly_on_meta():
    """The released checkpoints' 1,274 tensors (names and shapes) load strictly into the released-size model,
    built on the meta device so no 26 GB are allocated."""
    lines = [ln.split("\t") for ln in KEYS_FILE.read_text().splitlines() if ln.strip()]
    shapes = {name: tuple(int(s) for s in shape.strip("[]").split(",")) for name, shape in lines}
    assert len(shapes) == 1274
    with torch.device("meta"):
        model = FramePackTransformer(RELEASED)
        model.load_state_dict({k: torch.empty(s) for k, s in shapes.items()}, strict=True, assign=True)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == shapes
    params = sum(v.numel() for v in model.state_dict().values())
    assert 12.8e9 < params < 12.9e9, params
