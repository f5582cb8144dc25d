"""The section loop: FramePack's image-to-video generation, faithful to the original, plus exact length, an end
image with a strength, prompts per time range and keyframes.

Modes
- Mode.INVERTED (FramePackI2V_HY, anti-drifting): sections are sampled from the end of the video back to the start.
  Each sees the start image latent and the nearest already-made (later) latent at full resolution, the next 2 at
  2x and 16 at 4x compression, with the original padding schedule placing the window on the time line.
- Mode.FORWARD (F1): sections are sampled from the start; the context is the last 19 latents (16 at 4x, 2 at 2x,
  1 at 1x) plus the start latent.

End image and `end_strength` s in [0, 1] (the hosted FLF2V APIs' `strength`, default DEFAULT_END_STRENGTH):
- the section that holds the video's last latent gets s * end_latent as a clean latent right after its window
  (inverted: the "post" history slot, where the community's first+last-frame method puts the end latent;
  forward: an extra clean slot after the window, which F1 otherwise never has);
- the last latent is pinned: at every denoising step its clean-data estimate is pulled towards the end latent,
  x0_last <- lerp(x0_last, end_latent, s), so s = 1 ends exactly on the end image and smaller s lets the model
  deviate proportionally;
- the SigLIP embeddings move from the start image's to the end image's over the video:
  lerp(start, end, s * u) with u in [0, 1] the section's centre time as a fraction of the video.
s = 0 disables the end image entirely, so the result is bit-for-bit the plain image-to-video result.
Keyframes use the same pinning at the latent holding their time, with their own strength.

Starts other than an image (text-to-video's blank image, the end of a video to continue) are described in starts.py;
the runner takes them through `initial_context` and its `lead` latents.

Memory: the context buffer holds at most 19 latents whatever the length; finished latents are handed to
`on_section` as soon as a section is done and, unless `keep_latents=False`, also collected for the result.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .conditioning import ImageConditioning, Keyframe, TextConditioning, blend_text, check_same_size
from .config import LATENT_CHANNELS
from .errors import InputError
from .guidance import NEGATIVE, POSITIVE, FlowDenoiser
from .limits import (CORE_MAX_STEPS, CORE_MIN_STEPS, DEFAULT_CACHE, DEFAULT_CFG, DEFAULT_EASYCACHE_THRESHOLD,
                     DEFAULT_END_STRENGTH,
                     DEFAULT_GUIDANCE, DEFAULT_MAGCACHE_THRESHOLD, DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_WINDOW, FPS,
                     MAX_SEED, MODES, RANDOM_SEED, RANDOM_SEED_BOUND, Mode)
from .planning import Section, SectionPlan, keyframe_latent_index, plan_video, prompt_weights
from .samplers import get_sampler
from .schedule import seq_len_for_latents, sigma_schedule
from .starts import Continuation, initial_context
from .stepcache import calibration_of, calibration_summary, new_step_cache, section_stats, stats_kind, validate_cache

HISTORY_SLOTS = (1, 2, 16)  # latents at 1x, 2x, 4x compression
CONTEXT_LATENTS = sum(HISTORY_SLOTS)


@dataclass
class GenerationRequest:
    start: ImageConditioning
    prompts: list[tuple[float, TextConditioning]]  # (start time in seconds, prompt); one entry = one prompt
    num_frames: int
    mode: str = Mode.INVERTED
    negative: TextConditioning | None = None
    end: ImageConditioning | None = None
    end_strength: float = DEFAULT_END_STRENGTH
    keyframes: list[Keyframe] = field(default_factory=list)
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    cfg_scale: float = DEFAULT_CFG
    cfg_rescale: float = 0.0
    seed: int = -1
    sampler: str = DEFAULT_SAMPLER
    shift: float | None = None  # None: resolution-dependent (capped at 7.0)
    teacache_threshold: float = 0.0  # 0 = off; the original's default when on is limits.DEFAULT_TEACACHE_THRESHOLD
    # the step cache (stepcache.py): "teacache" uses teacache_threshold; "magcache" magcache_threshold and
    # magcache_ratios (None: the published ratios of the mode's model); "magcache_calibrate" records ratios;
    # "easycache" easycache_threshold
    cache: str = DEFAULT_CACHE
    magcache_threshold: float = DEFAULT_MAGCACHE_THRESHOLD  # 0 = off
    magcache_ratios: tuple[float, ...] | None = None
    easycache_threshold: float = DEFAULT_EASYCACHE_THRESHOLD  # 0 = every step computed
    window: int = DEFAULT_WINDOW
    fps: int = FPS
    # -- starts (starts.py): a blank text-to-video start or a continuation is frame 0 but not an output frame
    start_in_output: bool = True
    continuation: Continuation | None = None

    @property
    def start_frame_is_output(self) -> bool:
        return self.start_in_output and self.continuation is None

    def plan(self) -> SectionPlan:
        """The section plan (pure arithmetic): callers size memory and progress from it before sampling."""
        return plan_video(self.num_frames, self.mode, self.window, self.fps,
                          start_in_output=self.start_frame_is_output)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"mode {self.mode!r} must be one of {', '.join(MODES)}")
        if not self.prompts:
            raise InputError("at least one prompt is needed")
        if not CORE_MIN_STEPS <= int(self.steps) <= CORE_MAX_STEPS:
            raise InputError(f"num_inference_steps {self.steps} is out of range; use {CORE_MIN_STEPS}-{CORE_MAX_STEPS} "
                             f"({DEFAULT_STEPS} is the default)")
        if self.guidance_scale < 0:
            raise InputError(f"guidance_scale {self.guidance_scale} must be >= 0 ({DEFAULT_GUIDANCE:g} is the default)")
        if self.cfg_scale < 0:
            raise InputError(f"cfg_scale {self.cfg_scale} must be >= 0 ({DEFAULT_CFG:g} = off, the default)")
        if not 0.0 <= self.end_strength <= 1.0:
            raise InputError(f"strength {self.end_strength} must be between 0 and 1 ({DEFAULT_END_STRENGTH:g} is the "
                             "default)")
        validate_cache(self.cache, self.teacache_threshold, self.magcache_threshold, self.magcache_ratios,
                       self.easycache_threshold)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not RANDOM_SEED <= self.seed <= MAX_SEED:
            raise InputError(f"seed {self.seed!r} must be an integer from -1 (random) to {MAX_SEED}")
        for key in self.keyframes:
            check_same_size(self.start, key.image, "keyframe")
            if not 0.0 <= key.strength <= 1.0:
                raise InputError(f"keyframe strength {key.strength} must be between 0 and 1")
        if self.end is not None:
            check_same_size(self.start, self.end, "end image")
        if self.continuation is not None and self.continuation.history.shape[-2:] != self.start.latent.shape[-2:]:
            raise InputError(f"the input video's latents {list(self.continuation.history.shape)} do not match the "
                             f"start latent {list(self.start.latent.shape)}; encode both at the same pixel size")


@dataclass
class GenerationResult:
    # [1, 16, lead_latents - 1 + total_latents, h, w] in model space (None when keep_latents=False)
    latents: torch.Tensor | None
    seed: int
    plan: SectionPlan
    stats: dict
    lead_latents: int = 1  # latents up to the start in time: the start latent, or a continued video's history


StepCallback = Callable[[int, int, int, int, torch.Tensor], None]  # section, sections, step, steps, x0
SectionCallback = Callable[[Section, torch.Tensor], None]  # section, its finished latents (time order)


def resolve_seed(seed: int) -> int:
    return secrets.randbelow(RANDOM_SEED_BOUND) if seed == RANDOM_SEED else int(seed)


def generate_video(model, request: GenerationRequest, *, device: torch.device | str | None = None,
                   on_step: StepCallback | None = None, on_section: SectionCallback | None = None,
                   interrupt: Callable[[], bool] | None = None, keep_latents: bool = True,
                   parallel=None) -> GenerationResult:
    """`device`: where the model computes. A caller that streams weights (offload.BlockStreamer) passes the device
    it streams to; without one the model's first parameter says where it lives.

    `parallel`: a parallel.ParallelMesh when this process is one rank of a multi-GPU run; every rank calls this
    with the same request and gets the same latents (callbacks are the caller's to give to one rank only)."""
    request.validate()
    if parallel is None:
        return _generate(model, request, device, on_step, on_section, interrupt, keep_latents, None)
    job = parallel.for_job(request.cfg_scale != 1.0)
    request = dataclasses.replace(request, seed=parallel.agree_seed(request.seed))
    local_interrupt = interrupt
    interrupt = lambda: parallel.agreed(bool(local_interrupt and local_interrupt()))  # noqa: E731
    model.set_sequence_parallel(job.sequence)
    try:
        return _generate(model, request, device, on_step, on_section, interrupt, keep_latents, job)
    finally:
        model.set_sequence_parallel(None)


def _generate(model, request, device, on_step, on_section, interrupt, keep_latents, job) -> GenerationResult:
    plan = request.plan()
    seed = resolve_seed(request.seed)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    # One CPU generator for the whole job: the same seed gives the same video on any device (and on every rank).
    generator = torch.Generator("cpu").manual_seed(seed)
    runner = _SectionRunner(model, request, plan, device, job)
    finished: list[tuple[int, torch.Tensor]] = []
    stats = {"sections": [], "teacache_skipped": 0, "teacache_computed": 0, "magcache_skipped": 0,
             "magcache_computed": 0, "easycache_skipped": 0, "easycache_computed": 0}
    cache_kind = stats_kind(request.cache)
    calibration: list[list[float]] = []
    for section in plan.sections:
        t0 = time.perf_counter()
        noise = torch.randn((1, LATENT_CHANNELS, section.num_latents, *runner.latent_hw), generator=generator,
                            dtype=torch.float32)
        step_cb = None
        if on_step is not None:
            step_cb = lambda j, n, x, x0, s=section: on_step(s.sampling_index, len(plan.sections), j, n, x0)  # noqa: E731
        latents, cache_stats, section_calibration = runner.sample(section, noise, step_cb, interrupt)
        # The context remembers only sampled latents: F1's buffer already holds the start latent (as the original's
        # does), so remembering the video's copy of it would put it twice into the second section's 4x slot.
        runner.remember(latents)
        if section.is_next_to_start:
            latents = torch.cat([runner.lead, latents], dim=2)
        if on_section is not None:
            on_section(section, latents)
        if keep_latents:
            finished.append((section.time_index, latents))
        stats["sections"].append({"index": section.sampling_index, "latents": section.num_latents,
                                  "seconds": round(time.perf_counter() - t0, 3), **cache_stats})
        stats[f"{cache_kind}_skipped"] += cache_stats.get("skipped", 0)
        stats[f"{cache_kind}_computed"] += cache_stats.get("computed", 0)
        if section_calibration is not None:
            calibration.append(section_calibration)
    if calibration:
        stats["magcache_calibration"] = calibration_summary(calibration)
    video = torch.cat([lat for _, lat in sorted(finished, key=lambda p: p[0])], dim=2) if keep_latents else None
    return GenerationResult(video, seed, plan, stats, runner.lead.shape[2])


@dataclass(frozen=True)
class HistoryLayout:
    """One section's packed context: where its noisy window and the clean history latents sit on the time line
    (frame indices for RoPE) and the clean latents themselves, at 1x, 2x and 4x compression. Field names are the
    keyword arguments of FramePackTransformer.prepare."""

    latent_indices: torch.Tensor  # the noisy window
    clean_latents: torch.Tensor  # 1x: the start latent, then the nearest history latent (and the scaled end latent)
    clean_latent_indices: torch.Tensor
    clean_latents_2x: torch.Tensor
    clean_latent_2x_indices: torch.Tensor
    clean_latents_4x: torch.Tensor
    clean_latent_4x_indices: torch.Tensor

    def to(self, device: torch.device) -> "HistoryLayout":
        return HistoryLayout(**{name: value.to(device) for name, value in self.as_kwargs().items()})

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class _SectionRunner:
    """Builds each section's packed context and runs the sampler on it."""

    def __init__(self, model, request: GenerationRequest, plan: SectionPlan, device: torch.device, job=None):
        self.model, self.request, self.plan, self.device = model, request, plan, device
        self.job = job  # parallel.JobParallel of a multi-GPU run, else None
        start = request.start.latent.float().cpu()
        self.latent_hw = tuple(start.shape[-2:])
        self.start_latent = start
        use_end = request.end is not None and request.end_strength > 0
        self.end = request.end if use_end else None
        self.prompts = [p.cropped() for _, p in request.prompts]
        self.prompt_starts = [float(t) for t, _ in request.prompts]
        self.negative = None
        if request.cfg_scale != 1.0:
            self.negative = (request.negative or request.prompts[0][1].zeros_like()).cropped()
        self.pins = self._pins()
        # inverted: the latents right AFTER the next window (time order); forward: the latents right BEFORE it
        self.context = initial_context(request.mode, start, request.continuation, CONTEXT_LATENTS)
        # what precedes the first window in the finished video (and is decoded with it): the start latent, or the
        # continued video's history, which the decoder joins to the input's frames (frames.py)
        self.lead = start if request.continuation is None else request.continuation.history.float().cpu()

    def _pins(self) -> dict[int, tuple[torch.Tensor, float]]:
        pins = {}
        for key in self.request.keyframes:
            if key.strength > 0:
                pins[keyframe_latent_index(self.plan, key.time_s)] = (key.image.latent.float(), float(key.strength))
        if self.end is not None:
            pins[self.plan.total_latents - 1] = (self.end.latent.float(), float(self.request.end_strength))
        return pins

    def remember(self, latents: torch.Tensor) -> None:
        if self.request.mode == Mode.INVERTED:
            self.context = torch.cat([latents, self.context], dim=2)[:, :, :CONTEXT_LATENTS]
        else:
            self.context = torch.cat([self.context, latents], dim=2)[:, :, -CONTEXT_LATENTS:]

    def _layout(self, section: Section) -> HistoryLayout:
        """Frame indices and clean latents of the packed context, as in the original demos: index 0 is the start
        latent; inverted, the window (after `padding` blank windows) is followed by the 1x, 2x and 4x history;
        forward, the 4x, 2x and 1x history precede the window."""
        w = section.num_latents
        ctx = self.context
        if self.request.mode == Mode.INVERTED:
            blank = section.padding * self.request.window
            idx = torch.arange(1 + blank + w + CONTEXT_LATENTS)
            pre, _, latent_idx, post, idx_2x, idx_4x = idx.split([1, blank, w, *HISTORY_SLOTS])
            post_latent, c2x, c4x = ctx.split(HISTORY_SLOTS, dim=2)
            if self.end is not None and section.is_video_end:
                post_latent = self.request.end_strength * self.end.latent.float().cpu()
            clean = torch.cat([self.start_latent, post_latent], dim=2)
            clean_idx = torch.cat([pre, post])
        else:
            idx = torch.arange(1 + CONTEXT_LATENTS + w)
            pre, idx_4x, idx_2x, idx_1x, latent_idx = idx.split([1, *reversed(HISTORY_SLOTS), w])
            c4x, c2x, c1x = ctx.split(list(reversed(HISTORY_SLOTS)), dim=2)
            clean, clean_idx = torch.cat([self.start_latent, c1x], dim=2), torch.cat([pre, idx_1x])
            if self.end is not None and section.is_video_end:
                clean = torch.cat([clean, self.request.end_strength * self.end.latent.float().cpu()], dim=2)
                clean_idx = torch.cat([clean_idx, torch.tensor([1 + CONTEXT_LATENTS + w])])
        return HistoryLayout(latent_indices=latent_idx, clean_latents=clean, clean_latent_indices=clean_idx,
                             clean_latents_2x=c2x, clean_latent_2x_indices=idx_2x,
                             clean_latents_4x=c4x, clean_latent_4x_indices=idx_4x)

    def _image_embeds(self, section: Section) -> torch.Tensor:
        start = self.request.start.embeds.float()
        if self.end is None:
            return start
        t0, t1 = section.time_range(self.plan.fps)
        u = min(max(0.5 * (t0 + t1) / self.plan.duration_s, 0.0), 1.0)
        return torch.lerp(start, self.end.embeds.float(), self.request.end_strength * u)

    def _text(self, section: Section) -> TextConditioning:
        if len(self.prompts) == 1:
            return self.prompts[0]
        weights = prompt_weights(self.plan, self.prompt_starts)[section.sampling_index]
        return blend_text(self.prompts, weights)

    def sample(self, section: Section, noise: torch.Tensor, step_cb, interrupt):
        """The section's sampled latents (float32, CPU), its step-cache counts ({"computed", "skipped"}; empty when
        no cache is on) and, when calibrating MagCache, the section's measured ratios (else None)."""
        req, model, dev = self.request, self.model, self.device
        layout = self._layout(section).to(dev)
        embeds = self._image_embeds(section).to(dev)
        contexts = {"positive": model.prepare(noise.shape, image_embeddings=embeds, **layout.as_kwargs())}
        texts = {"positive": self._text(section)}
        if self.negative is not None:
            contexts["negative"] = contexts["positive"]  # the packed context does not depend on the prompt
            texts["negative"] = self.negative
        caches = {b: new_step_cache(req) for b in texts}
        guidance = torch.full((1,), req.guidance_scale * 1000.0, device=dev)

        # Text goes to the device (in the compute dtype, which the model would convert it to anyway) once per
        # section, not at every model call.
        dtype = getattr(model, "compute_dtype", None)
        texts = {b: (t.tokens.to(device=dev, dtype=dtype), t.pooled.to(device=dev, dtype=dtype))
                 for b, t in texts.items()}

        def predict_velocity(x, timestep, branch):
            tokens, pooled = texts[branch]
            # the prompts were cropped to their valid tokens, so no attention mask is needed
            return model(hidden_states=x, timestep=timestep.to(dev), encoder_hidden_states=tokens,
                         encoder_attention_mask=None, pooled_projections=pooled, guidance=guidance,
                         context=contexts[branch], cache=caches[branch])

        both_branches = None
        if self.job is not None and self.job.cfg_group is not None:
            own = NEGATIVE if self.job.branch else POSITIVE
            both_branches = lambda x, timestep: self.job.exchange(predict_velocity(x, timestep, own).float())  # noqa: E731
        denoiser = FlowDenoiser(predict_velocity, req.cfg_scale, req.cfg_rescale, both_branches)
        pins = self._section_pins(section, dev)
        model_fn = denoiser if not pins else (lambda x, sigma: _pin(denoiser(x, sigma), pins))
        sigmas = sigma_schedule(req.steps, seq_len=seq_len_for_latents(section.num_latents, *self.latent_hw),
                                shift=req.shift).to(dev)
        sampler = get_sampler(req.sampler)
        with torch.no_grad():
            out = sampler(model_fn, noise.to(dev), sigmas, callback=step_cb, interrupt=interrupt)
        counts = section_stats(caches)
        if self.job is not None:
            counts = self.job.sum_over_branches(counts)
        return out.float().cpu(), counts, calibration_of(caches)

    def _section_pins(self, section: Section, dev) -> list[tuple[int, torch.Tensor, float]]:
        first = section.latent_start
        return [(i - first, lat.to(dev), s) for i, (lat, s) in self.pins.items()
                if first <= i < first + section.num_latents]


def _pin(x0: torch.Tensor, pins) -> torch.Tensor:
    x0 = x0.clone()
    for i, latent, strength in pins:
        x0[:, :, i:i + 1] = torch.lerp(x0[:, :, i:i + 1], latent, strength)
    return x0
