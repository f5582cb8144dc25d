"""Glue between ComfyUI's runtime (devices, memory, progress, previews, interrupts) and framepack_core."""

from __future__ import annotations

import logging

import comfy.latent_formats
import comfy.model_management as mm
import comfy.utils
import latent_preview
import torch

from ..framepack_core.conditioning import TextConditioning
from ..framepack_core.errors import InputError, Interrupted
from ..framepack_core.memory import default_reserve_bytes
from ..framepack_core.offload import GiB
from .placement import place
from .types import PromptSchedule

log = logging.getLogger("FramePack")


def text_from_conditioning(conditioning, expected_dim: int, what: str) -> TextConditioning:
    """ComfyUI CONDITIONING from CLIPTextEncode with the hunyuan_video DualCLIPLoader: [[llama tokens, {pooled_output}]]."""
    if not conditioning:
        raise InputError(f"the {what} conditioning is empty; connect a CLIPTextEncode node")
    tokens, extra = conditioning[0][0], conditioning[0][1]
    pooled = extra.get("pooled_output")
    if pooled is None or tokens.ndim != 3:
        raise InputError(f"the {what} conditioning has no pooled CLIP-L output; encode it with CLIPTextEncode and a "
                         "DualCLIPLoader of type hunyuan_video (clip_l + llava_llama3)")
    if tokens.shape[-1] != expected_dim:
        raise InputError(f"the {what} conditioning has width {tokens.shape[-1]} but this FramePack model expects "
                         f"{expected_dim}: use DualCLIPLoader type hunyuan_video with clip_l.safetensors and "
                         "llava_llama3_fp16.safetensors (or its fp8 version)")
    mask = extra.get("attention_mask")
    return TextConditioning(tokens[:1], pooled[:1], None if mask is None else mask[:1].bool())


def schedule_to_core(schedule: PromptSchedule, text_dim: int) -> list[tuple[float, TextConditioning]]:
    """The timestamped prompts node's schedule as the core's (start seconds, TextConditioning) list."""
    return [(start, text_from_conditioning(cond, text_dim, f"prompt at {start:g}s")) for start, cond in schedule.entries]


def activation_reserve_bytes(handle, plan, latent_hw: tuple[int, int], teacache: bool, cfg: bool,
                             extra_clean_latent: bool, ranks: int = 1, cfg_split: bool = False) -> int:
    """GPU memory kept free for activations: the loader's vram_reserve_gb, or when that is 0 (auto) the peak of
    this job's largest section (framepack_core.memory) with its margins. A parallel run: `ranks` GPUs split each
    sequence, and with `cfg_split` each holds one CFG branch's step cache."""
    if handle.vram_reserve_gb > 0:
        return int(handle.vram_reserve_gb * GiB)
    transformer = handle.transformer
    branches = 2 if cfg and not cfg_split else 1
    return default_reserve_bytes(transformer.config, max(s.num_latents for s in plan.sections), *latent_hw,
                                 dtype_bytes=torch.finfo(transformer.compute_dtype).bits // 8,
                                 teacache_branches=branches if teacache else 0,
                                 clean_1x=3 if extra_clean_latent else 2, ranks=ranks)


def model_on_device(handle, reserve_bytes: int) -> torch.device:
    """Places the transformer per ComfyUI's memory mode through its model management (nodes/placement.py): --cpu
    runs it on the CPU, --lowvram/--novram stream every block, otherwise as many blocks stay resident as the reserve
    allows. The placement stays for the next job until ComfyUI needs the memory."""
    return place(handle.patcher, reserve_bytes)


def out_of_memory(handle, stage: str, reserve_bytes: int, size: str,
                  err: BaseException) -> torch.cuda.OutOfMemoryError:
    """The error to raise instead of a bare CUDA out-of-memory: what ran out and the fixes, after giving the
    transformer's GPU memory back so that the next job starts clean. It stays an OutOfMemoryError, so ComfyUI
    also unloads its other models."""
    handle.patcher.release()
    mm.soft_empty_cache()
    auto = " (auto)" if handle.vram_reserve_gb <= 0 else ""
    return torch.cuda.OutOfMemoryError(
        f"FramePack ran out of GPU memory while {stage} at {size} with {reserve_bytes / GiB:.1f} GB kept free for "
        f"activations{auto}. Fixes: raise vram_reserve_gb on Load FramePack Model (try "
        f"{max(reserve_bytes / GiB + 2, 4):.0f}), set its weight_storage to fp8_e4m3fn (half the weight memory), "
        f"or use a smaller resolution or window_size; ComfyUI's --lowvram streams every block. The model's GPU "
        f"memory was given back, so the next run starts clean. ({err})")


class Progress:
    """A ComfyUI progress bar sized by the counts it is given. Its hook is also ComfyUI's interrupt point: it raises
    ComfyUI's interrupt exception when the user pressed Cancel."""

    def __init__(self):
        self.bar = None

    def update(self, done: int, total: int, preview=None) -> None:
        if self.bar is None:
            self.bar = comfy.utils.ProgressBar(total)
        self.bar.update_absolute(done, total, preview)


class SamplingProgress:
    """One ComfyUI progress bar over all sections' steps (counted by the step callback itself), with a preview of
    the newest latent frame."""

    def __init__(self):
        self.progress = Progress()
        self.previewer = latent_preview.get_previewer(mm.get_torch_device(), comfy.latent_formats.HunyuanVideo())

    def __call__(self, section: int, sections: int, step: int, steps: int, x0) -> None:
        preview = None
        if self.previewer is not None:
            preview = self.previewer.decode_latent_to_preview_image("JPEG", x0[:, :, -1:].float().cpu())
        self.progress.update(section * steps + step + 1, sections * steps, preview)


def interrupt_requested() -> bool:
    return mm.processing_interrupted()


def raise_if_interrupted(err: Interrupted):
    """Turns the core's Interrupted into ComfyUI's own interrupt exception, so the UI shows 'interrupted'."""
    mm.throw_exception_if_processing_interrupted()
    raise err
