"""The model files FramePack needs: which folder of ComfyUI's models/ each goes in, where to download it, and one
message that lists what a server lacks. The demo (scripts/demo.py, which looks in the models folder itself) and the
client (which reads the server's refusal of a prompt) both print missing models with :func:`missing_models_text`.

A ComfyUI without the weights refuses the prompt with one error per loader input (``Value not in list: clip_name1:
'clip_l.safetensors' not in []``), and FramePack Load Model repeats its message once per input:
:func:`missing_models` turns those into one entry per file and leaves the rest of the refusal alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .terminal import printable

# Where each model folder's files come from (one definition: the demo and the client print it).
MODEL_SOURCES = {
    "diffusion_models": "https://huggingface.co/Kijai/HunyuanVideo_comfy (FramePackI2V_HY_bf16.safetensors 25.7 GB, "
                        "FramePackI2V_HY_fp8_e4m3fn.safetensors 13.3 GB, "
                        "FramePack_F1_I2V_HY_20250503_*.safetensors) or the sharded folders "
                        "lllyasviel/FramePackI2V_HY, lllyasviel/FramePack_F1_I2V_HY_20250503",
    "text_encoders": "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged split_files/text_encoders "
                     "(clip_l.safetensors 246 MB; llava_llama3_fp16.safetensors 16 GB or llava_llama3_fp8_scaled 9 GB)",
    "vae": "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged split_files/vae "
           "(hunyuan_video_vae_bf16.safetensors 493 MB)",
    "clip_vision": "https://huggingface.co/Comfy-Org/sigclip_vision_384 "
                   "(sigclip_vision_patch14_384.safetensors 857 MB)",
}

# The loader inputs that name a model file: (class_type, input) -> models folder.
LOADER_INPUTS = {
    ("FramePackModelLoader", "model"): "diffusion_models",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
}
# How a server says a loader's file is not there: core loaders' combo check, our loader's validate_inputs.
_NOT_LISTED = ("value_not_in_list", "custom_validation_failed")


@dataclass(frozen=True)
class MissingModel:
    folder: str  # a folder of ComfyUI's models/ (diffusion_models, text_encoders, vae, clip_vision)
    name: str  # the file (or sharded folder) name the workflow asks for
    alternatives: str = ""  # what else would do, e.g. "or llava_llama3_fp8_scaled.safetensors"


def model_folder_paths(answer: Any) -> dict[str, str]:
    """{folder: the server's own directory for it} from ComfyUI's ``GET /internal/folder_paths`` answer ({folder:
    [paths]}): the path named like the folder (models/diffusion_models before the legacy models/unet), else the
    first. Anything malformed is left out (the message then says models/<folder>)."""
    paths = {}
    for folder in MODEL_SOURCES:
        listed = answer.get(folder) if isinstance(answer, Mapping) else None
        if isinstance(listed, list) and listed and all(isinstance(p, str) for p in listed):
            named = [p for p in listed if p.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] == folder]
            paths[folder] = printable((named or listed)[0][:500])
    return paths


def _detail_text(item: Mapping[str, Any]) -> str:
    """A custom validation message without ComfyUI's "<input> - " prefix (it repeats it per input)."""
    details = str(item.get("details") or "")
    name = str((item.get("extra_info") or {}).get("input_name") or "")
    return details[len(name) + 3:] if name and details.startswith(f"{name} - ") else details


def missing_models(node_errors: Mapping[str, Any], graph: Mapping[str, dict]) -> tuple[list[MissingModel], dict]:
    """(the model files a refused prompt lacks, the node errors left once those are taken out). A file counts as
    missing when the server refused a loader input of ``graph`` (the prompt sent) with a value-not-in-list or a
    custom validation error; the name is read from ``graph``, never from the server's text. The other errors a
    loader repeats with the same message (FramePack Load Model: once per input) go with it."""
    missing: list[MissingModel] = []
    rest: dict = {}
    for node_id, info in (node_errors or {}).items():
        errors = info.get("errors") if isinstance(info, Mapping) else None
        node = graph.get(node_id) or {}
        kind = node.get("class_type")
        if not isinstance(errors, list) or not any((kind, i) in LOADER_INPUTS for i in node.get("inputs", {})):
            rest[node_id] = info
            continue
        repeated, kept = set(), []
        for item in errors:
            item = item if isinstance(item, Mapping) else {}
            input_name = (item.get("extra_info") or {}).get("input_name")
            value = node.get("inputs", {}).get(input_name)
            if (kind, input_name) in LOADER_INPUTS and item.get("type") in _NOT_LISTED and isinstance(value, str):
                entry = MissingModel(LOADER_INPUTS[(kind, input_name)], value)
                if entry not in missing:
                    missing.append(entry)
                repeated.add(_detail_text(item))
        for item in errors:
            item = item if isinstance(item, Mapping) else {}
            input_name = (item.get("extra_info") or {}).get("input_name")
            if (kind, input_name) in LOADER_INPUTS and item.get("type") in _NOT_LISTED:
                continue
            if item.get("type") == "custom_validation_failed" and _detail_text(item) in repeated:
                continue
            kept.append(item)
        if kept:
            rest[node_id] = {**info, "errors": kept}
    return missing, rest


RESTART = "restart ComfyUI (or press R in its page to refresh the lists) and run again"


def missing_models_text(missing: Iterable[MissingModel], folders: Mapping[str, str] | None = None,
                        where: str = "the ComfyUI server", then: str = RESTART) -> str:
    """One list of the missing files, each with the folder it goes in (the server's or the demo's own directory
    when known, else ComfyUI's models/<folder>), then where to download each folder's files."""
    missing = list(missing)
    folders = folders or {}
    lines = [f"{where} lacks {len(missing)} model file{'s' if len(missing) != 1 else ''}; put "
             f"{'each' if len(missing) != 1 else 'it'} in its folder, then {then}:"]
    for entry in missing:
        place = folders.get(entry.folder) or f"ComfyUI's models/{entry.folder}"
        alternatives = f" ({entry.alternatives})" if entry.alternatives else ""
        lines.append(f"  - {entry.name}{alternatives} -> {place}/")
    lines.append("download them from:")
    for folder in dict.fromkeys(entry.folder for entry in missing):
        lines.append(f"  {folder}/: {MODEL_SOURCES.get(folder, 'the model page that names this file')}")
    return "\n".join(lines)
