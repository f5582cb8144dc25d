"""The section loop on a tiny random model: determinism, exact length, end image strength, F1 with an end image,
interrupts, prompts per section, keyframes, bounded memory."""

import pytest
import torch

from framepack_core import TINY, InputError, Interrupted
from framepack_core.conditioning import ImageConditioning, Keyframe, TextConditioning
from framepack_core.generate import CONTEXT_LATENTS, GenerationRequest, generate_video
from framepack_core.loading import load_framepack_model, save_framepack_model
from framepack_dev.random_weights import tiny_transformer


@pytest.fixture(scope="module")
def model():
    return tiny_transformer()


def _image(seed):
    g = torch.Generator().manual_seed(seed)
    return ImageConditioning(torch.randn(1, 16, 1, 8, 8, generator=g), torch.randn(1, 6, TINY.image_proj_dim, generator=g))


def _text(seed, n=5):
    g = torch.Generator().manual_seed(100 + seed)
    return TextConditioning(torch.randn(1, n, TINY.text_embed_dim, generator=g), torch.randn(1, 16, generator=g))


START, END, OTHER = _image(1), _image(2), _image(3)


def _request(**kw):
    base = dict(start=START, prompts=[(0.0, _text(0))], num_frames=40, steps=4, seed=7)
    return GenerationRequest(**{**base, **kw})


def test_same_seed_same_latents_twice_and_after_save_load(model, tmp_path):
    """Bit for bit: the same model twice, and two loads of the same file. Between the model in memory and its
    reloaded copy only rounding may differ: the loaded weights are memory-mapped at the file's offsets, not
    64-byte aligned, and AVX-512 matmul kernels take another summation order for unaligned operands."""
    a = generate_video(model, _request()).latents
    b = generate_video(model, _request()).latents
    assert torch.equal(a, b)
    [path] = save_framepack_model(model, tmp_path / "m.safetensors")
    first = generate_video(load_framepack_model(path, compute_dtype="fp32"), _request()).latents
    second = generate_video(load_framepack_model(path, compute_dtype="fp32"), _request()).latents
    assert torch.equal(first, second)
    assert (first - a).abs().max().item() < 1e-5
    assert (generate_video(model, _request(seed=8)).latents - a).abs().max().item() > 1e-2


def test_random_seed_is_reported_and_reproduces(model):
    result = generate_video(model, _request(seed=-1))
    assert 0 <= result.seed < 2 ** 31
    assert torch.equal(generate_video(model, _request(seed=result.seed)).latents, result.latents)


@pytest.mark.parametrize("mode", ["inverted", "forward"])
@pytest.mark.parametrize("num_frames", [30, 97])
def test_latent_count_and_start_frame(model, mode, num_frames):
    result = generate_video(model, _request(num_frames=num_frames, mode=mode))
    assert result.latents.shape[2] == result.plan.total_latents
    assert result.plan.output_frames == num_frames
    assert torch.equal(result.latents[:, :, :1], START.latent)  # frame 0 is the start image


@pytest.mark.parametrize("mode", ["inverted", "forward"])
def test_strength_zero_is_plain_i2v_bit_for_bit(model, mode):
    plain = generate_video(model, _request(mode=mode)).latents
    zero = generate_video(model, _request(mode=mode, end=END, end_strength=0.0)).latents
    assert torch.equal(plain, zero)


@pytest.mark.parametrize("mode", ["inverted", "forward"])
def test_end_image_influence_grows_with_strength(model, mode):
    """Measure: mean |last latent - end latent|. It is the quantity `strength` is defined on (how closely the
    last frame follows the end image), so it must fall as strength rises and reach 0 at strength 1, where the
    video ends exactly on the end image."""
    distances = []
    for s in (0.0, 0.25, 0.5, 0.75, 1.0):
        last = generate_video(model, _request(mode=mode, end=END, end_strength=s)).latents[:, :, -1:]
        distances.append((last - END.latent).abs().mean().item())
    assert all(a > b for a, b in zip(distances, distances[1:])), distances
    assert distances[-1] < 1e-6 < distances[0]


def test_f1_with_end_image_differs_from_without(model):
    without = generate_video(model, _request(mode="forward")).latents
    with_end = generate_video(model, _request(mode="forward", end=END, end_strength=0.5)).latents
    assert not torch.equal(without, with_end)
    # the influence is not only the pinned last latent: the last section's other latents change too
    assert not torch.equal(without[:, :, -3:-1], with_end[:, :, -3:-1])


