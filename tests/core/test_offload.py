"""Low-VRAM residency planning and the block streamer, on the CPU: the copies are real copies into the slot buffers,
and a recording stand-in for the CUDA streams checks the order of copies, waits and computes."""

import dataclasses

import pytest
import torch

from framepack_core import RELEASED, TINY, FramePackTransformer
from framepack_core import offload
from framepack_core.layers import Linear
from framepack_core.lora_apply import LoraDelta
from framepack_core.offload import (GiB, BlockStreamer, InlineCopies, module_bytes, plan_residency, residency)

DEEP = dataclasses.replace(TINY, num_layers=3, num_single_layers=4)


def test_everything_resident_when_it_fits():
    plan = plan_residency([1 * GiB] * 10, fixed_bytes=GiB, free_bytes=20 * GiB, reserve_bytes=6 * GiB)
    assert plan.fully_resident and plan.resident_blocks == 10 and plan.peak_stream_bytes == 0


def test_partial_residency_leaves_reserve_and_stream_room():
    plan = plan_residency([1 * GiB] * 10, fixed_bytes=GiB, free_bytes=12 * GiB, reserve_bytes=6 * GiB)
    # 12 free - 6 reserve - 1 fixed - 2 for the two stream slots = 3 resident blocks
    assert (plan.resident_blocks, plan.streamed_blocks) == (3, 7)
    assert plan.device_weight_bytes + plan.peak_stream_bytes + 6 * GiB <= 12 * GiB


def test_stream_room_is_sized_by_the_blocks_that_stream():
    """Dual-stream blocks come first and are larger; once all of them are resident, the slots only need to hold
    single-stream blocks."""
    dual, single = 3 * GiB, 1 * GiB
    blocks = [dual] * 4 + [single] * 8
    plan = plan_residency(blocks, fixed_bytes=0, free_bytes=4 * dual + 4 * single + 2 * single, reserve_bytes=0)
    assert (plan.resident_blocks, plan.peak_stream_bytes) == (8, 2 * single)
    assert plan.device_bytes == 4 * dual + 4 * single + 2 * single


def test_forced_streaming_and_no_memory():
    assert plan_residency([GiB] * 4, 0, 100 * GiB, 0, force_stream=True).resident_blocks == 0
    assert plan_residency([GiB] * 4, 0, 1 * GiB, 6 * GiB).resident_blocks == 0


def test_released_model_low_vram_budget():
    """The 13B model fully streamed: the fixed modules plus two slots of the largest (dual-stream) block is all
    the device holds (1.98 GiB in bf16), and that is the smallest any plan can be."""
    with torch.device("meta"):
        model = FramePackTransformer(RELEASED).to(torch.bfloat16)
    blocks = [module_bytes(b) for b in model.blocks]
    fixed = sum(module_bytes(m) for n, m in model.named_children() if n not in ("transformer_blocks",
                                                                                  "single_transformer_blocks"))
    plan = plan_residency(blocks, fixed, free_bytes=8 * GiB, reserve_bytes=6 * GiB, force_stream=True)
    assert plan.streamed_blocks == 60
    assert plan.device_bytes == fixed + 2 * max(blocks) == min(residency(blocks, fixed, r).device_bytes
                                                                  for r in range(61))
    assert plan.device_bytes / GiB < 2.1


def _model(config=TINY, seed=0):
    torch.manual_seed(seed)
    return FramePackTransformer(config).eval()


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=r(1, 5, 32), encoder_attention_mask=None,
              pooled_projections=r(1, 16), guidance=torch.tensor([10000.0]), image_embeddings=r(1, 3, 24),
              latent_indices=torch.arange(2))
    return r(1, 16, 2, 8, 8), kw


def _params(model):
    return {n: (p.data_ptr(), p.device) for n, p in [*model.named_parameters(), *model.named_buffers()]}


