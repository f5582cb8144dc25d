"""What the model receives for every section, against a reference written here from the original demos' rules.

The reference does not use framepack_core's planning or layout code. It rebuilds, for each section in sampling
order, the packed context the original builds from the latents made so far (taken from the finished video), the
SigLIP embeddings, the prompt mix, and the end/keyframe pins, and compares them with what a spy on the model saw.

Original rules (lllyasviel/FramePack):
- F1 (demo_gradio_f1.py): the history buffer starts as 19 zero latents followed by the start latent; every
  section appends its sampled latents. A section's context is the last 19 latents of the buffer, split 16 (4x) /
  2 (2x) / 1 (1x); indices [start | 4x | 2x | 1x | window] = 0 | 1..16 | 17,18 | 19 | 20...
- I2V_HY (demo_gradio.py): sampled from the end of the video back to the start. The history buffer starts as 19
  zeros and every section's latents are put in FRONT of it; the context is its first 19 latents, split 1 (the
  "post" latent right after the window) / 2 (2x) / 16 (4x); indices [start | blank | window | post | 2x | 4x]
  with padding * window blank indices, padding levels reversed(range(n)), or [3, 2, ..., 2, 1, 0] for n > 4.
Starts (ours, starts.py): a continued video's history (the VAE encodings of its last frames) takes the place of
the start latent in F1's buffer: 19 zeros, then the history, then every sampled section; the start anchor at index
0 is the input's last frame. Inverted sampling keeps its buffer of zeros (its context is the future). A blank
(text-to-video) start or a continuation plans one frame more (frame 0 is not output), which changes the windows.
Ours on top: the end image (strength s) goes in as s * end_latent in the slot after the last window (I2V_HY: the
post slot of the first sampled section; F1: one extra clean slot), the last latent's x0 is pulled towards it,
lerp(x0, end, s), and the SigLIP embeddings move from start to end as lerp(start, end, s * u), u the section's
centre time over the video's duration; prompts are mixed by how much of the section's time they cover.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from framepack_core import TINY
from framepack_core import generate as gen
from framepack_core.conditioning import ImageConditioning, Keyframe, TextConditioning
from framepack_core.errors import InputError
from framepack_core.generate import GenerationRequest, generate_video
from framepack_core.starts import Continuation
from framepack_dev.random_weights import tiny_transformer

FPS = 30
WINDOW = 9


@pytest.fixture(scope="module")
def model():
    return tiny_transformer()


def _image(seed, h=4, w=6):
    g = torch.Generator().manual_seed(seed)
    return ImageConditioning(torch.randn(1, 16, 1, h, w, generator=g),
                             torch.randn(1, 6, TINY.image_proj_dim, generator=g))


def _text(seed, n=5):
    g = torch.Generator().manual_seed(100 + seed)
    return TextConditioning(torch.randn(1, n, TINY.text_embed_dim, generator=g), torch.randn(1, 16, generator=g))


START, END, KEY = _image(1), _image(2), _image(3)
PROMPT_A, PROMPT_B = _text(0), _text(1, n=7)


class ModelSpy:
    """Records what the section loop hands the model: prepare()'s packed context, forward()'s text and guidance."""

    def __init__(self, model):
        self.model = model
        self.prepared: list[dict] = []
        self.forwards: list[dict] = []

    def __enter__(self):
        prepare, forward = self.model.prepare, self.model.forward
        prepare_sig, forward_sig = inspect.signature(prepare), inspect.signature(forward)

        def spy_prepare(*args, **kwargs):
            bound = prepare_sig.bind(*args, **kwargs)
            self.prepared.append({k: _cpu(v) for k, v in bound.arguments.items()})
            return prepare(*args, **kwargs)

        def spy_forward(*args, **kwargs):
            bound = forward_sig.bind(*args, **kwargs)
            out = forward(*args, **kwargs)
            record = {k: _cpu(v) for k, v in bound.arguments.items() if k != "context"}
            record["output"] = out.detach().float().cpu()
            self.forwards.append(record)
            return out

        self.model.prepare, self.model.forward = spy_prepare, spy_forward
        return self

    def __exit__(self, *exc):
        del self.model.prepare, self.model.forward


def _cpu(value):
    return value.detach().float().cpu() if isinstance(value, torch.Tensor) else value


# -- the reference, from the original's rules --------------------------------------------------------------------


def _windows(num_frames: int) -> list[int]:
    """Time-order window sizes: the fewest windows of at most 9 latents covering ceil((N+3)/4) - 1 latents,
    sizes within one of each other, larger first (N counts frame 0 even when it is not output)."""
    generated = math.ceil((num_frames + 3) / 4) - 1
    n = math.ceil(generated / WINDOW)
    sizes = [generated // n] * n
    for i in range(generated % n):
        sizes[i] += 1
    return sizes


def _paddings(n: int) -> list[int]:
    return [3] + [2] * (n - 3) + [1, 0] if n > 4 else list(range(n - 1, -1, -1))


def _sections(num_frames: int, mode: str) -> list[dict]:
    """Sections in sampling order: first latent, window, padding, [t0, t1) seconds."""
    windows = _windows(num_frames)
    firsts = [1 + sum(windows[:i]) for i in range(len(windows))]
    out = []
    for t, (a, w) in enumerate(zip(firsts, windows)):
        f0 = 0 if a == 1 else 4 * a - 3
        out.append(dict(first=a, window=w, time_index=t, t0=f0 / FPS, t1=(4 * (a + w) - 3) / FPS,
                        last=t == len(windows) - 1))
    if mode == "inverted":
        out.reverse()
        for s, p in zip(out, _paddings(len(out))):
            s["padding"] = p
    return out


def _expected_context(mode: str, video: torch.Tensor, section: dict, end_strength: float, with_end: bool,
                      lead: int = 1) -> dict:
    """The packed clean latents and their indices the original builds for this section, from the finished video
    (which holds exactly what every earlier section sampled). The video's first `lead` latents precede the first
    window: the start latent, or a continued video's history."""
    a, w = section["first"], section["window"]
    zeros = torch.zeros(1, 16, 19, *video.shape[-2:])
    a += lead - 1  # the section's first latent in the video tensor
    if mode == "forward":
        buffer = torch.cat([zeros, video[:, :, :a]], dim=2)  # 19 zeros, the start or history, every latent so far
        ctx = buffer[:, :, -19:]
        c4x, c2x, c1x = ctx[:, :, :16], ctx[:, :, 16:18], ctx[:, :, 18:19]
        clean, clean_idx = torch.cat([START.latent, c1x], dim=2), [0, 19]
        if with_end and section["last"]:
            clean = torch.cat([clean, end_strength * END.latent], dim=2)
            clean_idx.append(20 + w)
        return dict(latent_indices=list(range(20, 20 + w)), clean_latents=clean, clean_latent_indices=clean_idx,
                    clean_latents_2x=c2x, clean_latent_2x_indices=[17, 18],
                    clean_latents_4x=c4x, clean_latent_4x_indices=list(range(1, 17)))
    history = torch.cat([video[:, :, a + w:], zeros], dim=2)[:, :, :19]  # what comes after the window, in time
    post, c2x, c4x = history[:, :, :1], history[:, :, 1:3], history[:, :, 3:19]
    if with_end and section["last"]:
        post = end_strength * END.latent
    blank = section["padding"] * WINDOW
    window_first = 1 + blank
    after = window_first + w
    return dict(latent_indices=list(range(window_first, after)), clean_latents=torch.cat([START.latent, post], dim=2),
                clean_latent_indices=[0, after], clean_latents_2x=c2x,
                clean_latent_2x_indices=[after + 1, after + 2], clean_latents_4x=c4x,
                clean_latent_4x_indices=list(range(after + 3, after + 19)))


