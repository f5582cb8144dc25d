"""Regional torch.compile (framepack_core.compile) with inductor on the CPU: no graph break inside a block, compiled
output equal to eager, a bounded number of compilations over sections with different token counts, and the
streamer, LoRA, TeaCache, MagCache, EasyCache and interrupts working on compiled blocks.

Compiling is slow on a small CPU, so one compiled model serves the whole module: the first generation pays the two
compilations and is counted; every later test checks that it caused no further one. Tests run in file order."""

import pytest
import torch
import torch._dynamo
from safetensors.torch import save_file
from torch._dynamo.testing import CompileCounterWithBackend

from framepack_core import TINY, FramePackTransformer, InputError, Interrupted
from framepack_core.compile import COMPILE_MODES, compile_blocks, unavailable_reason
from framepack_core.conditioning import ImageConditioning, TextConditioning
from framepack_core.generate import GenerationRequest, generate_video
from framepack_core.lora_apply import apply_loras
from framepack_core.lora_formats import load_lora_file
from framepack_core.offload import BlockStreamer
from framepack_core.planning import plan_video
from tests.core.block_graphs import assert_blocks_trace_in_one_graph

# The bound the compile module states: one graph per block kind for a whole generation.
MAX_COMPILES_PER_GENERATION = 2


def _model() -> FramePackTransformer:
    model = FramePackTransformer(TINY).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in sorted(model.state_dict(keep_vars=True).items()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def _request(**kw) -> GenerationRequest:
    g = torch.Generator().manual_seed(1)
    start = ImageConditioning(torch.randn(1, 16, 1, 8, 8, generator=g), torch.randn(1, 6, TINY.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, 5, TINY.text_embed_dim, generator=g), torch.randn(1, 16, generator=g))
    negative = TextConditioning(torch.randn(1, 7, TINY.text_embed_dim, generator=g), torch.randn(1, 16, generator=g))
    # 40 frames in windows of 4: sections of 3, 3 and 4 latents (two window sizes, so two image-token counts);
    # real CFG adds a negative prompt of another length (two text-token counts)
    base = dict(start=start, prompts=[(0.0, text)], negative=negative, cfg_scale=2.0, num_frames=40, steps=3, seed=5,
                window=4)
    return GenerationRequest(**{**base, **kw})


@pytest.fixture(scope="module")
def models():
    """(eager twin, compiled model, compile counter, first compiled generation, its eager reference)."""
    torch._dynamo.reset()
    eager, compiled = _model(), _model()
    counter = CompileCounterWithBackend("inductor")
    compile_blocks(compiled, "default", backend=counter)
    result = generate_video(compiled, _request())
    reference = generate_video(eager, _request())
    return eager, compiled, counter, result, reference


def _forward_inputs(frames: int, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(hidden_states=r(1, 16, frames, 8, 8), timestep=torch.tensor([700.0]),
                encoder_hidden_states=r(1, 6, TINY.text_embed_dim), encoder_attention_mask=None,
                pooled_projections=r(1, 16), guidance=torch.tensor([10000.0]), image_embeddings=r(1, 3, 24),
                latent_indices=torch.arange(1, 1 + frames), clean_latents=r(1, 16, 2, 8, 8),
                clean_latent_indices=torch.tensor([0, 1 + frames]))


def test_no_graph_break_inside_either_block_kind():
    assert_blocks_trace_in_one_graph(_model())


def test_three_sections_with_two_window_sizes_compile_at_most_the_stated_number(models):
    _, _, counter, result, reference = models
    assert sorted({s["latents"] for s in result.stats["sections"]}) == [3, 4]
    assert [s.num_latents for s in plan_video(40, "inverted", 4).sections] == [3, 3, 4]
    assert counter.frame_count == MAX_COMPILES_PER_GENERATION  # dual + single, nothing per section or branch
    assert torch.allclose(result.latents, reference.latents, rtol=0, atol=1e-4)


def test_compiled_forward_equals_eager_within_1e_5(models):
    eager, compiled, counter, _, _ = models
    for frames in (2, 5):  # token counts the generation never had
        x = _forward_inputs(frames)
        with torch.no_grad():
            out_e, out_c = eager(**x), compiled(**x)
        assert (out_c - out_e).abs().max().item() <= 1e-5
    assert counter.frame_count == MAX_COMPILES_PER_GENERATION


def test_streaming_runs_the_compiled_blocks(models):
    eager, compiled, counter, _, _ = models
    x = _forward_inputs(3)
    with torch.no_grad():
        plain = eager(**x)
        streamer = BlockStreamer(compiled, "cpu", reserve_bytes=0, force_stream=True)
        try:
            assert streamer.plan.streamed_blocks == len(compiled.blocks)
            streamed = compiled(**x)
        finally:
            streamer.release()
    assert (streamed - plain).abs().max().item() <= 1e-5
    assert counter.frame_count == MAX_COMPILES_PER_GENERATION


@pytest.mark.parametrize("cache", [dict(cache="teacache", teacache_threshold=5.0),
                                   dict(cache="magcache", magcache_threshold=0.5, magcache_ratios=(1.0, 1.001, 0.8)),
                                   # EasyCache computes its first 5 steps: 8 steps leave it some to skip
                                   dict(cache="easycache", easycache_threshold=1.0, steps=8)])
def test_step_caches_skip_the_same_steps_compiled(models, cache):
    eager, compiled, counter, _, _ = models
    request = {"steps": 3, "num_frames": 30, **cache}
    on, off = generate_video(compiled, _request(**request)), generate_video(eager, _request(**request))
    kind = cache["cache"]
    assert on.stats[f"{kind}_skipped"] == off.stats[f"{kind}_skipped"] > 0
    assert torch.allclose(on.latents, off.latents, rtol=0, atol=1e-4)
    assert counter.frame_count == MAX_COMPILES_PER_GENERATION


def test_interrupt_stops_a_compiled_run_and_the_next_one_is_right(models):
    eager, compiled, counter, result, reference = models
    calls = []

    def interrupt():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Interrupted):
        generate_video(compiled, _request(), interrupt=interrupt)
    assert len(calls) == 3
    again = generate_video(compiled, _request())
    assert torch.equal(again.latents, result.latents)
    assert counter.frame_count == MAX_COMPILES_PER_GENERATION


def test_lora_merged_into_compiled_blocks(models, tmp_path):
    eager, compiled, counter, _, _ = models
    g = torch.Generator().manual_seed(9)
    tensors = {}
    for module, out in (("transformer_blocks.0.attn.to_q", TINY.inner_dim), ("single_transformer_blocks.1.proj_mlp", TINY.mlp_dim)):
        tensors[f"transformer.{module}.lora_A.weight"] = torch.randn(4, TINY.inner_dim, generator=g) * 0.5
        tensors[f"transformer.{module}.lora_B.weight"] = torch.randn(out, 4, generator=g) * 0.5
    save_file(tensors, str(tmp_path / "lora.safetensors"))
    lora = load_lora_file(tmp_path / "lora.safetensors")
    x = _forward_inputs(3)
    with torch.no_grad():
        before = compiled(**x)
        for model in (eager, compiled):
            apply_loras(model, [(lora, 1.0)])
        out_e, out_c = eager(**x), compiled(**x)
    assert not torch.allclose(out_c, before, atol=1e-3)  # the compiled blocks see the merged weights
    assert (out_c - out_e).abs().max().item() <= 1e-5
    assert counter.frame_count == MAX_COMPILES_PER_GENERATION


def test_unknown_mode_is_refused():
    assert "default" in COMPILE_MODES and "reduce-overhead" not in COMPILE_MODES
    with pytest.raises(InputError, match="compile mode"):
        compile_blocks(_model(), "fastest")


def test_a_missing_compiler_is_a_clear_error_before_any_step(monkeypatch):
    assert unavailable_reason("cpu") is None  # inductor's C++ compiler is installed here
    import torch.utils._triton
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: False)
    assert "Triton" in unavailable_reason("cuda")
    model = _model()
    with pytest.raises(InputError, match="needs Triton"):
        compile_blocks(model, "default", device="cuda")
    assert model.compile_mode is None
    import torch._inductor.cpp_builder
    monkeypatch.setattr(torch._inductor.cpp_builder, "get_cpp_compiler", lambda: (_ for _ in ()).throw(RuntimeError("none")))
    assert "C++ compiler" in unavailable_reason("cpu")