def test_streamed_forward_equals_plain_forward():
    model = _model()
    x, kw = _inputs()
    with torch.no_grad():
        plain = model(x, **kw)
        streamer = BlockStreamer(model, "cpu", reserve_bytes=0, force_stream=True)
        assert streamer.plan.streamed_blocks == len(model.blocks)
        calls = []
        inner = streamer.run
        model.block_runner = lambda block, fn: (calls.append(block), inner(block, fn))[1]
        streamed = model(x, **kw)
        again = model(x, **kw)
    assert torch.equal(plain, streamed) and torch.equal(plain, again)
    assert calls == model.blocks * 2  # every block went through the streamer, in order
    streamer.release()
    assert model.block_runner is None
    with torch.no_grad():
        assert torch.equal(model(x, **kw), plain)


class RecordingCopies(InlineCopies):
    """Stands in for the CUDA streams: copies for real, and logs copies, waits and completion events in order."""

    def __init__(self, streamer_blocks):
        self.log, self.events = [], 0
        self.index_of = streamer_blocks

    def _event(self):
        self.events += 1
        return self.events

    def copy(self, pairs, after):
        super().copy(pairs, after)
        src = pairs[0][1].data_ptr()
        done = self._event()
        self.log.append(("copy", self.index_of(src), after, done))
        return done

    def compute_waits(self, event):
        self.log.append(("wait", event))

    def compute_done(self):
        done = self._event()
        self.log.append(("done", done))
        return done


def _recorded_streamer(model, **kw):
    sources = {b.data_ptr(): i for i, block in enumerate(model.blocks) for b in [next(block.parameters())]}
    copies = RecordingCopies(lambda ptr: sources.get(ptr))
    streamer = BlockStreamer(model, "cpu", reserve_bytes=0, copies=copies, **kw)
    inner = streamer.run

    def run(block, fn):
        index = model.blocks.index(block)
        slot_range = [(s.buffer.data_ptr(), s.buffer.data_ptr() + s.buffer.numel()) for s in streamer._slots]

        def compute():
            ptr = next(block.parameters()).data_ptr()
            in_slot = any(lo <= ptr < hi for lo, hi in slot_range)
            copies.log.append(("compute", index, in_slot))
            return fn()
        return inner(block, compute)
    model.block_runner = run
    return streamer, copies


def test_copy_compute_order_two_blocks_in_flight_and_next_step_prefetch():
    model = _model(DEEP)
    x, kw = _inputs()
    with torch.no_grad():
        plain = model(x, **kw)
        streamer, copies = _recorded_streamer(model, force_stream=True)
        first = model(x, **kw)
        log_first = list(copies.log)
        copies.log.clear()
        second = model(x, **kw)
    assert torch.equal(first, plain) and torch.equal(second, plain)
    n = len(model.blocks)
    ready, computed = {}, []  # copy-done event per block; (block, compute-done event) in run order
    for log in (log_first, copies.log):
        for i, entry in enumerate(log):
            if entry[0] == "copy":
                _, block, after, done = entry
                ready[block] = done
                # the slot it fills was last read by the block computed two runs ago: the copy waits for that
                # compute to finish, so never more than two streamed blocks are on the device
                assert after == (computed[-2][1] if len(computed) >= 2 else None)
            elif entry[0] == "compute":
                _, block, in_slot = entry
                assert in_slot, "a streamed block computes from a slot buffer"
                assert log[i - 1] == ("wait", ready[block]), "compute waits for its own copy"
                assert log[i + 1][0] == "done"
                computed.append((block, log[i + 1][1]))
    # launch order: block k's kernels are queued, THEN block k+1's copy is issued (it overlaps them); the last block
    # fetches block 0 for the next step, which then starts without a copy of its own
    order = [(e[0], e[1]) for e in copies.log if e[0] in ("copy", "compute")]
    assert order == [x for k in range(n) for x in (("compute", k), ("copy", (k + 1) % n))]
    first_order = [(e[0], e[1]) for e in log_first if e[0] in ("copy", "compute")]
    assert first_order == [("copy", 0)] + order
    bytes_of = [module_bytes(b) for b in model.blocks]
    assert streamer.copied_bytes == 2 * sum(bytes_of) + bytes_of[0]


