"""Activation memory: the meta-device tracker, the copies the block code makes, and the formula the offload planner
uses (held to the measurement at full model size)."""

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from framepack_core import RELEASED, TINY, FramePackTransformer
from framepack_core.conditioning import ImageConditioning, TextConditioning
from framepack_core.generate import GenerationRequest, generate_video
from framepack_core.layers import rms_norm_rope
from framepack_core.memory import (PeakTracker, default_reserve_bytes, fused_attention_on_meta, image_tokens,
                                   measure_peak_activations, peak_activation_bytes)

MiB = 2 ** 20


def test_tracker_counts_new_tensors_not_views_and_forgets_freed_ones():
    with PeakTracker() as tracker:
        a = torch.empty(1000, device="meta")  # 4000 bytes
        view = a.view(10, 100)
        assert tracker.live == 4000
        b = view + 1
        assert tracker.live == 8000
        a.mul_(2)  # in place: no new memory
        assert tracker.live == 8000
        del b
        assert tracker.live == 4000
        del a, view
        assert tracker.live == 0
    assert tracker.peak == 8000


def test_rms_norm_and_rope_make_one_float32_copy_of_q():
    """q/k are the largest tensors of a block: norm + RoPE hold one float32 copy of them and the rounded output."""
    with torch.device("meta"):
        block = FramePackTransformer(RELEASED).single_transformer_blocks[0]
    n, heads, head_dim = 18_485, RELEASED.num_attention_heads, RELEASED.attention_head_dim
    q = torch.empty(1, n, heads, head_dim, device="meta", dtype=torch.bfloat16)
    rope = torch.empty(n, head_dim // 2, device="meta", dtype=torch.complex64)
    with PeakTracker() as tracker, torch.no_grad():
        rms_norm_rope(q, block.attn.norm_q, rope)
    q_bytes = q.numel() * q.element_size()
    float32_copy, rounded_output, norms = 2 * q_bytes, q_bytes, n * heads * 4
    assert tracker.peak <= float32_copy + rounded_output + norms


class _CountMatmuls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default):
            self.shapes.append(tuple(args[-1].shape))
        return func(*args, **(kwargs or {}))


def test_single_block_output_projection_is_one_matmul():
    """proj_out(cat(attention, mlp)) is one matmul over the whole input width (one rounding), as in the original."""
    config = RELEASED
    with torch.device("meta"):
        block = FramePackTransformer(config).single_transformer_blocks[0]
    n, dim = 1000, config.inner_dim
    h = torch.empty(1, n, dim, device="meta", dtype=torch.bfloat16)
    temb = torch.empty(1, dim, device="meta", dtype=torch.bfloat16)
    rope = torch.empty(n, config.attention_head_dim // 2, device="meta", dtype=torch.complex64)
    with fused_attention_on_meta(), _CountMatmuls() as counter, torch.no_grad():
        block(h, temb, rope, None)
    # modulation, the fused q/k/v/mlp projection, the output projection
    assert counter.shapes == [(dim, 3 * dim), (dim, 3 * dim + config.mlp_dim), (dim + config.mlp_dim, dim)]


class _CountTextCopies(TorchDispatchMode):
    def __init__(self, shape):
        super().__init__()
        self.shape, self.copies = shape, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and tuple(out.shape) == self.shape:
            self.copies += 1
        return out


def test_text_tokens_are_converted_once_per_section():
    torch.manual_seed(0)
    model = FramePackTransformer(TINY).eval().to(torch.bfloat16)
    model.compute_dtype = torch.bfloat16
    g = torch.Generator().manual_seed(0)
    text_len = 7
    start = ImageConditioning(torch.randn(1, 16, 1, 8, 8, generator=g),
                              torch.randn(1, 3, TINY.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, text_len, TINY.text_embed_dim, generator=g),
                            torch.randn(1, TINY.pooled_projection_dim, generator=g))
    steps = 4
    request = GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=61, steps=steps, seed=1, window=4)
    with _CountTextCopies((1, text_len, TINY.text_embed_dim)) as counter, torch.no_grad():
        result = generate_video(model, request)
    sections = len(result.plan.sections)
    assert sections >= 2
    assert counter.copies == sections  # not sections * steps


def _meta_model(config, dtype):
    with torch.device("meta"):
        model = FramePackTransformer(config).to(dtype)  # the loader stores every weight in the compute dtype
    model.compute_dtype = dtype
    return model


# The peak is inside one block, so two blocks of each kind at the released widths measure what 60 do (one
# full-depth case below checks that).
SHALLOW = dataclasses.replace(RELEASED, num_layers=2, num_single_layers=2, num_refiner_layers=2)


