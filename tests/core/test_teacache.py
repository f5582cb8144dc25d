"""TeaCache: the original's decision rule, first/last steps always computed, reuse of the residual."""

import numpy as np
import pytest
import torch

from framepack_core import TINY, FramePackTransformer, TeaCache
from framepack_core.teacache import RESCALE_COEFFICIENTS


def _original_rule(inputs, num_steps, threshold):
    """The decision sequence written out from the original's description, step by step."""
    poly = np.poly1d(RESCALE_COEFFICIENTS)
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


def test_high_threshold_skips_and_reuses_residual():
    torch.manual_seed(0)
    model = FramePackTransformer(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    kw = dict(encoder_hidden_states=r(1, 5, 32), encoder_attention_mask=None, pooled_projections=r(1, 16),
              guidance=torch.tensor([10000.0]), image_embeddings=r(1, 3, 24), latent_indices=torch.arange(2))
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
