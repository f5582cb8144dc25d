"""Conditioning helpers: timestamped prompt text, the per-section prompt blend, and a prompt's valid tokens.

Expected values are written out here (times in seconds, tensors built by hand), not computed with the functions
under test. Timestamp parsing is tested through its public function only, on the forms its docstring promises.
"""

from __future__ import annotations

import pytest
import torch

from framepack_core import TINY
from framepack_core.conditioning import ImageConditioning, TextConditioning, blend_text, parse_timestamped_prompts
from framepack_core.errors import InputError
from framepack_core.generate import GenerationRequest, generate_video
from framepack_dev.random_weights import tiny_transformer

# -- parse_timestamped_prompts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mark,seconds", [
    ("[0s]", 0.0), ("[2s]", 2.0), ("[2.5]", 2.5), ("[2.5s]", 2.5), ("[12]", 12.0),
    ("[0:02]", 2.0), ("[1:05]", 65.0), ("[2:00]", 120.0), ("[10:30]", 630.0),
])
def test_each_timestamp_form_gives_its_seconds(mark, seconds):
    assert parse_timestamped_prompts(f"[0s] first\n{mark} later" if seconds else f"{mark} only") == (
        [(0.0, "first"), (seconds, "later")] if seconds else [(0.0, "only")])


def test_minutes_count_sixty_seconds_and_sort_with_plain_seconds():
    text = "[1:00] a minute in\n[30s] half a minute\n[0:45] three quarters\n[90] ninety"
    assert parse_timestamped_prompts(text) == [(30.0, "half a minute"), (45.0, "three quarters"),
                                               (60.0, "a minute in"), (90.0, "ninety")]


def test_lines_without_a_timestamp_continue_the_prompt_and_leading_text_starts_at_zero():
    text = "a cat sits\non a mat\n\n[2s] the cat jumps\n   high in the air  \n[3.5s] it lands"
    assert parse_timestamped_prompts(text) == [(0.0, "a cat sits on a mat"), (2.0, "the cat jumps high in the air"),
                                               (3.5, "it lands")]


def test_plain_text_is_one_prompt_from_zero():
    assert parse_timestamped_prompts("the girl dances gracefully") == [(0.0, "the girl dances gracefully")]


@pytest.mark.parametrize("text", ["[2s] a\n[0:02] b", "[1:00] a\n[60s] b", "[0] a\nleading? no\n[0s] b"])
def test_two_prompts_at_the_same_time_are_refused(text):
    with pytest.raises(InputError, match="two prompts start at the same time"):
        parse_timestamped_prompts(text)


@pytest.mark.parametrize("text", ["", "\n  \n\t\n"])
def test_empty_text_is_refused_with_an_example(text):
    with pytest.raises(InputError, match=r"empty; write e\.g\. '\[0s\] a cat walks'"):
        parse_timestamped_prompts(text)


# -- blend_text ----------------------------------------------------------------------------------------------------


def _text(values: list[list[float]], pooled: list[float]) -> TextConditioning:
    return TextConditioning(torch.tensor([values]), torch.tensor([pooled]))


A = _text([[1.0, 2.0], [3.0, 4.0]], [10.0, 20.0])  # 2 tokens
B = _text([[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]], [30.0, 40.0])  # 3 tokens
C = _text([[-1.0, 1.0]], [0.0, 100.0])  # 1 token


def test_blend_mixes_tokens_zero_padded_and_pooled_with_the_same_weights():
    mixed = blend_text([A, B], [0.25, 0.75])
    # A is padded with a zero token to B's length: its tokens fade out, B's third token comes in at 0.75
    assert torch.equal(mixed.tokens, torch.tensor([[[4.0, 5.0], [6.0, 7.0], [6.75, 7.5]]]))
    assert torch.equal(mixed.pooled, torch.tensor([[25.0, 35.0]]))
    assert mixed.mask is None


def test_blend_of_three_prompts():
    mixed = blend_text([A, B, C], [0.5, 0.25, 0.25])
    assert torch.allclose(mixed.tokens, torch.tensor([[[1.5, 2.75], [3.25, 4.0], [2.25, 2.5]]]))
    assert torch.allclose(mixed.pooled, torch.tensor([[12.5, 45.0]]))


