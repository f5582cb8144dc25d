"""Load FramePack Model and FramePack LoRA nodes."""

from __future__ import annotations

import logging
import os

import comfy.model_management as mm
import folder_paths
from comfy_api.latest import io

from ..framepack_core.attention import BACKENDS
from ..framepack_core.compile import compile_blocks
from ..framepack_core.errors import CheckpointError, InputError, NotFramePackError
from ..framepack_core.fp8 import select_fp8_matmul
from ..framepack_core.limits import (AUTO, COMPILE_MODES, COMPUTE_DTYPE_NAMES, DEFAULT_ATTENTION, DEFAULT_COMPILE_MODE,
                                     DEFAULT_COMPUTE_DTYPE, MAX_LORA_STRENGTH, MAX_LORAS, MAX_VRAM_RESERVE_GB,
                                     STORAGE_CHOICES, VARIANT_CHOICES)
from ..framepack_core.loading import FP16_COMPUTE_REFUSED, detect_variant, load_framepack_model
from ..framepack_core.lora_apply import apply_lora_stack
from ..framepack_core.parallel.spec import ModelSpec
from .placement import FramePackPatcher
from .types import CATEGORY, FramePackLora, FramePackModel, LoraEntry, ModelHandle, check_choices

log = logging.getLogger("FramePack")
INDEX_SUFFIX = ".safetensors.index.json"
GGUF_SUFFIX = ".gguf"


def diffusion_model_choices() -> list[str]:
    """Files in models/diffusion_models, with a sharded diffusers folder listed once (as the folder) instead of
    shard by shard, and GGUF files (which ComfyUI itself does not list there). Pickle files stay listed so that
    choosing one gives a clear refusal, not a silent absence."""
    folders, ggufs = set(), set()
    for root in folder_paths.get_folder_paths("diffusion_models"):
        for dirpath, _, files in os.walk(root, followlinks=True):
            if any(f.endswith(INDEX_SUFFIX) for f in files):
                folders.add(os.path.relpath(dirpath, root).replace(os.sep, "/"))
            ggufs.update(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/") for f in files
                         if f.lower().endswith(GGUF_SUFFIX))
    files = set(folder_paths.get_filename_list("diffusion_models")) | ggufs
    files = [f for f in sorted(files) if not any(f.replace(os.sep, "/").startswith(d + "/") for d in folders)]
    return sorted(folders) + files


NOT_LISTED = ("model {name!r} was not found in models/diffusion_models (only the names the loader lists are "
              "accepted); put FramePackI2V_HY (file or sharded folder) there and refresh")


def _is_listed_name(name: object, choices: list[str]) -> bool:
    """A name the loader lists, and nothing that could step out of the models folder even if it were listed."""
    if not isinstance(name, str) or name not in choices:
        return False
    parts = name.replace("\\", "/").split("/")
    return not (os.path.isabs(name) or ".." in parts or any(ord(c) < 32 for c in name))


def check_model_name(name: object) -> bool | str:
    """For validate_inputs: True, or the message naming the model input."""
    return True if _is_listed_name(name, diffusion_model_choices()) else NOT_LISTED.format(name=name)


def resolve_model_path(name: str) -> str:
    """The file or folder of a listed model name. Only names in diffusion_model_choices() are accepted, so an API
    caller's string never names a path of its own choosing. Links inside models/diffusion_models are followed:
    model folders on other disks are commonly linked there, and only someone who can write to the models folder
    can make such a link."""
    if not _is_listed_name(name, diffusion_model_choices()):
        raise InputError(NOT_LISTED.format(name=name))
    for root in folder_paths.get_folder_paths("diffusion_models"):
        candidate = os.path.join(root, name)
        if os.path.isdir(candidate):
            return candidate
    path = folder_paths.get_full_path("diffusion_models", name)
    if path is None:
        raise InputError(NOT_LISTED.format(name=name))
    return path


