"""TeaCache: the original's decision rule, first/last steps always computed, reuse of the residual."""

import pytest
import torch

from framepack_core import TINY, TeaCache
from framepack_dev.random_weights import random_model

# The original's rescale polynomial for HunyuanVideo, highest power first, as published in lllyasviel/FramePack
# diffusers_helper/models/hunyuan_video_packed.py (initialize_teacache, commit 33e5531).
ORIGINAL_COEFFICIENTS = [7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02]


def _original_poly(x: float) -> float:
    return sum(c * x ** (4 - k) for k, c in enumerate(ORIGINAL_COEFFICIENTS))


def _original_rule(inputs, num_steps, threshold):
    """The decision sequence written out from the original's description, step by step."""
    poly = _original_poly
    decisions, acc, prev = [], 0.0, None
    for i, x in enumerate(inputs):
        cnt = i % num_steps
        if cnt == 0 or cnt == num_steps - 1:
            calc, acc = True, 0.0
        else:
            acc += poly(((x - prev).abs().mean() / prev.abs().mean()).item())
            calc = acc >= threshold
            if calc:
                acc = 0.0
        prev = x
        decisions.append(calc)
    return decisions


def test_the_change_is_rescaled_by_the_original_polynomial():
    """One step's accumulated distance is exactly the original polynomial of the relative L1 change."""
    first = torch.tensor([1.0, -2.0, 3.0, -4.0])
    for change in (0.02, 0.1, 0.3):
        cache = TeaCache(num_steps=10, rel_l1_threshold=1e9)
        cache.should_compute(first)
        cache.residual = torch.zeros(1)
        assert not cache.should_compute(first * (1 + change))  # relative L1 change = change
        # float32 tensors: the relative change is exact to ~1e-7
        assert cache.accumulated == pytest.approx(_original_poly(change), rel=1e-5)


def test_reaching_the_threshold_exactly_computes_and_a_missing_residual_is_never_reused():
    first = torch.tensor([1.0, -2.0, 3.0, -4.0])
    probe = TeaCache(num_steps=10, rel_l1_threshold=1e9)
    probe.should_compute(first)
    probe.residual = torch.zeros(1)
    probe.should_compute(first * 1.1)
    reached = probe.accumulated  # one step's distance: as a threshold it is reached, not passed
    cache = TeaCache(num_steps=10, rel_l1_threshold=reached)
    cache.should_compute(first)
    cache.residual = torch.zeros(1)
    assert cache.should_compute(first * 1.1)  # the original computes once the sum is >= the threshold
    # no residual stored after the computed step: nothing to reuse, so the next step computes whatever the change
    fresh = TeaCache(num_steps=10, rel_l1_threshold=1e9)
    fresh.should_compute(first)
    assert fresh.should_compute(first)


@pytest.mark.parametrize("threshold", [0.05, 0.15, 0.5])
def test_decisions_follow_the_original_rule(threshold):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 50, 8, generator=g)
    # slowly changing inputs, as consecutive denoising steps are
    inputs = [base + 0.02 * k * torch.randn(1, 50, 8, generator=g) for k in range(25)]
    cache = TeaCache(num_steps=25, rel_l1_threshold=threshold)
    ours = []
    for x in inputs:
        ours.append(cache.should_compute(x))
        cache.residual = torch.zeros(1)  # a residual exists after any computed step
    assert ours == _original_rule(inputs, 25, threshold)
    assert ours[0] and ours[-1]
    assert cache.computed_steps + cache.skipped_steps == 25


def _model_and_inputs(seed: int):
    """The tiny model (weights N(0, 0.1^2)), a random-input maker seeded with `seed`, and one section's inputs."""
    model = random_model(TINY, std=0.1)
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    kw = dict(encoder_hidden_states=r(1, 5, 32), encoder_attention_mask=None, pooled_projections=r(1, 16),
              guidance=torch.tensor([10000.0]), image_embeddings=r(1, 3, 24), latent_indices=torch.arange(2))
    return model, r, kw


def test_high_threshold_skips_and_reuses_residual():
    model, r, kw = _model_and_inputs(seed=1)
    x = r(1, 16, 2, 8, 8)
    cache = TeaCache(num_steps=4, rel_l1_threshold=100.0)
    with torch.no_grad():
        outs = [model(x, torch.tensor([t]), cache=cache, **kw) for t in (900.0, 800.0, 700.0, 600.0)]
        plain = model(x, torch.tensor([800.0]), **kw)
    assert cache.computed_steps == 2 and cache.skipped_steps == 2  # first and last only
    assert not torch.equal(outs[1], plain)  # step 2 reused step 1's residual instead of running the blocks
    # with a zero threshold every step is computed and equals the uncached forward
    cache = TeaCache(num_steps=4, rel_l1_threshold=0.0)
    with torch.no_grad():
        for t in (900.0, 800.0):
            out = model(x, torch.tensor([t]), cache=cache, **kw)
    assert torch.equal(out, plain)


def test_a_skipped_step_adds_the_last_computed_residual_to_its_own_input():
    """Skipped steps run no block: the tokens leaving the block stack are this step's input tokens plus the residual
    (output - input of the stack) of the last computed step; computed steps run the blocks as without TeaCache."""
    model, r, kw = _model_and_inputs(seed=2)
    base = r(1, 16, 2, 8, 8)
    xs = [base + 0.01 * k * r(1, 16, 2, 8, 8) for k in range(4)]  # slowly changing, as denoising steps are
    stack_in, stack_out = [], []  # per step: tokens entering the blocks, noisy tokens leaving them
    model.transformer_blocks[0].norm1.register_forward_pre_hook(lambda m, args: stack_in.append(args[0].clone()))
    model.norm_out.register_forward_pre_hook(lambda m, args: stack_out.append(args[0].clone()))
    cache = TeaCache(num_steps=4, rel_l1_threshold=100.0)
    with torch.no_grad():
        for x, t in zip(xs, (900.0, 800.0, 700.0, 600.0)):
            model(x, torch.tensor([t]), cache=cache, **kw)
    assert (cache.computed_steps, cache.skipped_steps) == (2, 2)
    # computed steps call norm1 twice (TeaCache's probe, then block 0), skipped steps once
    inputs = [stack_in[0], stack_in[2], stack_in[3], stack_in[4]]
    assert len(stack_in) == 6 and torch.equal(stack_in[0], stack_in[1]) and torch.equal(stack_in[4], stack_in[5])
    n = stack_out[0].shape[1]  # the noisy tokens are the last n of the stack
    residual = stack_out[0] - inputs[0][:, -n:]
    for step in (1, 2):
        torch.testing.assert_close(stack_out[step], inputs[step][:, -n:] + residual, rtol=0, atol=1e-6)
        assert not torch.allclose(stack_out[step], inputs[step][:, -n:], atol=1e-3)  # the residual is not ~0


def test_default_threshold_is_the_originals():
    """FramePack's demo enables TeaCache with rel_l1_thresh=0.15 (written out here, not imported)."""
    assert TeaCache(25).threshold == 0.15