def test_two_streamed_blocks_stay_in_their_slots():
    """With as many streamed blocks as slots, nothing is copied after the first step."""
    model = _model(dataclasses.replace(TINY, num_layers=1, num_single_layers=1))
    x, kw = _inputs()
    with torch.no_grad():
        plain = model(x, **kw)
        streamer, copies = _recorded_streamer(model, force_stream=True)
        assert streamer.plan.streamed_blocks == 2
        model(x, **kw)
        copied = streamer.copied_bytes
        assert copied == sum(module_bytes(b) for b in model.blocks)
        for _ in range(3):
            assert torch.equal(model(x, **kw), plain)
    assert streamer.copied_bytes == copied


def test_lora_adapters_are_counted_and_streamed():
    """Runtime LoRA factors are non-persistent buffers: state_dict() skips them, the plan and the slots must not."""
    layer = Linear(32, 32)
    layer.lora.append(LoraDelta(torch.randn(4, 32), torch.randn(32, 4), 1.0))
    state_bytes = sum(t.numel() * t.element_size() for t in layer.state_dict().values())
    assert state_bytes == 32 * 32 * 4 + 32 * 4
    weight, bias, down, up = 32 * 32 * 4, 32 * 4, 4 * 32 * 4, 32 * 4 * 4
    assert module_bytes(layer) == sum(offload._aligned(n) for n in (weight, bias, down, up))

    model = _model()
    for block in model.blocks:
        for linear in [m for m in block.modules() if isinstance(m, Linear)][:3]:
            g = torch.Generator().manual_seed(len(linear.lora))
            linear.lora.append(LoraDelta(torch.randn(2, linear.in_features, generator=g) * 0.1,
                                         torch.randn(linear.out_features, 2, generator=g) * 0.1, 0.7))
    x, kw = _inputs()
    with torch.no_grad():
        plain = model(x, **kw)
        streamer = BlockStreamer(model, "cpu", reserve_bytes=0, force_stream=True)
        assert streamer.plan.peak_stream_bytes == 2 * max(module_bytes(b) for b in model.blocks)
        assert max(module_bytes(b) for b in model.blocks) > max(
            sum(t.numel() * t.element_size() for t in b.state_dict().values()) for b in model.blocks)
        assert torch.equal(model(x, **kw), plain)


class _Exhausted(torch.cuda.OutOfMemoryError):
    pass


