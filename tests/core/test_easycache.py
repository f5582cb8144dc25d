"""EasyCache: the authors' rule against a brute-force evaluation of the paper's equations (on scripted values and on
recorded traces of the tiny model), the exact reuse of the last transformation, threshold 0 as the uncached video
bit for bit, one cache per section and guidance branch, and the same checks with fp8 storage, a LoRA, block
streaming, both modes and real CFG (torch.compile: tests/core/test_compile.py)."""

import pytest
import torch
from safetensors.torch import save_file

from framepack_core import TINY, InputError
from framepack_core.conditioning import ImageConditioning, TextConditioning
from framepack_core.easycache import EasyCache
from framepack_core.generate import GenerationRequest, generate_video
from framepack_core.layers import Linear
from framepack_core.limits import CACHE_CHOICES, DEFAULT_EASYCACHE_THRESHOLD
from framepack_core.loading import load_framepack_model, save_framepack_model
from framepack_core.lora_apply import apply_loras
from framepack_core.lora_formats import load_lora_file
from framepack_core.offload import BlockStreamer
from framepack_dev.random_weights import random_model

# The authors' HunyuanVideo settings (EasyCache4HunyuanVideo/easycache_sample_video.py: ret_steps = 5,
# thresh = 0.025), written out here rather than imported.
AUTHORS_WARMUP = 5
AUTHORS_THRESHOLD = 0.025
STEPS = 9  # warm-up 5, the last step, and three steps that may be skipped
# On the tiny model one step's estimated change is about 0.035: 0.3 lets a few steps in a row be skipped
SKIPPING = 0.3


def mean_abs(t: torch.Tensor) -> float:
    return t.double().abs().mean().item()


def brute_force_pattern(inputs, output_of, threshold, warmup=AUTHORS_WARMUP) -> list[bool]:
    """Which steps the paper's rule computes (True) or skips, each step evaluated from the equations on its own.

    Step t is always computed in the warm-up (t < warmup) and at the end (t = N - 1). Otherwise let s be the last
    computed step before t and r the computed step before s; with |.| the mean absolute value,
        k_s = |v_s - v_r| / |x_s - x_r|                                (transformation rate)
        E_t = sum over u = s+1 .. t of  k_s * |x_u - x_u-1| / |v_s|    (accumulated estimated output change)
    and step t reuses v = x_t + (v_s - x_s) while E_t < threshold. Before two steps are computed there is no k and
    the step is computed (only a warm-up shorter than 2 steps gets there). `output_of(s)` is the model's output at a
    computed step s (never asked for a skipped one)."""
    n = len(inputs)
    computed: list[int] = []
    for t in range(n):
        if t < warmup or t == n - 1 or len(computed) < 2:
            computed.append(t)
            continue
        s, r = computed[-1], computed[-2]
        k = mean_abs(output_of(s) - output_of(r)) / mean_abs(inputs[s] - inputs[r])
        estimate = sum(k * mean_abs(inputs[u] - inputs[u - 1]) / mean_abs(output_of(s)) for u in range(s + 1, t + 1))
        if not estimate < threshold:
            computed.append(t)
    return [t in computed for t in range(n)]


def replay(cache: EasyCache, inputs, outputs) -> list[bool]:
    """Feeds a recorded trace to the cache as the transformer would; the decisions."""
    decisions = []
    for x, v in zip(inputs, outputs):
        computed = cache.should_compute(x)
        if computed:
            cache.store(x, v)
        decisions.append(computed)
    return decisions


# -- the rule on scripted values --------------------------------------------------------------------------------

def linear_trace(n: int, slope: float, offset: float):
    """x_t = 0.25 t, v_t = slope * x_t + offset (everywhere): every number below is exact in float32."""
    xs = [torch.full((1, 16, 1, 2, 2), 0.25 * t) for t in range(n)]
    return xs, [slope * x + offset for x in xs]


def test_warm_up_and_last_step_are_computed_whatever_the_threshold():
    xs, vs = linear_trace(10, 2.0, 2.0)
    cache = EasyCache(10, threshold=1e9)
    assert replay(cache, xs, vs) == [True] * AUTHORS_WARMUP + [False] * 4 + [True]
    assert (cache.computed_steps, cache.skipped_steps) == (6, 4)


def test_reaching_the_threshold_exactly_computes():
    # k = 2 (v moves 0.5 per step, x 0.25) and |v_4| = 4, so each step adds eps = 2 * 0.25 / 4 = 0.125:
    # step 5 sums 0.125 (< 0.25, skipped), step 6 sums 0.25 (not below: computed)
    xs, vs = linear_trace(10, 2.0, 2.0)
    cache = EasyCache(10, threshold=0.25)
    decisions = replay(cache, xs, vs)
    assert decisions[5:7] == [False, True]
    assert decisions == brute_force_pattern(xs, vs.__getitem__, 0.25)