def _expected_embeds(section: dict, num_frames: int, end_strength: float, with_end: bool) -> torch.Tensor:
    if not with_end:
        return START.embeds
    u = min(max(0.5 * (section["t0"] + section["t1"]) / (num_frames / FPS), 0.0), 1.0)
    return START.embeds + end_strength * u * (END.embeds - START.embeds)


def _expected_text(section: dict, prompts: list[tuple[float, TextConditioning]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt k covers [its start, the next later start), the first from 0, the last forever; a section mixes the
    prompts by the share of its time span each covers, tokens zero-padded to the longest active prompt."""
    starts = sorted(t for t, _ in prompts)
    t0, t1 = section["t0"], section["t1"]
    weighted = []
    for rank, (start, text) in enumerate(sorted(prompts, key=lambda p: p[0])):
        lo = 0.0 if rank == 0 else start
        hi = starts[rank + 1] if rank + 1 < len(starts) else math.inf
        share = max(0.0, min(t1, hi) - max(t0, lo)) / (t1 - t0)
        if share > 0:
            weighted.append((share, text))
    if len(weighted) == 1:
        return weighted[0][1].tokens, weighted[0][1].pooled
    length = max(t.tokens.shape[1] for _, t in weighted)
    tokens = sum(s * torch.nn.functional.pad(t.tokens, (0, 0, 0, length - t.tokens.shape[1])) for s, t in weighted)
    return tokens, sum(s * t.pooled for s, t in weighted)


def _assert_close(actual, expected, what, atol=1e-6):
    if isinstance(expected, list):
        assert actual.flatten().long().tolist() == expected, what
        return
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert torch.allclose(actual, expected, atol=atol, rtol=0), (what, (actual - expected).abs().max().item())


def _run(model, **kw):
    request = GenerationRequest(**{**dict(start=START, prompts=[(0.0, PROMPT_A)], steps=2, seed=11), **kw})
    with ModelSpy(model) as spy:
        result = generate_video(model, request)
    return result, spy


CASES = {
    # mode, frames, end strength (None = no end image), prompts, keyframes
    "f1_three_sections": ("forward", 97, None, [(0.0, PROMPT_A)], []),
    "f1_five_sections_end_image": ("forward", 161, 0.7, [(0.0, PROMPT_A), (2.5, PROMPT_B)], []),
    "f1_keyframe": ("forward", 97, None, [(0.0, PROMPT_A)], [Keyframe(1.0, KEY, 0.6)]),
    "inverted_three_sections": ("inverted", 97, None, [(0.0, PROMPT_A)], []),
    "inverted_six_sections_end_image_prompts": ("inverted", 190, 0.6, [(0.0, PROMPT_A), (1.2, PROMPT_B)],
                                                [Keyframe(3.0, KEY, 0.5)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_section_gets_the_original_context_embeddings_and_prompt_mix(model, case):
    mode, frames, strength, prompts, keyframes = CASES[case]
    with_end = strength is not None
    extra = dict(end=END, end_strength=strength) if with_end else {}
    result, spy = _run(model, mode=mode, num_frames=frames, prompts=prompts, keyframes=keyframes, **extra)
    video = result.latents
    sections = _sections(frames, mode)
    assert video.shape[2] == 1 + sum(s["window"] for s in sections)
    assert torch.equal(video[:, :, :1], START.latent)  # the video starts with the start latent, once
    assert len(spy.prepared) == len(sections)
    steps = 2
    assert len(spy.forwards) == steps * len(sections)
    for k, section in enumerate(sections):
        seen = spy.prepared[k]
        expected = _expected_context(mode, video, section, strength or 0.0, with_end)
        for key, value in expected.items():
            _assert_close(seen[key], value, f"section {k} {key}")
        assert list(seen["latent_shape"]) == [1, 16, section["window"], *START.latent.shape[-2:]]
        _assert_close(seen["image_embeddings"], _expected_embeds(section, frames, strength or 0.0, with_end),
                      f"section {k} SigLIP embeddings")
        tokens, pooled = _expected_text(section, prompts)
        for step in range(steps):
            call = spy.forwards[k * steps + step]
            _assert_close(call["encoder_hidden_states"], tokens, f"section {k} text tokens")
            _assert_close(call["pooled_projections"], pooled, f"section {k} pooled text")
            _assert_close(call["guidance"], torch.tensor([10000.0]), "distilled guidance x 1000")


def _history(k, seed=40, h=4, w=6):
    return torch.randn(1, 16, k, h, w, generator=torch.Generator().manual_seed(seed + k))


STARTS = {
    # mode, new frames, history latents (None: a blank text-to-video start)
    "f1_continuation_full_history": ("forward", 61, 19),
    "f1_continuation_short_input": ("forward", 61, 3),
    "inverted_continuation": ("inverted", 61, 5),
    "f1_text_to_video": ("forward", 61, None),
    "inverted_text_to_video": ("inverted", 61, None),
}


@pytest.mark.parametrize("case", list(STARTS))
def test_starts_without_an_output_start_frame_get_the_original_context(model, case):
    """A continuation: F1's buffer is 19 zeros, the input's history latents, then every sampled latent; the anchor
    at index 0 is the start latent (the input's last frame); inverted sampling sees zeros as before. A blank start:
    the plain context. Either way the chain is planned for one frame more and the video holds the history (or the
    start latent) before the sampled latents."""
    mode, frames, k = STARTS[case]
    continuation = Continuation(_history(k), input_frames=4 * k + 1) if k else None
    result, spy = _run(model, mode=mode, num_frames=frames, start_in_output=False, continuation=continuation)
    video, lead = result.latents, k or 1
    sections = _sections(frames + 1, mode)
    assert result.lead_latents == lead and result.plan.output_frames == frames
    assert video.shape[2] == lead + sum(s["window"] for s in sections)
    assert torch.equal(video[:, :, :lead], continuation.history if k else START.latent)
    assert len(spy.prepared) == len(sections)
    for n, section in enumerate(sections):
        seen = spy.prepared[n]
        for key, value in _expected_context(mode, video, section, 0.0, False, lead).items():
            _assert_close(seen[key], value, f"section {n} {key}")
        assert torch.equal(seen["clean_latents"][:, :, :1], START.latent)  # the anchor
        _assert_close(seen["image_embeddings"], START.embeds, f"section {n} SigLIP embeddings")
    if mode == "forward" and k:  # the first section's history is exactly the input's, zeros before a short one
        first = spy.prepared[0]
        packed = torch.cat([first["clean_latents_4x"], first["clean_latents_2x"], first["clean_latents"][:, :, 1:]],
                           dim=2)
        assert torch.equal(packed[:, :, 19 - k:], continuation.history)
        assert not packed[:, :, :19 - k].any()


def test_the_continuation_history_must_match_the_start_latent(model):
    with pytest.raises(InputError, match="same pixel size"):
        _run(model, mode="forward", num_frames=30, continuation=Continuation(_history(2, h=6), input_frames=9))


def test_f1_second_section_holds_the_start_latent_once(model):
    """The regression itself: with 9-latent windows (109 frames = 3 x 9 latents) F1's second section sees
    [9 zeros, start, the first 6 latents of section 1] at 4x."""
    result, spy = _run(model, mode="forward", num_frames=109)
    c4x = spy.prepared[1]["clean_latents_4x"]
    assert torch.equal(c4x[:, :, :9], torch.zeros_like(c4x[:, :, :9]))
    assert torch.equal(c4x[:, :, 9:10], START.latent)
    assert torch.equal(c4x[:, :, 10:], result.latents[:, :, 1:7])


def test_the_inverted_end_latent_and_embeddings_follow_strength_exactly(model):
    """Values, not directions: at s = 0.3 the post slot is 0.3 * end and the embeddings of a section centred at
    u of the video are start + 0.3 * u * (end - start)."""
    result, spy = _run(model, mode="inverted", num_frames=97, end=END, end_strength=0.3)
    first = spy.prepared[0]
    _assert_close(first["clean_latents"][:, :, 1:2], 0.3 * END.latent, "post slot")
    sections = _sections(97, "inverted")
    for k, section in enumerate(sections):
        u = 0.5 * (section["t0"] + section["t1"]) / (97 / FPS)
        _assert_close(spy.prepared[k]["image_embeddings"], torch.lerp(START.embeds, END.embeds, 0.3 * u),
                      f"section {k} embeddings")
    assert not torch.allclose(spy.prepared[0]["image_embeddings"], spy.prepared[-1]["image_embeddings"])


# -- pins: the sampler's x0 for the latent holding the end image or a keyframe --------------------------------------


def _one_call_sampler(records):
    """A stand-in sampler: evaluates the model function once at sigma 0.5 and returns its x0 as the result."""

    def sample(model_fn, noise, sigmas, callback=None, interrupt=None):
        x = noise * 0.5
        x0 = model_fn(x, torch.full((x.shape[0],), 0.5))
        records.append((x.float().cpu(), x0.float().cpu()))
        return x0

    return sample


@pytest.mark.parametrize("mode", ["forward", "inverted"])
@pytest.mark.parametrize("strength", [0.35, 0.8])
def test_pins_pull_x0_by_exactly_their_strength(model, monkeypatch, mode, strength):
    """x0 of the pinned latent is lerp(x - 0.5 v, target, strength); every other latent is x - 0.5 v untouched.
    97 frames: 25 latents, no dropped frames, so the keyframe at 1.0 s (frame 30) is latent (30 + 3) // 4 = 8 and
    the one at 0.5 s (frame 15) latent 4, inside a section's window (a pin spilling onto its neighbour shows)."""
    records = []
    monkeypatch.setattr(gen, "get_sampler", lambda name: _one_call_sampler(records))
    key_strength = 0.45
    result, spy = _run(model, mode=mode, num_frames=97, end=END, end_strength=strength,
                       keyframes=[Keyframe(1.0, KEY, key_strength), Keyframe(0.5, KEY, 0.6)])
    pins = {24: (END.latent, strength), 8: (KEY.latent, key_strength), 4: (KEY.latent, 0.6)}
    sections = _sections(97, mode)
    assert len(records) == len(sections)
    for (x, x0), call, section in zip(records, spy.forwards, sections):
        unpinned = x - 0.5 * call["output"]
        expected = unpinned.clone()
        for latent, (target, s) in pins.items():
            i = latent - section["first"]
            if 0 <= i < section["window"]:
                expected[:, :, i:i + 1] = unpinned[:, :, i:i + 1] + s * (target - unpinned[:, :, i:i + 1])
        _assert_close(x0, expected, f"x0 of section at latent {section['first']}", atol=1e-5)
    assert any(0 <= 24 - s["first"] < s["window"] for s in sections)