def check_lora_name(name: object) -> bool | str:
    """For validate_inputs: True when the name is one of models/loras' files, else the message."""
    if isinstance(name, str) and name in folder_paths.get_filename_list("loras"):
        return True
    return (f"lora_name {name!r} was not found in models/loras (only the names the node lists are accepted); put "
            "the LoRA .safetensors file there and refresh")


def load_transformer(path: str, **options):
    """load_framepack_model; a file that holds another model gets the hint where FramePack models go in ComfyUI,
    and for a LoRA, which node applies it."""
    try:
        return load_framepack_model(path, **options)
    except NotFramePackError as err:
        hint = " To use a LoRA, chain it through the FramePack LoRA node into the lora input." if err.is_lora else ""
        raise CheckpointError(f"{err} Put FramePackI2V_HY or FramePack F1 in models/diffusion_models.{hint}") from err


class FramePackModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackModelLoader", display_name="Load FramePack Model", category=CATEGORY,
            description="Loads FramePackI2V_HY or FramePack F1 from models/diffusion_models: a single .safetensors "
                        "file (bf16/fp16/fp8), a sharded diffusers folder, or a FramePack .gguf file (Q8_0 to Q4, "
                        "kept quantized; needs pip install gguf).",
            inputs=[
                io.Combo.Input("model", options=diffusion_model_choices(),
                               tooltip="A .safetensors file, a sharded diffusers folder or a FramePack .gguf file in "
                                       "models/diffusion_models"),
                io.Combo.Input("variant", options=list(VARIANT_CHOICES), default=AUTO,
                               tooltip="auto: a GGUF's recorded variant; else F1 when the name contains 'F1', else "
                                       "FramePackI2V_HY. I2V_HY samples "
                                       "sections backwards (anti-drifting), F1 forwards."),
                io.Combo.Input("compute_dtype", options=list(COMPUTE_DTYPE_NAMES), default=DEFAULT_COMPUTE_DTYPE,
                               tooltip="bf16; fp32 doubles the activation memory (and the weights', unless fp8). No "
                                       "fp16: HunyuanVideo-family activations exceed its range (fp16 FILES load fine)"),
                io.Combo.Input("weight_storage", options=list(STORAGE_CHOICES), default=AUTO,
                               tooltip="auto keeps fp8 files in fp8, GGUF weights quantized (dequantized at each "
                                       "matmul) and others in the compute dtype; compute dequantizes/upcasts all "
                                       "at load; fp8_* stores "
                                       "the block weights in fp8 (half the memory). On GPUs of compute capability "
                                       "8.9+ (RTX 40xx, H100) e4m3fn weights multiply in fp8, elsewhere they are "
                                       "upcast at each matmul"),
                io.Combo.Input("attention", options=list(BACKENDS), default=DEFAULT_ATTENTION,
                               tooltip="flash_attn / sage are used when installed, else PyTorch SDPA"),
                io.Float.Input("vram_reserve_gb", default=0.0, min=0.0, max=MAX_VRAM_RESERVE_GB, step=0.5,
                               tooltip="GPU memory kept free for activations; blocks that do not fit are streamed "
                                       "from CPU memory. 0 = auto: derived from each job's resolution and window "
                                       "(about 2.4 GB at 640x608, 4.9 GB at 1280x720); raise it if you get "
                                       "out-of-memory errors"),
                io.Boolean.Input("pin_memory", default=False,
                                 tooltip="Page-locks the CPU copy of the blocks that stream, so their copies to "
                                         "the GPU overlap compute. Costs RAM: those blocks' bytes are locked (up to "
                                         "24 GB in bf16, 12 GB in fp8) and cannot be swapped out; leave off with "
                                         "less than 64 GB of RAM"),
                FramePackLora.Input("lora", optional=True),
                # optional, so workflows saved before they existed load unchanged (compile off)
                io.Boolean.Input("torch_compile", default=False, optional=True,
                                 tooltip="Compile the transformer blocks with torch.compile: faster steps after a "
                                         "one-time compilation of about a minute (2 graphs, reused by all 60 blocks "
                                         "and every section); needs Triton on NVIDIA GPUs"),
                io.Combo.Input("compile_mode", options=list(COMPILE_MODES), default=DEFAULT_COMPILE_MODE,
                               optional=True,
                               tooltip="default: quick to compile. max-autotune-no-cudagraphs: benchmarks kernel "
                                       "choices, longer compilation, sometimes faster steps"),
            ],
            outputs=[FramePackModel.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, model, variant, compute_dtype, weight_storage, attention,
                        compile_mode=DEFAULT_COMPILE_MODE):
        listed = check_model_name(model)
        if listed is not True:
            return listed
        if compute_dtype == "fp16":
            return FP16_COMPUTE_REFUSED
        return check_choices(variant=(variant, VARIANT_CHOICES), compute_dtype=(compute_dtype, COMPUTE_DTYPE_NAMES),
                             weight_storage=(weight_storage, STORAGE_CHOICES), attention=(attention, BACKENDS),
                             compile_mode=(compile_mode, COMPILE_MODES))

    @classmethod
    def execute(cls, model, variant, compute_dtype, weight_storage, attention, vram_reserve_gb, pin_memory,
                lora=None, torch_compile=False, compile_mode=DEFAULT_COMPILE_MODE):
        path = resolve_model_path(model)
        transformer = load_transformer(path, compute_dtype=compute_dtype, storage=weight_storage,
                                       attention_backend=attention)
        recorded = getattr(transformer, "file_variant", None)  # a GGUF's metadata
        chosen = (recorded or detect_variant(model)) if variant == AUTO else variant
        loras = list(lora or [])
        if loras:  # one file in memory at a time; a LoRA chained twice is applied once at the summed strength
            report = apply_lora_stack(transformer, [(e.path, e.strength) for e in loras])
            log.info("FramePack LoRA: %s", report)
        device = mm.get_torch_device()
        select_fp8_matmul(transformer, device)
        if torch_compile:
            compile_blocks(transformer, compile_mode, device=device)
        log.info("FramePack: loaded %s as %s (%s compute, %s storage, compile %s)", model, chosen, compute_dtype,
                 weight_storage, compile_mode if torch_compile else "off")
        patcher = FramePackPatcher(transformer, model, pin_memory=pin_memory)
        # what a parallel worker needs to load the same model on its own GPU (nodes/parallel.py)
        spec = ModelSpec(path, compute_dtype, weight_storage, attention, tuple((e.path, e.strength) for e in loras),
                         compile_mode if torch_compile else None)
        return io.NodeOutput(ModelHandle(transformer, chosen, model, vram_reserve_gb, loras, patcher, spec))


