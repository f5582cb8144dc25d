"""Glue between ComfyUI's runtime (devices, memory, progress, previews, interrupts) and framepack_core."""

from __future__ import annotations

import contextlib
import logging

import comfy.latent_formats
import comfy.model_management as mm
import comfy.utils
import latent_preview

from ..framepack_core.conditioning import TextConditioning
from ..framepack_core.errors import InputError, Interrupted
from ..framepack_core.offload import GiB, BlockStreamer
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


@contextlib.contextmanager
def model_on_device(handle):
    """Frees other models' VRAM, then places the transformer per ComfyUI's memory mode: --cpu runs it on the CPU,
    --lowvram/--novram stream every block, otherwise as many blocks stay resident as the reserve allows."""
    device = mm.get_torch_device()
    streamer = None
    if device.type != "cpu":
        mm.unload_all_models()
        mm.soft_empty_cache()
        force = mm.vram_state in (mm.VRAMState.LOW_VRAM, mm.VRAMState.NO_VRAM)
        streamer = BlockStreamer(handle.transformer, device, reserve_bytes=int(handle.vram_reserve_gb * GiB),
                                 force_stream=force)
    try:
        yield device
    finally:
        if streamer is not None:
            streamer.release()
            mm.soft_empty_cache()


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
