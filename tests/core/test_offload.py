"""Low-VRAM residency planning and the block streamer's bookkeeping (runs on CPU, where the copies are no-ops)."""

import torch

from framepack_core import TINY, FramePackTransformer
from framepack_core.offload import GiB, BlockStreamer, plan_residency


def test_everything_resident_when_it_fits():
    plan = plan_residency([1 * GiB] * 10, fixed_bytes=GiB, free_bytes=20 * GiB, reserve_bytes=6 * GiB)
    assert plan.fully_resident and plan.resident_blocks == 10 and plan.peak_stream_bytes == 0


def test_partial_residency_leaves_reserve_and_stream_room():
    plan = plan_residency([1 * GiB] * 10, fixed_bytes=GiB, free_bytes=12 * GiB, reserve_bytes=6 * GiB)
    # 12 free - 6 reserve - 1 fixed - 2 for two blocks in flight = 3 resident blocks
    assert (plan.resident_blocks, plan.streamed_blocks) == (3, 7)
    assert plan.device_weight_bytes + plan.peak_stream_bytes + 6 * GiB <= 12 * GiB


def test_forced_streaming_and_no_memory():
    assert plan_residency([GiB] * 4, 0, 100 * GiB, 0, force_stream=True).resident_blocks == 0
    assert plan_residency([GiB] * 4, 0, 1 * GiB, 6 * GiB).resident_blocks == 0


def test_released_model_low_vram_budget():
    """The 13B model's blocks on a 6 GB-free GPU with no reserve: what stays on the device is small."""
    with torch.device("meta"):
        from framepack_core import RELEASED
        model = FramePackTransformer(RELEASED)
    sizes = [sum(p.numel() * 2 for p in b.parameters()) for b in model.blocks]  # bf16
    fixed = sum(p.numel() * 2 for n, p in model.named_parameters() if not n.startswith(("transformer_blocks", "single")))
    plan = plan_residency(sizes, fixed, free_bytes=8 * GiB, reserve_bytes=6 * GiB, force_stream=True)
    assert plan.streamed_blocks == 60
    assert (plan.device_weight_bytes + plan.peak_stream_bytes) / GiB < 2.5


def test_streamed_forward_equals_plain_forward():
    torch.manual_seed(0)
    model = FramePackTransformer(TINY).eval()
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=r(1, 5, 32), encoder_attention_mask=None,
              pooled_projections=r(1, 16), guidance=torch.tensor([10000.0]), image_embeddings=r(1, 3, 24),
              latent_indices=torch.arange(2))
    x = r(1, 16, 2, 8, 8)
    with torch.no_grad():
        plain = model(x, **kw)
        streamer = BlockStreamer(model, "cpu", reserve_bytes=0, force_stream=True)
        assert streamer.plan.streamed_blocks == len(model.blocks)
        calls = []
        inner = streamer.run
        model.block_runner = lambda block, fn: (calls.append(block), inner(block, fn))[1]
        streamed = model(x, **kw)
    assert torch.equal(plain, streamed)
    assert calls == model.blocks  # every block went through the streamer, in order
    assert not streamer._pending  # no copy left in flight
    streamer.release()
    assert model.block_runner is None
    with torch.no_grad():
        assert torch.equal(model(x, **kw), plain)