@pytest.mark.parametrize("fail_at", ["fixed", "resident", "slots"])
def test_out_of_memory_while_placing_is_undone(monkeypatch, fail_at):
    model = _model(DEEP)
    x, kw = _inputs()
    with torch.no_grad():
        plain = model(x, **kw)
    before = _params(model)
    placed = []
    fixed_tensors = sum(len(offload.module_tensors(m)) for n, m in model.named_children()
                        if n not in ("transformer_blocks", "single_transformer_blocks"))

    def to_device(self, tensor):
        placed.append(tensor)
        # a new tensor, as a device copy would be: a half-done placement is visible in the parameters' storage
        limit = {"fixed": fixed_tensors // 2, "resident": fixed_tensors + 10}.get(fail_at)
        if limit is not None and len(placed) > limit:
            raise _Exhausted("CUDA out of memory (injected)")
        return tensor.clone()

    def allocate(self, nbytes):
        if fail_at == "slots":
            raise _Exhausted("CUDA out of memory (injected)")
        return torch.empty(nbytes, dtype=torch.uint8)

    monkeypatch.setattr(BlockStreamer, "_to_device", to_device)
    monkeypatch.setattr(BlockStreamer, "_allocate", allocate)
    bytes_of = [module_bytes(b) for b in model.blocks]
    fixed = sum(module_bytes(m) for n, m in model.named_children() if n not in ("transformer_blocks",
                                                                                 "single_transformer_blocks"))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        # room for the first three (dual-stream) blocks and two slots: the rest streams
        BlockStreamer(model, "cpu", reserve_bytes=0, free_bytes=fixed + sum(bytes_of[:3]) + 2 * max(bytes_of[3:]))
    assert len(placed) > 5
    assert _params(model) == before and model.block_runner is None
    monkeypatch.undo()
    with torch.no_grad():
        streamer = BlockStreamer(model, "cpu", reserve_bytes=0, force_stream=True)
        assert torch.equal(model(x, **kw), plain)
    streamer.release()
    assert _params(model) == before


def test_out_of_memory_inside_a_block_leaves_the_streamer_usable():
    model = _model(DEEP)
    x, kw = _inputs()
    with torch.no_grad():
        plain = model(x, **kw)
        streamer = BlockStreamer(model, "cpu", reserve_bytes=0, force_stream=True)
        inner = streamer.run
        target = model.blocks[4]

        def failing_run(block, fn):
            if block is target:
                return inner(block, lambda: (_ for _ in ()).throw(_Exhausted("injected")))
            return inner(block, fn)
        model.block_runner = failing_run
        with pytest.raises(torch.cuda.OutOfMemoryError):
            model(x, **kw)
        assert all(p.data_ptr() == q for p, q in zip(target.parameters(), [b.data_ptr() for b in
                                                                          streamer.blocks[4].sources]))
        model.block_runner = inner
        assert torch.equal(model(x, **kw), plain)


def test_shrink_and_grow_in_place():
    model = _model(DEEP)
    x, kw = _inputs()
    with torch.no_grad():
        plain = model(x, **kw)
        streamer = BlockStreamer(model, "cpu", reserve_bytes=0, free_bytes=1 << 40)
        assert streamer.plan.fully_resident
        full = streamer.device_bytes
        request = sum(module_bytes(b) for b in model.blocks) // 3
        freed = streamer.shrink(request)
        assert freed >= request and streamer.device_bytes == full - freed
        assert 0 < streamer.plan.resident_blocks < len(model.blocks)
        assert torch.equal(model(x, **kw), plain)
        used = streamer.grow(1 << 40)
        assert streamer.plan.fully_resident and used == freed and streamer.device_bytes == full
        assert torch.equal(model(x, **kw), plain)
        assert streamer.shrink(1 << 40) < (1 << 40) and streamer.plan.resident_blocks == 0
        assert torch.equal(model(x, **kw), plain)


def test_pinned_blocks_are_packed_and_copied_in_one_piece(monkeypatch):
    """The packing that precedes page-locking, on the CPU (registration itself needs CUDA and is stubbed)."""
    registered = []
    monkeypatch.setattr(offload, "_host_register", lambda host: (registered.append(host), True)[1])
    monkeypatch.setattr(offload, "_host_unregister", lambda host: registered.remove(host))
    model = _model(DEEP)
    x, kw = _inputs()
    with torch.no_grad():
        plain = model(x, **kw)
        streamer = BlockStreamer(model, "cpu", reserve_bytes=0, force_stream=True)
        streamer.pin_memory = True
        streamer._set_resident(0)
        assert len(registered) == len(model.blocks)
        for block, host in zip(model.blocks, registered):
            assert host.data_ptr() % offload.PAGE == 0 and host.numel() % offload.PAGE == 0
            lo, hi = host.data_ptr(), host.data_ptr() + host.numel()
            assert all(lo <= p.data_ptr() < hi for p in block.parameters())
        pairs = []
        original_copy = streamer.copies.copy
        streamer.copies.copy = lambda p, after: (pairs.append(len(p)), original_copy(p, after))[1]
        assert torch.equal(model(x, **kw), plain)
        assert pairs and set(pairs) == {1}
    streamer.release()
    assert registered == []


def test_streamed_generation_with_teacache_equals_resident():
    """TeaCache reads the first block's modulation before deciding to skip: through the streamer, and the whole
    generation matches the unstreamed one."""
    from framepack_core.conditioning import ImageConditioning, TextConditioning
    from framepack_core.generate import GenerationRequest, generate_video

    model = _model(DEEP)
    g = torch.Generator().manual_seed(0)
    start = ImageConditioning(torch.randn(1, 16, 1, 8, 8, generator=g), torch.randn(1, 3, 24, generator=g))
    text = TextConditioning(torch.randn(1, 5, 32, generator=g), torch.randn(1, 16, generator=g))
    request = GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=37, steps=6, seed=3,
                                teacache_threshold=0.15, window=3)
    plain = generate_video(model, request)
    streamer, copies = _recorded_streamer(model, force_stream=True)
    streamed = generate_video(model, request)
    streamer.release()
    assert plain.stats["teacache_skipped"] > 0
    assert streamed.stats["teacache_skipped"] == plain.stats["teacache_skipped"]
    assert torch.equal(plain.latents, streamed.latents)