def test_interrupt_in_callback_stops_within_one_step(model):
    calls = []
    stop = {"now": False}

    def on_step(section, sections, step, steps, x0):
        calls.append((section, step))
        if len(calls) == 3:
            stop["now"] = True

    with pytest.raises(Interrupted):
        generate_video(model, _request(num_frames=97), on_step=on_step, interrupt=lambda: stop["now"])
    assert len(calls) == 3  # no model evaluation after the one that raised the flag


def test_step_callback_covers_every_step(model):
    seen = []
    generate_video(model, _request(num_frames=97), on_step=lambda *a: seen.append(a[:4]))
    assert [(s, st) for s, n, st, k in seen] == [(s, st) for s in range(3) for st in range(4)]


def test_prompt_schedule(model):
    a, b = _text(0), _text(1, n=7)
    single = generate_video(model, _request(prompts=[(0.0, a)], num_frames=97)).latents
    # a second prompt that never becomes active changes nothing
    unused = generate_video(model, _request(prompts=[(0.0, a), (100.0, b)], num_frames=97)).latents
    assert torch.equal(single, unused)
    switched = generate_video(model, _request(prompts=[(0.0, a), (1.5, b)], num_frames=97)).latents
    assert not torch.equal(single, switched)


@pytest.mark.parametrize("what", ["end image", "keyframe"])
def test_an_image_of_another_size_is_refused_in_the_core_own_terms(what):
    small = ImageConditioning(torch.zeros(1, 16, 1, 4, 8), torch.zeros(1, 6, TINY.image_proj_dim))
    request = _request(end=small) if what == "end image" else _request(keyframes=[Keyframe(1.0, small, 1.0)])
    with pytest.raises(InputError, match=rf"the {what} latent \[1, 16, 1, 4, 8\] does not match the start image latent "
                                         rf"\[1, 16, 1, 8, 8\]; encode the {what} at the start image's pixel size"):
        request.validate()


def test_keyframe_is_pinned(model):
    result = generate_video(model, _request(num_frames=97, keyframes=[Keyframe(1.0, OTHER, 1.0)]))
    from framepack_core.planning import keyframe_latent_index
    i = keyframe_latent_index(result.plan, 1.0)
    assert torch.allclose(result.latents[:, :, i:i + 1], OTHER.latent, atol=1e-6)


def test_memory_is_bounded_and_sections_are_emitted(model):
    emitted = []
    result = generate_video(model, _request(num_frames=400, mode="forward"), keep_latents=False,
                            on_section=lambda s, lat: emitted.append((s.time_index, lat.shape[2])))
    assert result.latents is None
    assert sum(n for _, n in emitted) == result.plan.total_latents
    assert [t for t, _ in emitted] == list(range(len(result.plan.sections)))


def test_context_buffer_never_grows(model, monkeypatch):
    from framepack_core import generate as gen
    sizes = []
    original = gen._SectionRunner.remember

    def remember(self, latents):
        original(self, latents)
        sizes.append(self.context.shape[2])

    monkeypatch.setattr(gen._SectionRunner, "remember", remember)
    generate_video(model, _request(num_frames=400), keep_latents=False)
    assert set(sizes) == {CONTEXT_LATENTS}


def test_real_cfg_and_teacache_run(model):
    calls = {"n": 0}
    original = model.forward

    def counting(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    model.forward = counting
    try:
        generate_video(model, _request(cfg_scale=1.0))
        single = calls["n"]
        calls["n"] = 0
        generate_video(model, _request(cfg_scale=3.0, negative=_text(5)))
        assert calls["n"] == 2 * single
    finally:
        del model.forward
    result = generate_video(model, _request(num_frames=97, steps=10, teacache_threshold=5.0))
    assert result.stats["teacache_skipped"] > 0


@pytest.mark.parametrize("kw,msg", [
    (dict(end_strength=1.5), "strength"), (dict(steps=0), "steps"), (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(seed=2 ** 64), "seed"), (dict(num_frames=29), "num_frames"), (dict(mode="up"), "mode"),
    (dict(end=ImageConditioning(torch.zeros(1, 16, 1, 4, 4), torch.zeros(1, 6, 24))), "end image"),
])
def test_request_validation(model, kw, msg):
    from framepack_core import InputError
    with pytest.raises(InputError, match=msg):
        generate_video(model, _request(**kw))
