"""FramePack Sampler: the section-by-section video sampler."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from ..framepack_core.config import VAE_SPATIAL_FACTOR
from ..framepack_core.errors import InputError, Interrupted
from ..framepack_core.generate import GenerationRequest, generate_video
from ..framepack_core.limits import (AUTO, CACHE_CHOICES, DEFAULT_CACHE, DEFAULT_CFG, DEFAULT_EASYCACHE_THRESHOLD,
                                     DEFAULT_FRAMES,
                                     DEFAULT_GUIDANCE, DEFAULT_MAGCACHE_THRESHOLD, DEFAULT_SAMPLER, DEFAULT_STEPS,
                                     DEFAULT_TEACACHE_THRESHOLD, DEFAULT_WINDOW, FPS, MAX_CFG, MAX_EASYCACHE_THRESHOLD, MAX_FRAMES,
                                     MAX_GUIDANCE, MAX_SEED, MAX_SHIFT, MAX_STEPS, MAX_WINDOW, MIN_FRAMES, MIN_STEPS,
                                     MIN_WINDOW, MODE_CHOICES, VARIANT_MODES, Mode)
from ..framepack_core.parallel.mesh import job_split
from ..framepack_core.samplers import SAMPLERS
from .latent import SampledPlan, sampler_latent
from .magcache_files import PUBLISHED, load_ratios, ratio_choices, save_calibration
from .parallel import worker_group
from .runtime import (SamplingProgress, activation_reserve_bytes, interrupt_requested, model_on_device, out_of_memory,
                      raise_if_interrupted, schedule_to_core, text_from_conditioning)
from .types import CATEGORY, FramePackConditioning, FramePackModel, FramePackParallel, FramePackPrompts, check_choices

log = logging.getLogger("FramePack")


def check_continuation_mode(variant: str, mode: str) -> None:
    """A continuation runs only in the mode its weights were trained for: F1 forwards from the input's history,
    FramePackI2V_HY inverted from the input's last frame (framepack_core/starts.py)."""
    if mode == VARIANT_MODES[variant]:
        return
    if variant == "F1":
        raise InputError("continuing a video with F1 runs in forward mode (set mode to auto or forward): F1 was "
                         "trained to sample forwards from its history, which is what keeps the input's motion")
    raise InputError("FramePackI2V_HY continues a video only in inverted mode (set mode to auto or inverted): it "
                     "was never trained on a forward history. Load FramePack F1 for a continuation that keeps the "
                     "input's motion")


class FramePackSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackSampler", display_name="FramePack Sampler", category=CATEGORY,
            description="Samples the video section by section (FramePackI2V_HY: from the end backwards; F1: "
                        "forwards) and returns exactly num_frames frames of latents at 30 fps (new frames, after a "
                        "continued video or a blank text-to-video start).",
            inputs=[
                FramePackModel.Input("model"),
                io.Conditioning.Input("positive", tooltip="CLIPTextEncode with DualCLIPLoader type hunyuan_video"),
                io.Conditioning.Input("negative", tooltip="Used only when cfg_scale > 1"),
                FramePackConditioning.Input("conditioning", tooltip="From FramePack Image Conditioning"),
                io.Int.Input("num_frames", default=DEFAULT_FRAMES, min=MIN_FRAMES, max=MAX_FRAMES,
                             tooltip=f"Exact number of output frames at {FPS} fps ({MIN_FRAMES}-{MAX_FRAMES})"),
                io.Int.Input("num_inference_steps", default=DEFAULT_STEPS, min=MIN_STEPS, max=MAX_STEPS),
                io.Float.Input("guidance_scale", default=DEFAULT_GUIDANCE, min=0.0, max=MAX_GUIDANCE, step=0.1,
                               tooltip="Distilled guidance fed to the model (FramePack's default "
                                       f"{DEFAULT_GUIDANCE:g})"),
                io.Float.Input("cfg_scale", default=DEFAULT_CFG, min=0.0, max=MAX_CFG, step=0.1,
                               tooltip="Real classifier-free guidance; 1 = off (no negative pass, twice as fast)"),
                io.Int.Input("seed", default=0, min=-1, max=MAX_SEED, control_after_generate=True,
                             tooltip="-1 picks a random seed; the seed used is output and shown"),
                io.Combo.Input("sampler", options=list(SAMPLERS), default=DEFAULT_SAMPLER),
                io.Float.Input("shift", default=0.0, min=0.0, max=MAX_SHIFT, step=0.1,
                               tooltip="Sigma shift; 0 = FramePack's resolution-dependent rule (7.0 at usual sizes)"),
                io.Float.Input("teacache_threshold", default=DEFAULT_TEACACHE_THRESHOLD, min=0.0, max=1.0, step=0.01,
                               tooltip="TeaCache (cache = teacache): 0 = off; 0.1 ~1.6x, 0.15 ~2.1x faster, "
                                       "not lossless"),
                io.Int.Input("window_size", default=DEFAULT_WINDOW, min=MIN_WINDOW, max=MAX_WINDOW,
                             tooltip="Latent frames per section (9 = 33 frames, the trained setting)"),
                io.Combo.Input("mode", options=list(MODE_CHOICES), default=AUTO,
                               tooltip="auto: inverted anti-drifting for FramePackI2V_HY, forward for F1"),
                io.Float.Input("cfg_rescale", default=0.0, min=0.0, max=1.0, step=0.01),
                FramePackPrompts.Input("prompts", optional=True,
                                       tooltip="Timestamped prompts; when connected they replace 'positive'"),
                # -- step cache choice (optional, so workflows saved before it load with TeaCache as they ran)
                io.Combo.Input("cache", options=list(CACHE_CHOICES), default=DEFAULT_CACHE, optional=True,
                               tooltip="Skip denoising steps whose result is predictable. teacache: uses "
                                       "teacache_threshold. magcache: uses magcache_threshold and magcache_ratios "
                                       "(0.1: 12 of 25 steps computed, ~2x faster). magcache_calibrate: computes every step and "
                                       "saves this run's ratios to models/framepack_magcache. easycache: uses "
                                       "easycache_threshold, no calibration. none: every step."),
                io.Float.Input("magcache_threshold", default=DEFAULT_MAGCACHE_THRESHOLD, min=0.0, max=1.0, step=0.01,
                               optional=True,
                               tooltip="MagCache: accumulated error allowed while skipping; 0 = off, 0.1 = the "
                                       "authors' setting, higher is faster and less faithful"),
                io.Combo.Input("magcache_ratios", options=ratio_choices(), default=PUBLISHED, optional=True,
                               tooltip="published: the MagCache authors' ratios for this model (25 steps, resampled "
                                       "for other step counts); or a file made by a magcache_calibrate run"),
                io.Float.Input("easycache_threshold", default=DEFAULT_EASYCACHE_THRESHOLD, min=0.0,
                               max=MAX_EASYCACHE_THRESHOLD, step=0.001, optional=True,
                               tooltip="EasyCache: estimated output change allowed while reusing the last step's "
                                       f"result; 0 = every step computed, {DEFAULT_EASYCACHE_THRESHOLD} = the "
                                       "authors' HunyuanVideo setting, higher is faster and less faithful"),
                FramePackParallel.Input("parallel", optional=True,
                                        tooltip="From FramePack Parallel: run this job on several GPUs"),
            ],
            outputs=[io.Latent.Output(display_name="latent"), io.Int.Output(display_name="seed")],
        )

    @classmethod
    def validate_inputs(cls, sampler, mode, cache=DEFAULT_CACHE, magcache_ratios=PUBLISHED):
        return check_choices(sampler=(sampler, list(SAMPLERS)), mode=(mode, MODE_CHOICES),
                             cache=(cache, list(CACHE_CHOICES)), magcache_ratios=(magcache_ratios, ratio_choices()))

    @classmethod
    def fingerprint_inputs(cls, seed, **_):
        # seed -1 means "a new random seed every run": never reuse a cached result for it
        return float("nan") if seed == -1 else seed

    @classmethod
    def execute(cls, model, positive, negative, conditioning, num_frames, num_inference_steps, guidance_scale,
                cfg_scale, seed, sampler, shift, teacache_threshold, window_size, mode, cfg_rescale, prompts=None,
                cache=DEFAULT_CACHE, magcache_threshold=DEFAULT_MAGCACHE_THRESHOLD, magcache_ratios=PUBLISHED,
                easycache_threshold=DEFAULT_EASYCACHE_THRESHOLD, parallel=None):
        transformer = model.transformer
        text_dim = transformer.config.text_embed_dim
        mode = model.default_mode if mode == AUTO else mode
        continues = conditioning.continuation
        if continues is not None:
            check_continuation_mode(model.variant, mode)
        schedule = schedule_to_core(prompts, text_dim) if prompts is not None else \
            [(0.0, text_from_conditioning(positive, text_dim, "positive"))]
        request = GenerationRequest(
            start=conditioning.start, prompts=schedule, num_frames=num_frames, mode=mode,
            negative=text_from_conditioning(negative, text_dim, "negative") if cfg_scale != 1.0 else None,
            end=conditioning.end, end_strength=conditioning.strength, keyframes=conditioning.keyframes,
            steps=num_inference_steps, guidance_scale=guidance_scale, cfg_scale=cfg_scale, cfg_rescale=cfg_rescale,
            seed=seed, sampler=sampler, shift=shift if shift > 0 else None, teacache_threshold=teacache_threshold,
            window=window_size, cache=cache, magcache_threshold=magcache_threshold,
            magcache_ratios=load_ratios(magcache_ratios, model.variant) if cache == "magcache" else None,
            easycache_threshold=easycache_threshold,
            start_in_output=conditioning.start_in_output,
            continuation=continues.continuation if continues is not None else None)
        latent_hw = tuple(conditioning.start.latent.shape[-2:])
        plan = request.plan()
        # a step cache keeps one residual per guidance branch on the device (EasyCache keeps a few latent-sized
        # tensors, too small to count)
        step_cache_on = (cache == "teacache" and teacache_threshold > 0) or cache.startswith("magcache")
        split = (1, False)
        if parallel is not None:
            split = job_split(len(parallel.devices), transformer.config.num_attention_heads, parallel.cfg_parallel,
                              cfg_scale != 1.0)
        reserve = activation_reserve_bytes(model, plan, latent_hw, step_cache_on, cfg_scale != 1.0,
                                           mode == Mode.FORWARD and conditioning.end is not None
                                           and conditioning.strength > 0, *split)
        try:
            if parallel is not None:
                request.validate()  # before the workers see it: a bad value is the user's, not a failed worker
                result = worker_group(model, parallel).run(request, reserve, on_step=SamplingProgress(),
                                                           interrupt=interrupt_requested)
            else:
                device = model_on_device(model, reserve)
                result = generate_video(transformer, request, device=device, on_step=SamplingProgress(),
                                        interrupt=interrupt_requested)
        except Interrupted as err:
            raise_if_interrupted(err)
        except torch.cuda.OutOfMemoryError as err:
            size = f"{latent_hw[1] * VAE_SPATIAL_FACTOR}x{latent_hw[0] * VAE_SPATIAL_FACTOR}, window {window_size}"
            raise out_of_memory(model, "sampling", reserve, size, err) from err
        summary = result.plan.summary()
        log.info("FramePack: %s, seed %d", summary["description"], result.seed)
        # the plan travels with the latents; Video Combine writes the input (or not) before a continuation
        sampled = SampledPlan(result.plan, result.seed, result.lead_latents,
                              *((continues.source, continues.keep_input) if continues is not None else ()))
        latent = sampler_latent(result.latents, sampled)
        # "text" is what the UI shows; "framepack" is the same, machine-readable, for API clients (/history)
        if continues is not None:
            summary["input_frames"] = continues.continuation.input_frames
            summary["description"] = (f"continues a {summary['input_frames']}-frame video: "
                                      f"{summary['description']}")
        text = f"seed: {result.seed}\n{summary['description']}"
        if "magcache_calibration" in result.stats:
            saved = save_calibration(result.stats["magcache_calibration"], model.variant, num_inference_steps,
                                     model=model.name, mode=mode, sampler=sampler, window=window_size)
            result.stats["magcache_calibration"]["file"] = saved
            text += f"\nMagCache calibration saved as models/framepack_magcache/{saved}"
            log.info("FramePack: MagCache calibration saved as models/framepack_magcache/%s", saved)
        details = {"seed": result.seed, **summary, "stats": result.stats}
        if parallel is not None:
            details["parallel"] = {"devices": list(parallel.devices), "sequence_split": split[0],
                                   "cfg_split": split[1]}
            text += f"\n{len(parallel.devices)} devices: sequence split {split[0]} ways" + \
                (", CFG branches on two halves" if split[1] else "")
        report = {"text": [text], "framepack": [details]}
        return io.NodeOutput(latent, result.seed, ui=report)