class FramePackLoraSelect(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackLoraSelect", display_name="FramePack LoRA", category=CATEGORY,
            description="Adds a HunyuanVideo / FramePack LoRA (diffusers, PEFT or musubi-tuner format) to the stack; "
                        "chain several. Applied at full strength also to fp8 weights.",
            inputs=[
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list("loras")),
                io.Float.Input("strength", default=1.0, min=-MAX_LORA_STRENGTH, max=MAX_LORA_STRENGTH, step=0.01),
                FramePackLora.Input("previous", optional=True),
            ],
            outputs=[FramePackLora.Output(display_name="lora")],
        )

    @classmethod
    def validate_inputs(cls, lora_name):
        return check_lora_name(lora_name)

    @classmethod
    def execute(cls, lora_name, strength, previous=None):
        listed = check_lora_name(lora_name)
        if listed is not True:
            raise InputError(listed)
        stack = [*(previous or []), LoraEntry(folder_paths.get_full_path_or_raise("loras", lora_name), lora_name,
                                              strength)]
        names = {entry.name for entry in stack}
        if len(names) > MAX_LORAS:
            raise InputError(f"this LoRA stack holds {len(names)} different LoRAs; at most {MAX_LORAS} are applied at "
                             "once: remove some FramePack LoRA nodes (a LoRA chained twice counts once)")
        return io.NodeOutput(stack)