def test_rate_and_transformation_are_measured_between_computed_steps():
    xs, vs = linear_trace(10, 2.0, 2.0)
    cache = EasyCache(10, threshold=0.25)
    replay(cache, xs[:6], vs[:6])  # steps 0-4 computed, 5 skipped
    assert cache.rate == 2.0 and cache.output_magnitude == 4.0  # k from steps 3 -> 4, |v_4|
    assert torch.equal(cache.transformation, vs[4] - xs[4])
    assert cache.accumulated == 0.125


@pytest.mark.parametrize("threshold", [0.0, AUTHORS_THRESHOLD, 0.1, 0.2, 0.3, 0.45, 1.0])
def test_decisions_equal_the_brute_force_rule_on_scripted_values(threshold):
    # input steps of uneven size and an output that does not follow them linearly: k changes at every compute
    g = torch.Generator().manual_seed(0)
    xs, x = [], torch.randn(1, 16, 2, 4, 4, generator=g)
    for t in range(16):
        x = x + (0.05 + 0.05 * (t % 3)) * torch.randn(x.shape, generator=g)
        xs.append(x)
    vs = [torch.tanh(1.5 * x) + 0.1 * t for t, x in enumerate(xs)]
    decisions = replay(EasyCache(16, threshold), xs, vs)
    assert decisions == brute_force_pattern(xs, vs.__getitem__, threshold)
    if threshold == 0.0:
        assert all(decisions)
    if threshold >= 0.3:
        assert decisions.count(False) >= 3


@pytest.mark.parametrize("warmup", [0, 1, 2])
def test_short_warm_ups_compute_until_a_rate_is_measured(warmup):
    # k needs two computed steps: with a warm-up under 2 steps the steps before that are computed anyway, then
    # everything up to the last step is skipped (the threshold is never reached)
    xs, vs = linear_trace(10, 2.0, 2.0)
    decisions = replay(EasyCache(10, threshold=1e9, warmup_steps=warmup), xs, vs)
    assert decisions == [True, True] + [False] * 7 + [True]
    assert decisions == brute_force_pattern(xs, vs.__getitem__, 1e9, warmup)


def test_unmeasurable_changes_compute_the_step():
    # an input that did not move since the last computed step gives no rate; a zero output no relative change
    still = [torch.ones(1, 16, 1, 2, 2)] * 8
    cache = EasyCache(8, threshold=1e9)
    assert all(replay(cache, still, [2 * x for x in still]))
    assert cache.rate is None
    xs, _ = linear_trace(8, 1.0, 0.0)
    cache = EasyCache(8, threshold=1e9)
    assert all(replay(cache, xs, [torch.zeros_like(x) for x in xs]))
    assert cache.output_magnitude == 0.0


def test_threshold_default_choice_and_limits():
    assert DEFAULT_EASYCACHE_THRESHOLD == AUTHORS_THRESHOLD
    assert EasyCache(25).threshold == AUTHORS_THRESHOLD and EasyCache(25).warmup_steps == AUTHORS_WARMUP
    assert "easycache" in CACHE_CHOICES
    for bad in (-0.01, 1.01):
        with pytest.raises(InputError, match="easycache threshold"):
            _request(cache="easycache", easycache_threshold=bad).validate()
    for edge in (0.0, 1.0):
        _request(cache="easycache", easycache_threshold=edge).validate()


# -- on the tiny model ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return random_model(TINY, std=0.05)


def _request(**kw) -> GenerationRequest:
    g = torch.Generator().manual_seed(1)
    start = ImageConditioning(torch.randn(1, 16, 1, 8, 8, generator=g), torch.randn(1, 6, TINY.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, 5, TINY.text_embed_dim, generator=g), torch.randn(1, 16, generator=g))
    negative = TextConditioning(torch.randn(1, 7, TINY.text_embed_dim, generator=g), torch.randn(1, 16, generator=g))
    base = dict(start=start, prompts=[(0.0, text)], negative=negative, num_frames=30, steps=STEPS, seed=3, window=4,
                cache="easycache", easycache_threshold=SKIPPING)
    return GenerationRequest(**{**base, **kw})


class Recorder:
    """Every model call of a generation: per step cache (one per section and branch), the input latent, the output
    and whether the model ran (the cache's computed count went up)."""

    def __init__(self, model):
        self.runs: dict[int, tuple[EasyCache, list]] = {}
        self.handle = model.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs, output):
        cache = kwargs["cache"]  # None without a cache: every call lands in one list
        _, calls = self.runs.setdefault(id(cache), (cache, []))
        computed_before = sum(c for _, _, c in calls)
        ran = cache is None or cache.computed_steps > computed_before
        calls.append((kwargs["hidden_states"].clone(), output.clone(), ran))

    def close(self):
        self.handle.remove()


def generate_recorded(model, request) -> tuple:
    recorder = Recorder(model)
    try:
        result = generate_video(model, request)
    finally:
        recorder.close()
    return result, list(recorder.runs.values())


