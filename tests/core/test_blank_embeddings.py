"""Text-to-video's SigLIP embeddings: why a blank image's own encoding (the default) and not zeros.

By construction of the two models involved, measured here on tiny random-init copies of both:
- SigLIP's last hidden state (what FramePack is conditioned on) leaves a LayerNorm: with the norm's own scale and
  shift, every token of every image has the same mean and spread over its channels, and tokens differ by position
  (position embeddings) even for a uniform black picture. An all-zero token is outside what the encoder can output.
- FramePack's image projection (up, SiLU, down, with biases) maps an all-zero input to its bias path alone: all
  729 image tokens become one and the same vector, the same for every video, so the image context degenerates to
  one repeated token the model never saw in training.
So a blank picture's encoding is an input of the kind the model was trained on; zeros are offered for comparison.
"""

import pytest
import torch
import transformers  # test-only (the safety checker's tests need it too)

from framepack_core import TINY
from framepack_dev.random_weights import tiny_transformer

IMAGE_SIZE, PATCH = 32, 8  # 16 tokens (the released SigLIP: 384 px, patch 14, 729 tokens)


def _siglip():
    config = transformers.SiglipVisionConfig(
        hidden_size=TINY.image_proj_dim, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
        image_size=IMAGE_SIZE, patch_size=PATCH)
    torch.manual_seed(0)
    model = transformers.SiglipVisionModel(config).eval()
    # random, non-trivial LayerNorm parameters, as a trained encoder has
    with torch.no_grad():
        model.post_layernorm.weight.uniform_(0.5, 1.5)
        model.post_layernorm.bias.normal_(0, 0.1)
    return model


def _encode(siglip, pixels: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] in [0, 1] -> last hidden state [1, tokens, dim], as ComfyUI's CLIPVisionEncode hands it on."""
    x = pixels.movedim(-1, 0).unsqueeze(0) * 2 - 1  # SigLIP's normalisation (mean 0.5, std 0.5)
    with torch.no_grad():
        return siglip(pixel_values=x).last_hidden_state


def _blank(kind: str) -> torch.Tensor:
    from framepack_core.starts import blank_image

    return blank_image(kind, IMAGE_SIZE, IMAGE_SIZE, seed=3)[0]


@pytest.fixture(scope="module")
def siglip():
    return _siglip()


@pytest.mark.parametrize("kind", ["black", "white", "grey", "noise"])
def test_blank_images_encode_like_real_images(siglip, kind):
    norm = siglip.post_layernorm
    tokens = _encode(siglip, _blank(kind))[0]
    # LayerNorm output: (x - mean) / std * weight + bias, so (tokens - bias) / weight has zero mean and unit spread
    standard = (tokens - norm.bias) / norm.weight
    assert torch.allclose(standard.mean(-1), torch.zeros(len(tokens)), atol=1e-5)
    assert torch.allclose(standard.var(-1, unbiased=False), torch.ones(len(tokens)), atol=1e-3)
    # tokens differ by position, even for a uniform picture
    spread = (tokens - tokens.mean(0)).norm(dim=-1).mean()
    assert spread > 0.02 * tokens.norm(dim=-1).mean()
    # an all-zero token cannot come out of this encoder: its standardised form is -bias / weight, not unit spread
    zero_standard = (torch.zeros_like(norm.bias) - norm.bias) / norm.weight
    assert zero_standard.var(unbiased=False) < 0.1


def test_zero_embeddings_collapse_to_one_token_through_the_image_projection(siglip):
    model = tiny_transformer()
    project = model.image_projection
    with torch.no_grad():
        zero_tokens = project(torch.zeros(1, 729, TINY.image_proj_dim))[0]
        blank_tokens = project(_encode(siglip, _blank("black")))[0]
    # zeros: every token the same vector (the biases alone), whatever the video
    assert (zero_tokens - zero_tokens[:1]).abs().max() < 1e-6
    expected = project.down(torch.nn.functional.silu(project.up.bias)).detach()
    assert torch.allclose(zero_tokens[0], expected, atol=1e-6)
    # a blank picture's encoding keeps distinct tokens after the projection
    spread = (blank_tokens - blank_tokens.mean(0)).norm(dim=-1).mean()
    assert spread > 0.02 * blank_tokens.norm(dim=-1).mean()