@pytest.mark.parametrize("dtype,frames,h,w,text,teacache", [
    (torch.bfloat16, 9, 80, 76, 256, False),  # 640x608
    (torch.bfloat16, 9, 90, 160, 256, True),  # 1280x720
    (torch.bfloat16, 1, 60, 106, 256, False),  # 848x480, one latent per section
    (torch.float32, 33, 60, 106, 40, True),
    (torch.float32, 4, 80, 76, 16, False),
])
def test_peak_activation_formula_matches_the_measurement(dtype, frames, h, w, text, teacache):
    measured = measure_peak_activations(_meta_model(SHALLOW, dtype), frames, h, w, text_tokens=text, teacache=teacache)
    tokens = image_tokens(SHALLOW, frames, h, w)
    formula = peak_activation_bytes(SHALLOW, tokens, text, torch.finfo(dtype).bits // 8, teacache)
    assert abs(formula - measured) <= 0.01 * measured, (formula / 2 ** 30, measured / 2 ** 30)


@pytest.mark.parametrize("ranks,frames,h,w,teacache", [
    (2, 9, 90, 160, False),  # 1280x720
    (4, 9, 90, 160, True),
    (8, 9, 90, 160, False),
    (3, 9, 80, 76, False),  # 640x608, an uneven split (padding)
    (6, 9, 48, 64, True),  # 512x384: the peak moves to the projection phase
])
def test_one_ranks_share_under_a_sequence_split_matches_the_measurement(ranks, frames, h, w, teacache):
    """One rank of a sequence split (parallel/ulysses.py), its all-to-all buffers included, measured with the
    collectives' results allocated on meta."""
    model = _meta_model(SHALLOW, torch.bfloat16)
    measured = measure_peak_activations(model, frames, h, w, teacache=teacache, ranks=ranks)
    formula = peak_activation_bytes(SHALLOW, image_tokens(SHALLOW, frames, h, w), teacache=teacache, ranks=ranks)
    assert abs(formula - measured) <= 0.01 * measured, (formula / 2 ** 30, measured / 2 ** 30)
    assert model.sequence_parallel is None  # the measurement leaves the model whole
    whole = measure_peak_activations(model, frames, h, w, teacache=teacache)
    assert measured < whole


def test_released_model_per_rank_at_720p():
    """README's table: one rank's activations at 1280x720, window 9, bf16: 3.18 / 1.88 / 0.97 / 0.52 GiB for 1, 2,
    4 and 8 GPUs (the SigLIP and text tokens and the all-to-all buffers keep it above 1/N)."""
    tokens = image_tokens(RELEASED, 9, 90, 160)
    per_rank = [peak_activation_bytes(RELEASED, tokens, ranks=n) / 2 ** 30 for n in (1, 2, 4, 8)]
    assert [round(g, 2) for g in per_rank] == pytest.approx([3.18, 1.87, 0.97, 0.52], abs=0.011)


def test_peak_activations_at_full_depth_640x608():
    measured = measure_peak_activations(_meta_model(RELEASED, torch.bfloat16), 9, 80, 76)
    assert abs(peak_activation_bytes(RELEASED, image_tokens(RELEASED, 9, 80, 76)) - measured) <= 0.005 * measured
    assert 1.3 * 2 ** 30 < measured < 1.5 * 2 ** 30  # 1.385 GiB


def test_image_tokens_match_what_the_model_packs():
    """17,500 at 640x608 (the count the model itself gives for the benchmark's inputs), and the tiny model's packing
    at odd sizes (padded 2x/4x slots)."""
    assert image_tokens(RELEASED, 9, 80, 76) == 17_500
    model = FramePackTransformer(TINY)
    for frames, h, w in [(3, 8, 12), (2, 10, 6), (9, 14, 18)]:
        g = torch.Generator().manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
        context = model.prepare((1, 16, frames, h, w), torch.arange(frames), r(1, 3, TINY.image_proj_dim),
                                r(1, 16, 2, h, w), torch.tensor([0, 1]), r(1, 16, 2, h, w), torch.tensor([2, 3]),
                                r(1, 16, 16, h, w), torch.arange(4, 20))
        noisy = frames * (h // 2) * (w // 2)
        assert image_tokens(TINY, frames, h, w) == noisy + context.history_tokens.shape[1]


@pytest.mark.parametrize("frames,h,w", [(9, 80, 76), (1, 8, 8), (9, 16, 16), (33, 60, 106)])
def test_default_reserve_covers_the_measured_peak_with_teacache_on_both_branches(frames, h, w):
    measured = measure_peak_activations(_meta_model(SHALLOW, torch.bfloat16), frames, h, w, teacache=True)
    negative_branch_cache = 2 * image_tokens(SHALLOW, frames, h, w) * SHALLOW.inner_dim * 2  # its input, residual
    reserve = default_reserve_bytes(SHALLOW, frames, h, w, teacache_branches=2)
    assert measured + negative_branch_cache <= reserve <= 1.25 * (measured + negative_branch_cache) + 512 * MiB
