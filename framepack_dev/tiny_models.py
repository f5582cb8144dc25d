"""Tiny real weights for end-to-end runs of the shipped workflows on a CPU ComfyUI (the tests and the demo's smoke
run).

Everything from our loader to the MP4 is real: a random-init FramePack transformer with the released
architecture and key names (tiny sizes) saved as .safetensors and loaded by our loader, a random TAEHV loaded by
ComfyUI's native VAELoader. Only the 8B text encoder and SigLIP are replaced, by the stand-in nodes (framepack_dev/stand_in_nodes)
(FramePackTestCLIPLoader feeds the native CLIPTextEncode; FramePackTestClipVisionLoader), at the tiny model's sizes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
from PIL import Image

from framepack_core.config import TINY
from framepack_core.loading import save_framepack_model

from .random_weights import tiny_transformer
from .tiny_vae import write_tiny_taehv
from .videos import moving_frames, write_video

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"
TINY_I2V = "FramePackI2V_HY_tiny.safetensors"
TINY_F1 = "FramePack_F1_I2V_HY_tiny.safetensors"
TINY_VAE = "taehv_tiny.safetensors"
START_IMAGE, END_IMAGE = "tiny_start.png", "tiny_end.png"
INPUT_VIDEO = "tiny_input.mov"  # written by install_tiny_models: 45 frames, 64x64, lossless
# text/pooled/image widths of the TINY config, which the stand-in encoders are told to emit
TEXT_DIM, POOLED_DIM, IMAGE_DIM, IMAGE_TOKENS = TINY.text_embed_dim, TINY.pooled_projection_dim, TINY.image_proj_dim, 16


def write_image(path: Path, width: int, height: int, seed: int, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    pixels = np.clip(gradient + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    image.convert(mode).save(path)
    return path


def install_tiny_models(models_dir: Path, input_dir: Path) -> None:
    """Idempotent: tiny I2V + F1 transformers (same weights), tiny TAEHV, two input images."""
    dm = models_dir / "diffusion_models"
    if not (dm / TINY_I2V).exists():
        model = tiny_transformer()
        save_framepack_model(model, dm / TINY_I2V, storage="bf16")
        save_framepack_model(model, dm / TINY_F1, storage="bf16")
    if not (models_dir / "vae" / TINY_VAE).exists():
        write_tiny_taehv(models_dir / "vae" / TINY_VAE)
    write_image(input_dir / START_IMAGE, 96, 64, seed=1)
    write_image(input_dir / END_IMAGE, 80, 80, seed=2)
    if not (input_dir / INPUT_VIDEO).exists():
        write_video(input_dir / INPUT_VIDEO, moving_frames(45, 64, 64, seed=3), 64, 64)


def load_api_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())


def tiny_workflow(name: str, *, num_frames: int = 30, steps: int = 4, width: int = 64, height: int = 64,
                  seed: int = 1, prefix: str | None = None, teacache: float = 0.0, video: str = INPUT_VIDEO,
                  **sampler) -> dict:
    """A shipped API workflow rewritten to run on the tiny weights: model and VAE file names, the two encoder
    loaders swapped for the test stand-ins (same socket types), a small custom resolution and few steps (and the
    input video of an extension workflow)."""
    graph = copy.deepcopy(load_api_workflow(name))
    for node in graph.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "FramePackModelLoader":
            inputs["model"] = TINY_F1 if "F1" in inputs["model"] else TINY_I2V
            inputs["compute_dtype"] = "fp32"
        elif kind == "DualCLIPLoader":
            node["class_type"] = "FramePackTestCLIPLoader"
            node["inputs"] = {"token_dim": TEXT_DIM, "pooled_dim": POOLED_DIM}
        elif kind == "CLIPVisionLoader":
            node["class_type"] = "FramePackTestClipVisionLoader"
            node["inputs"] = {"embed_dim": IMAGE_DIM, "tokens": IMAGE_TOKENS}
        elif kind == "VAELoader":
            inputs["vae_name"] = TINY_VAE
        elif kind in ("LoadImage", "FramePackLoadImage"):
            inputs["image"] = END_IMAGE if node["_meta"]["title"] == "End image" else START_IMAGE
        elif kind in ("FramePackImageConditioning", "FramePackVideoConditioning"):
            inputs.update(resolution="custom", custom_width=width, custom_height=height)
        elif kind in ("LoadVideo", "FramePackLoadVideo"):
            inputs["file"] = video
        elif kind == "FramePackSampler":
            inputs.update(num_frames=num_frames, num_inference_steps=steps, seed=seed, teacache_threshold=teacache,
                          **sampler)
        elif kind == "FramePackVideoCombine" and prefix is not None:
            inputs["filename_prefix"] = prefix
        elif kind == "FramePackParallel":
            inputs["gpus"] = "cpu:2"  # the tests' ComfyUI has no GPU: two CPU ranks run the same code path
    return graph


def node_of(graph: dict, class_type: str, title: str | None = None) -> dict:
    for node in graph.values():
        if node["class_type"] == class_type and (title is None or node["_meta"]["title"] == title):
            return node
    raise KeyError(class_type)