def test_prompts_with_zero_weight_take_no_part():
    """A zero-weight prompt neither pads the others nor shifts the pooled mix; one active prompt is used as is."""
    mixed = blend_text([A, B, C], [0.5, 0.0, 0.5])
    assert torch.equal(mixed.tokens, torch.tensor([[[0.0, 1.5], [1.5, 2.0]]]))  # 2 tokens, not B's 3
    assert torch.equal(mixed.pooled, torch.tensor([[5.0, 60.0]]))
    assert blend_text([A, B, C], [0.0, 1.0, 0.0]) is B


# -- TextConditioning.cropped ---------------------------------------------------------------------------------------


def test_cropped_keeps_exactly_the_tokens_the_mask_marks_valid():
    tokens = torch.arange(12.0).reshape(1, 6, 2)
    text = TextConditioning(tokens.to(torch.bfloat16), torch.tensor([[1.0, 2.0]], dtype=torch.float16),
                            torch.tensor([[1, 0, 1, 1, 0, 0]]))
    cropped = text.cropped()
    assert torch.equal(cropped.tokens, torch.tensor([[[0.0, 1.0], [4.0, 5.0], [6.0, 7.0]]]))
    assert cropped.tokens.dtype == torch.float32 and cropped.pooled.dtype == torch.float32
    assert torch.equal(cropped.pooled, torch.tensor([[1.0, 2.0]])) and cropped.mask is None


def test_cropped_without_a_mask_keeps_every_token_and_flattens_pooled():
    tokens = torch.randn(1, 7, 3)
    cropped = TextConditioning(tokens, torch.ones(768)).cropped()
    assert torch.equal(cropped.tokens, tokens) and cropped.pooled.shape == (1, 768)


def test_cropped_keeps_the_first_256_tokens(caplog):
    tokens = torch.arange(300.0).reshape(1, 300, 1)
    cropped = TextConditioning(tokens, torch.zeros(1, 4)).cropped()
    assert torch.equal(cropped.tokens, torch.arange(256.0).reshape(1, 256, 1))
    assert "prompt has 300 tokens; FramePack uses the first 256" in caplog.text
    masked = TextConditioning(tokens, torch.zeros(1, 4), torch.arange(300).remainder(2).eq(0)[None]).cropped()
    assert torch.equal(masked.tokens, torch.arange(0.0, 300.0, 2.0).reshape(1, 150, 1))  # 150 valid: all kept


def test_cropped_with_no_valid_token_gives_one_zero_token():
    cropped = TextConditioning(torch.ones(1, 4, 3), torch.ones(1, 2), torch.zeros(1, 4, dtype=torch.bool)).cropped()
    assert torch.equal(cropped.tokens, torch.zeros(1, 1, 3))


def test_zeros_like_is_the_original_negative():
    text = TextConditioning(torch.randn(1, 5, 3), torch.randn(1, 4), torch.tensor([[1, 1, 1, 0, 0]]))
    zeros = text.zeros_like()
    assert torch.equal(zeros.tokens, torch.zeros(1, 5, 3)) and torch.equal(zeros.pooled, torch.zeros(1, 4))
    assert torch.equal(zeros.mask, text.mask)


def test_the_model_sees_only_the_valid_tokens_of_a_masked_prompt(monkeypatch):
    """Through the section loop: a padded prompt with its mask reaches the model as its valid tokens only, and
    samples the same latents as the unpadded prompt."""
    g = torch.Generator().manual_seed(5)
    start = ImageConditioning(torch.randn(1, 16, 1, 4, 4, generator=g), torch.randn(1, 3, TINY.image_proj_dim, generator=g))
    valid = torch.randn(1, 4, TINY.text_embed_dim, generator=g)
    padded = torch.cat([valid, torch.full((1, 3, TINY.text_embed_dim), 50.0)], dim=1)
    pooled = torch.randn(1, TINY.pooled_projection_dim, generator=g)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    model = tiny_transformer()
    forward, seen = model.forward, []

    def spy(*args, **kwargs):
        seen.append((kwargs["encoder_hidden_states"].clone(), kwargs["encoder_attention_mask"]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    latents = []
    for text in (TextConditioning(padded, pooled, mask), TextConditioning(valid, pooled)):
        seen.clear()
        request = GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=30, steps=2, seed=3)
        latents.append(generate_video(model, request).latents)
        assert len(seen) == 2
        assert all(torch.equal(tokens, valid) and mask_seen is None for tokens, mask_seen in seen)
    assert torch.equal(latents[0], latents[1])