def assert_follows_the_rule(runs, steps: int, threshold: float) -> int:
    """Each cache's computed steps are the brute-force rule's on its own recorded inputs and outputs, and each
    skipped step returned its input plus the last computed transformation, bit for bit. Returns the skips."""
    skipped = 0
    for cache, calls in runs:
        assert len(calls) == steps  # a fresh cache per section and branch
        xs, outs, computed = zip(*calls)

        def output_of(s):
            assert computed[s], "the rule asked for the output of a skipped step"
            return outs[s]

        assert list(computed) == brute_force_pattern(xs, output_of, threshold)
        last = None
        for x, out, ran in calls:
            if ran:
                last = (x, out)
            else:
                assert torch.equal(out, x + (last[1] - last[0]))
                assert not torch.equal(out, last[1])  # the input moved: not a stale output
        skipped += computed.count(False)
    return skipped


def test_threshold_zero_is_the_uncached_video_bit_for_bit(model):
    plain = generate_video(model, _request(cache="none"))
    zero = generate_video(model, _request(easycache_threshold=0.0))
    assert torch.equal(zero.latents, plain.latents)
    sections = len(zero.stats["sections"])
    assert zero.stats["easycache_computed"] == STEPS * sections and zero.stats["easycache_skipped"] == 0


def test_recorded_uncached_trace_gives_the_brute_force_pattern(model):
    """The decisions on the model's real inputs and outputs (an uncached run, recorded), at several thresholds."""
    _, [(_, calls)] = generate_recorded(model, _request(cache="none", steps=14))
    xs, outs, _ = zip(*calls[:14])  # the first section's steps
    patterns = set()
    for threshold in (0.0, AUTHORS_THRESHOLD, 0.05, 0.08, 0.12, 0.2, 0.5, 1e9):
        decisions = replay(EasyCache(14, threshold), xs, outs)
        assert decisions == brute_force_pattern(xs, outs.__getitem__, threshold), threshold
        patterns.add(tuple(decisions))
    assert len(patterns) >= 4  # the thresholds really lead to different decisions


def test_a_skipped_step_returns_its_input_plus_the_cached_transformation(model):
    result, runs = generate_recorded(model, _request())
    skipped = assert_follows_the_rule(runs, STEPS, SKIPPING)
    assert skipped > 0 and len(runs) == len(result.stats["sections"])
    assert result.stats["easycache_skipped"] == skipped == sum(s["skipped"] for s in result.stats["sections"])
    assert result.stats["teacache_skipped"] == result.stats["magcache_skipped"] == 0
    plain = generate_video(model, _request(cache="none"))
    assert not torch.equal(result.latents, plain.latents) and torch.isfinite(result.latents).all()


@pytest.mark.parametrize("mode", ["inverted", "forward"])
def test_both_modes_with_real_cfg_keep_one_cache_per_branch(model, mode):
    result, runs = generate_recorded(model, _request(mode=mode, cfg_scale=3.0))
    sections = result.stats["sections"]
    assert len(runs) == 2 * len(sections)  # positive and negative: two caches in every section
    assert assert_follows_the_rule(runs, STEPS, SKIPPING) > 0
    assert all(s["computed"] + s["skipped"] == 2 * STEPS for s in sections)


def test_fp8_storage(tmp_path):
    [path] = save_framepack_model(random_model(TINY, std=0.05), tmp_path / "tiny.safetensors")
    fp8 = load_framepack_model(path, compute_dtype="bf16", storage="fp8_e4m3fn")
    assert any(p.dtype == torch.float8_e4m3fn for p in fp8.parameters())
    result, runs = generate_recorded(fp8, _request())
    assert assert_follows_the_rule(runs, STEPS, SKIPPING) > 0
    assert torch.isfinite(result.latents).all()


def test_lora(model, tmp_path):
    tensors, g = {}, torch.Generator().manual_seed(7)
    for name, layer in model.named_modules():
        if isinstance(layer, Linear) and name.startswith(("transformer_blocks", "single_transformer_blocks")):
            stem = "lora_unet_" + name.replace(".", "_")
            tensors[f"{stem}.lora_down.weight"] = 0.1 * torch.randn(4, layer.in_features, generator=g)
            tensors[f"{stem}.lora_up.weight"] = 0.1 * torch.randn(layer.out_features, 4, generator=g)
    save_file(tensors, str(tmp_path / "blocks.safetensors"))
    with_lora = random_model(TINY, std=0.05)
    apply_loras(with_lora, [(load_lora_file(tmp_path / "blocks.safetensors"), 1.0)])
    result, runs = generate_recorded(with_lora, _request())
    assert assert_follows_the_rule(runs, STEPS, SKIPPING) > 0
    assert not torch.equal(result.latents, generate_video(model, _request()).latents)  # the LoRA took effect


def test_block_streaming_equals_resident(model):
    resident = generate_video(model, _request())
    streamer = BlockStreamer(model, "cpu", reserve_bytes=0, force_stream=True)
    try:
        assert streamer.plan.streamed_blocks == len(model.blocks)
        streamed, runs = generate_recorded(model, _request())
    finally:
        streamer.release()
    assert assert_follows_the_rule(runs, STEPS, SKIPPING) == resident.stats["easycache_skipped"] > 0
    assert torch.equal(streamed.latents, resident.latents)
