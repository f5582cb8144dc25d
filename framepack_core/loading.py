"""Loading FramePack transformers from the files users already have, and saving them.

Accepted: a FramePack `.gguf` file (gguf_file.py, gguf_loading.py: quantized weights stay quantized), a single
`.safetensors` file (bf16, fp16, fp32, or the community fp8_e4m3fn / fp8_e5m2 files where
the block weights are fp8 and the rest bf16), or a diffusers folder (`config.json` + sharded
`diffusion_pytorch_model*.safetensors` + `*.safetensors.index.json`, as on the Hugging Face hub). Nothing else is
read: pickle-based files (.ckpt/.pt/.bin/.pth) are refused without being opened by torch.

The model is built on the meta device and the tensors are assigned as they are read and converted, so peak RAM
stays near one copy of the weights in their storage dtype.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .attention import resolve_backend
from .config import RELEASED, FramePackConfig
from .errors import CheckpointError, InputError, NotFramePackError
from .gguf_file import read_gguf
from .gguf_loading import place as place_gguf
from .limits import AUTO, DEFAULT_ATTENTION, DEFAULT_COMPUTE_DTYPE, MAX_CHECKPOINT_JSON_BYTES, STORAGE_CHOICES
from .safetensors_file import (FP8_DTYPES, FP8_STORAGE, UNREADABLE, check_file, describe_error, is_pickle_name,
                              unreadable)
from .transformer import FramePackTransformer

log = logging.getLogger(__name__)

KEY_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.", "model.")
CONFIG_METADATA_KEY = "framepack_config"
# Names of the dtypes weights may be converted to; the model computes only in limits.COMPUTE_DTYPE_NAMES.
COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_FIX = "Download the real .safetensors version of the model instead."
# fp16 files load fine (their weights are converted); fp16 as the dtype the model COMPUTES in is refused.
FP16_COMPUTE_REFUSED = ("compute dtype fp16 is not supported: HunyuanVideo-family activations exceed fp16's range "
                        "(ComfyUI itself runs these models only in bf16 or fp32). Use bf16 (fp32 also works; fp16 "
                        "weight files load fine with either)")

# Only the big matmul weights inside the blocks may be stored in fp8; norms, biases, embedders, the output head
# stay in the compute dtype (they are small and precision-sensitive).
_FP8_ELIGIBLE = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.\d+\.(?!.*norm).*\.weight$")


@dataclass
class CheckpointSource:
    path: Path
    files: list[Path]  # the safetensors files holding the weights
    config: FramePackConfig | None  # from config.json or our own metadata; None = infer from shapes
    label: str  # how the source is named in messages


def is_fp8_eligible(key: str) -> bool:
    return bool(_FP8_ELIGIBLE.match(key))


def detect_variant(path: str | Path) -> str:
    """FramePackI2V_HY and F1 have identical tensors, so the variant comes from the name users download them
    under ("FramePack_F1_I2V_HY_20250503", "FramePackI2V_HY_fp8_e4m3fn", ...): an "F1" token means F1."""
    name = Path(path).name if Path(path).suffix == ".safetensors" else str(path)
    return "F1" if re.search(r"(?:^|[^a-z0-9])f1(?:[^a-z0-9]|$)", Path(name).as_posix().lower()) else "I2V_HY"


# -- finding and checking files --------------------------------------------------------------------------------

def _unreadable(path: Path, err: Exception) -> CheckpointError:
    return unreadable(path, err, "model", _FIX)


def resolve_source(path: str | Path) -> CheckpointSource:
    path = Path(path)
    if path.is_dir():
        return _resolve_folder(path)
    check_file(path, "model", _FIX)
    if path.suffix.lower() not in (".safetensors", ".sft"):
        raise CheckpointError(f"{path.name} is not a .safetensors file; FramePack models load only from .safetensors")
    config = None
    metadata = _read_metadata(path)
    if metadata and CONFIG_METADATA_KEY in metadata:
        try:
            data = json.loads(metadata[CONFIG_METADATA_KEY])
        except ValueError as err:
            raise CheckpointError(f"{path.name}: the config in its safetensors metadata is not valid JSON ({err}); "
                                  "download the file again") from err
        config = _config_from(data, path.name, "safetensors metadata")
    return CheckpointSource(path, [path], config, path.name)


def _config_from(data: object, label: str, where: str) -> FramePackConfig:
    try:
        return FramePackConfig.from_json_dict(data)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{label}: its config ({where}) is not usable: {err}. It does not describe a FramePack "
                              "transformer: download the model again (or remove a config.json that belongs to "
                              "another model, so the sizes are read from the weights)") from err


def _read_json(path: Path, label: str) -> object:
    """A config.json or shard index, refused unread when larger than any real one."""
    try:
        size = path.stat().st_size
        if size > MAX_CHECKPOINT_JSON_BYTES:
            raise CheckpointError(f"{label}: {path.name} is larger than {MAX_CHECKPOINT_JSON_BYTES >> 20} MiB "
                                  f"({size} bytes); real ones are a few KB: download it again")
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        detail = err.strerror if isinstance(err, OSError) else err
        raise CheckpointError(f"{label}: {path.name} is not valid JSON ({detail}); download it again") from err


def _is_plain_name(name: object) -> bool:
    """A file name with no folder part, as the shards of a diffusers folder are: the index cannot reach outside."""
    return (isinstance(name, str) and name.lower().endswith(".safetensors") and name not in (".", "..")
            and not any(c in name for c in "/\\:") and not any(ord(c) < 32 or ord(c) == 127 for c in name))


def _shard_names(index: object, index_name: str, label: str) -> list[str]:
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise CheckpointError(f"{label}: the index {index_name} is not a diffusers weight index (an object whose "
                              "weight_map maps tensor names to shard files); download it again")
    names = sorted(set(weight_map.values()))
    for name in names:
        if not _is_plain_name(name):
            raise CheckpointError(f"{label}: the index {index_name} names the shard {name!r}, which is not a plain file "
                                  "name in the folder (shards are .safetensors files next to the index, e.g. "
                                  "diffusion_pytorch_model-00001-of-00003.safetensors); download the index again")
    return names


def _resolve_folder(folder: Path) -> CheckpointSource:
    if (folder / "transformer").is_dir() and not list(folder.glob("*.safetensors*")):
        folder = folder / "transformer"  # a whole diffusers pipeline repo was given
    config = None
    if (folder / "config.json").is_file():
        config = _config_from(_read_json(folder / "config.json", folder.name), folder.name, "config.json")
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        shard_names = _shard_names(_read_json(indexes[0], folder.name), indexes[0].name, folder.name)
        missing = [n for n in shard_names if not (folder / n).is_file()]
        if missing:
            raise CheckpointError(
                f"{folder.name}: the index {indexes[0].name} lists {len(shard_names)} shards but {len(missing)} are "
                f"missing: {', '.join(missing)}. Download the missing shard files into the folder {folder.name}.")
        files = [folder / n for n in shard_names]
    else:
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            pickles = [p.name for p in folder.iterdir() if is_pickle_name(p)]
            hint = f" (found pickle files {', '.join(pickles)}, which are refused)" if pickles else ""
            raise CheckpointError(f"folder {folder.name} holds no .safetensors weights{hint}")
    for f in files:
        check_file(f, "model", _FIX)
    return CheckpointSource(folder, files, config, folder.name)


def _read_metadata(path: Path) -> dict | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata()
    except UNREADABLE as err:
        raise _unreadable(path, err) from err


def _strip_prefix(keys: list[str]) -> str:
    for prefix in KEY_PREFIXES:
        if keys and all(k.startswith(prefix) for k in keys):
            return prefix
    return ""


def read_shapes(source: CheckpointSource) -> tuple[dict[str, tuple[tuple[int, ...], str, Path]], str]:
    """(key -> (shape, dtype name, file), prefix): keys without the wrapper prefix some tools add (e.g. ComfyUI's
    model.diffusion_model.), and that prefix."""
    entries = {}
    for file in source.files:
        try:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    sl = f.get_slice(key)
                    entries[key] = (tuple(sl.get_shape()), sl.get_dtype(), file)
        except UNREADABLE as err:
            raise _unreadable(file, err) from err
    prefix = _strip_prefix(list(entries))
    return {k[len(prefix):]: v for k, v in entries.items()}, prefix


# -- recognising the model -------------------------------------------------------------------------------------

def _group(key: str) -> str:
    parts = key.split(".")
    return f"{parts[0]}.*" if not (len(parts) > 1 and parts[1].isdigit()) else f"{parts[0]}.N.*"


def _describe_groups(keys) -> str:
    counts = Counter(_group(k) for k in keys)
    return ", ".join(f"{g} ({n})" for g, n in sorted(counts.items(), key=lambda kv: -kv[1])[:6])


def _is_lora(keys: set[str]) -> bool:
    return any("lora" in k for k in keys)


def _guess_family(keys: set[str]) -> str | None:
    if _is_lora(keys):  # first: a LoRA's keys also carry the names of the layers it changes
        return "a LoRA, which is applied on top of a FramePack model rather than loaded as one"
    if any(k.startswith(("double_blocks.", "img_in.", "txt_in.")) for k in keys):
        if any(k.startswith("txt_in.individual_token_refiner") for k in keys):
            return "a HunyuanVideo transformer (original Tencent naming), not FramePack"
        return "a FLUX-style transformer, not FramePack"
    if any(k.startswith(("blocks.0.self_attn", "patch_embedding.", "text_embedding.")) for k in keys):
        return "a Wan video transformer, not FramePack"
    if any(k.startswith(("transformer_blocks.", "single_transformer_blocks.")) for k in keys) and \
            not any(k.startswith(("clean_x_embedder.", "image_projection.")) for k in keys):
        return "a HunyuanVideo transformer in diffusers naming (no FramePack history embedder / image projection)"
    if any(k.startswith(("encoder.", "decoder.")) for k in keys):
        return "a VAE, not a diffusion transformer"
    if any(k.startswith(("vision_model.", "text_model.", "model.layers.")) for k in keys):
        return "a text or image encoder, not a diffusion transformer"
    return None


def infer_config(shapes: dict[str, tuple], label: str) -> FramePackConfig:
    """Sizes of the model from its tensor shapes; the RoPE split is the released one for head dim 128."""
    def shape(key):
        if key not in shapes:
            family = _guess_family(set(shapes))
            raise NotFramePackError(
                f"{label} is not a FramePack transformer" + (f": it looks like {family}" if family else "") +
                f". Missing tensor {key!r}; its tensors are {_describe_groups(shapes)}. Use the FramePackI2V_HY or "
                "FramePack F1 transformer weights (e.g. FramePackI2V_HY_bf16.safetensors).", family,
                _is_lora(set(shapes)))
        return shapes[key][0]

    dim, in_channels = shape("x_embedder.proj.weight")[:2]
    head_dim = shape("transformer_blocks.0.attn.norm_q.weight")[0]
    count = lambda prefix: len({k.split(".")[1] for k in shapes if k.startswith(prefix)})  # noqa: E731
    shape("clean_x_embedder.proj_4x.weight")
    if head_dim == RELEASED.attention_head_dim:
        rope = RELEASED.rope_axes_dim
    else:
        raise CheckpointError(f"{label}: head dim {head_dim} is not the released 128 and the file carries no config "
                              "(config.json or safetensors metadata) giving its RoPE axes")
    try:
        return _inferred(shape, count, shapes, dim, in_channels, head_dim, rope)
    except ValueError as err:
        raise CheckpointError(f"{label}: the sizes its tensors give are not a FramePack transformer's ({err}); use "
                              "the FramePackI2V_HY or FramePack F1 transformer files") from err


def _inferred(shape, count, shapes, dim, in_channels, head_dim, rope) -> FramePackConfig:
    return FramePackConfig(
        in_channels=in_channels, out_channels=shape("proj_out.weight")[0] // 4,
        num_attention_heads=dim // head_dim, attention_head_dim=head_dim,
        num_layers=count("transformer_blocks."), num_single_layers=count("single_transformer_blocks."),
        num_refiner_layers=len({k.split(".")[3] for k in shapes if k.startswith("context_embedder.token_refiner.")}),
        mlp_ratio=shape("transformer_blocks.0.ff.net.0.proj.weight")[0] / dim,
        text_embed_dim=shape("context_embedder.proj_in.weight")[1],
        pooled_projection_dim=shape("time_text_embed.text_embedder.linear_1.weight")[1],
        image_proj_dim=shape("image_projection.up.weight")[1], rope_axes_dim=rope)


def _check_config_matches(config: FramePackConfig, shapes: dict[str, tuple], label: str) -> None:
    """Compares a config with the weights' own layer counts and widths before any model is built from it, so a
    config cannot make the loader build a model the file does not hold."""
    if "x_embedder.proj.weight" not in shapes:
        return  # not FramePack's tensors at all: _check_keys says what the file looks like

    def held(prefix: str, part: int) -> int:
        return len({k.split(".")[part] for k in shapes if k.startswith(prefix)})

    fix = ("the config belongs to another model: download the model's own config.json (or remove it, so the sizes "
           "are read from the weights)")
    for field, what, prefix, part in (("num_layers", "transformer_blocks", "transformer_blocks.", 1),
                                      ("num_single_layers", "single_transformer_blocks", "single_transformer_blocks.", 1),
                                      ("num_refiner_layers", "token refiner blocks",
                                       "context_embedder.token_refiner.refiner_blocks.", 3)):
        count = held(prefix, part)
        if getattr(config, field) != count:
            raise CheckpointError(f"{label}: its config says {field} {getattr(config, field)} but the weights hold "
                                  f"{count} {what}; {fix}")
    width = shapes["x_embedder.proj.weight"][0][0]
    if config.inner_dim != width:
        raise CheckpointError(f"{label}: its config says num_attention_heads {config.num_attention_heads} x "
                              f"attention_head_dim {config.attention_head_dim} (inner width {config.inner_dim}) but "
                              f"the weights hold inner width {width}; {fix}")
    norm = shapes.get("transformer_blocks.0.attn.norm_q.weight")
    if norm is not None and norm[0][0] != config.attention_head_dim:
        raise CheckpointError(f"{label}: its config says attention_head_dim {config.attention_head_dim} but the "
                              f"weights hold heads of width {norm[0][0]}; {fix}")


def _check_keys(expected: dict[str, tuple], found: dict[str, tuple], label: str) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k][0]))
    if not (missing or unexpected or wrong):
        return
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors: {_describe_groups(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensors: {_describe_groups(unexpected)}")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} tensors have other shapes (e.g. {k}: file {list(found[k][0])}, "
                        f"model {list(expected[k])})")
    family = _guess_family(set(found))
    raise NotFramePackError(f"{label} does not match the FramePack transformer" +
                            (f" (it looks like {family})" if family else "") + ": " + "; ".join(problems) +
                            ". Use the FramePackI2V_HY or FramePack F1 transformer files.", family, _is_lora(set(found)))


# -- loading ---------------------------------------------------------------------------------------------------

def _storage_dtype(key: str, file_dtype: torch.dtype, compute: torch.dtype, storage: str) -> torch.dtype:
    if not is_fp8_eligible(key):
        return compute
    if storage in FP8_STORAGE:
        return FP8_STORAGE[storage]
    if storage == AUTO and file_dtype in FP8_STORAGE.values():
        return file_dtype
    return compute


_FP8_FILE_DTYPES = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def stored_bytes(path: str | Path, *, compute_dtype: str | torch.dtype = DEFAULT_COMPUTE_DTYPE,
                 storage: str = AUTO) -> int | None:
    """Bytes the weights take once load_framepack_model has loaded them with these options, read from the files'
    headers without loading anything (None for a GGUF file)."""
    if Path(path).suffix.lower() == ".gguf":
        return None
    compute = COMPUTE_DTYPES.get(compute_dtype, compute_dtype) if isinstance(compute_dtype, str) else compute_dtype
    found, _ = read_shapes(resolve_source(path))
    total = 0
    for key, (shape, dtype_name, _) in found.items():
        # only an fp8 file dtype changes what auto storage keeps; any other file dtype becomes the compute dtype
        dtype = _storage_dtype(key, _FP8_FILE_DTYPES.get(dtype_name, compute), compute, storage)
        total += math.prod(shape) * dtype.itemsize
    return total


def _convert(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if tensor.dtype == dtype:
        return tensor
    if dtype in FP8_DTYPES:
        limit = torch.finfo(dtype).max
        return tensor.float().clamp_(-limit, limit).to(dtype)
    return tensor.to(dtype)


def load_framepack_model(path: str | Path, *, compute_dtype: str | torch.dtype = DEFAULT_COMPUTE_DTYPE,
                         storage: str = AUTO, attention_backend: str = DEFAULT_ATTENTION,
                         device: str | torch.device = "cpu") -> FramePackTransformer:
    """Loads a FramePack transformer.

    compute_dtype: "bf16" | "fp32" (or a torch dtype): the dtype activations and matmuls run in (fp16 is refused:
    FP16_COMPUTE_REFUSED says why).
    A `.gguf` path loads a FramePack GGUF (gguf_file.py): "auto" keeps its quantized weights quantized, "compute"
    dequantizes them at load, "fp8_*" dequantizes the block weights to fp8.
    storage: "auto" keeps fp8 files in fp8 and stores everything else in the compute dtype; "compute" stores all in
    the compute dtype (an fp8 file is upcast: more memory, no precision regained); "fp8_e4m3fn"/"fp8_e5m2" store the
    block matmul weights in fp8, upcast one layer at a time at the matmul.
    """
    compute = COMPUTE_DTYPES.get(compute_dtype, compute_dtype) if isinstance(compute_dtype, str) else compute_dtype
    if compute == torch.float16:
        raise InputError(FP16_COMPUTE_REFUSED)
    if compute not in COMPUTE_DTYPES.values():
        raise InputError(f"compute dtype {compute_dtype!r} is not one of {', '.join(COMPUTE_DTYPES)}")
    if storage not in STORAGE_CHOICES:
        raise InputError(f"storage {storage!r} is not one of {', '.join(STORAGE_CHOICES)}")
    attention_backend = resolve_backend(attention_backend)
    if Path(path).suffix.lower() == ".gguf":
        return _load_gguf(Path(path), compute, storage, attention_backend, device)
    source = resolve_source(path)
    found, prefix = read_shapes(source)
    config = source.config or infer_config(found, source.label)
    _check_config_matches(config, found, source.label)
    with torch.device("meta"):
        model = FramePackTransformer(config, attention_backend)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _check_keys(expected, found, source.label)

    file_dtypes = {dt for _, dt, _ in found.values()}
    if storage == "compute" and {"F8_E4M3", "F8_E5M2"} & file_dtypes:
        log.warning("%s stores fp8 weights; upcasting them to %s uses more memory but cannot restore precision",
                    source.label, compute)

    state = {}
    for file in source.files:
        try:
            with safe_open(str(file), framework="pt", device="cpu") as f:
                for raw_key in f.keys():
                    key = raw_key[len(prefix):]
                    tensor = f.get_tensor(raw_key)
                    state[key] = _convert(tensor, _storage_dtype(key, tensor.dtype, compute, storage)).to(device)
        except UNREADABLE as err:
            raise CheckpointError(f"{file.name} could not be read completely (truncated or corrupt: "
                                  f"{describe_error(err, file)}); download it again.") from err
    return _finish(model, state, compute)


def _finish(model: FramePackTransformer, state: dict, compute: torch.dtype) -> FramePackTransformer:
    model.load_state_dict(state, strict=True, assign=True)
    model.compute_dtype = compute
    model.requires_grad_(False).eval()
    return model


def _load_gguf(path: Path, compute: torch.dtype, storage: str, attention_backend: str,
               device: str | torch.device) -> FramePackTransformer:
    """A FramePack GGUF: checked as a .safetensors file is (config, keys, shapes) before anything is allocated;
    storage "auto" keeps quantized weights quantized (gguf_loading.py)."""
    source = read_gguf(path)
    prefix = _strip_prefix(list(source.tensors))
    found = {k[len(prefix):]: (t.shape, t.dtype_name, path) for k, t in source.tensors.items()}
    config = _config_from(source.config, path.name, "GGUF metadata") if source.config is not None else \
        infer_config(found, path.name)
    _check_config_matches(config, found, path.name)
    with torch.device("meta"):
        model = FramePackTransformer(config, attention_backend)
    _check_keys({k: tuple(v.shape) for k, v in model.state_dict().items()}, found, path.name)
    convert = lambda key, t: _convert(t, _storage_dtype(key, t.dtype, compute, storage))  # noqa: E731
    model = _finish(model, place_gguf(model, source, prefix, storage == AUTO, convert, device), compute)
    model.file_variant = source.variant
    return model


# -- saving ----------------------------------------------------------------------------------------------------

def save_framepack_model(model_or_state: FramePackTransformer | dict, path: str | Path, *,
                         config: FramePackConfig | None = None, storage: str | None = None,
                         max_shard_bytes: int | None = None) -> list[Path]:
    """Writes a single .safetensors file, or a diffusers-style sharded folder when `max_shard_bytes` is given.

    storage: None keeps dtypes; "bf16"/"fp16"/"fp32" converts everything; "fp8_e4m3fn"/"fp8_e5m2" converts the
    block matmul weights to fp8 and the rest to bf16 (the layout of the community fp8 single files).
    The config is recorded (safetensors metadata, or config.json for folders) so any size loads back.
    """
    if isinstance(model_or_state, FramePackTransformer):
        config = config or model_or_state.config
        state = model_or_state.state_dict()
    else:
        state = dict(model_or_state)
    converted = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        if storage in FP8_STORAGE:
            tensor = _convert(tensor, FP8_STORAGE[storage] if is_fp8_eligible(key) else torch.bfloat16)
        elif storage is not None:
            tensor = _convert(tensor, COMPUTE_DTYPES[storage])
        converted[key] = tensor.contiguous()
    config_json = json.dumps({"_class_name": "HunyuanVideoTransformer3DModelPacked", "has_image_proj": True,
                              "has_clean_x_embedder": True, **(config.to_diffusers_kwargs() if config else {})})
    path = Path(path)
    if max_shard_bytes is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(converted, str(path), metadata={CONFIG_METADATA_KEY: config_json} if config else None)
        return [path]
    path.mkdir(parents=True, exist_ok=True)
    shards, current, size = [], {}, 0
    for key in sorted(converted):
        nbytes = converted[key].numel() * converted[key].element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[key] = converted[key]
        size += nbytes
    shards.append(current)
    weight_map, files = {}, []
    for i, shard in enumerate(shards, start=1):
        name = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / name))
        files.append(path / name)
        weight_map.update({k: name for k in shard})
    (path / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": sum(t.numel() * t.element_size() for t in converted.values())},
                    "weight_map": weight_map}, indent=1))
    if config:
        (path / "config.json").write_text(config_json)
    return files
