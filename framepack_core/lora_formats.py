"""LoRA files for the FramePack transformer: reading them and converting the key formats found in the wild to our
module names (lora_apply.py applies the result to a model).

Read formats (safetensors only; pickle files are refused without being opened):
  a. diffusers / PEFT: `[transformer.|diffusion_model.]<module>.lora_A.weight` / `.lora_B.weight` (or
     `.lora_down.weight` / `.lora_up.weight`), optional `.alpha`; FramePack and HunyuanVideo diffusers names are ours.
  b. musubi-tuner / kohya: `lora_unet_<module with dots as underscores>.lora_down.weight` / `.lora_up.weight` /
     `.alpha`; the underscores are resolved against the model's real module names when applied.
  c. HunyuanVideo with the original Tencent names (`double_blocks.N.img_attn_qkv`, `single_blocks.N.linear1`, ...),
     dotted or kohya-flattened: fused projections are split into our separate layers (a fused layer's
     W = up @ down splits by output rows, so `up` is split and `down` shared) and the final adaLN's (shift, scale)
     halves are swapped to our (scale, shift).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import safe_open

from .errors import CheckpointError
from .limits import MAX_ALPHA_PATTERN_CHARS, MAX_ALPHA_PATTERNS
from .safetensors_file import UNREADABLE, check_file, unreadable

# diffusers writes the PEFT LoraConfig (r, lora_alpha, alpha_pattern, use_rslora) under this metadata key
PEFT_METADATA_KEY = "lora_adapter_metadata"

# Prefixes of the module path, outermost first. The kohya ones mean "dots were replaced by underscores".
_DOTTED_PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.")
_FLATTENED_PREFIXES = ("lora_unet_", "lora_transformer_")
_DOWN_SUFFIXES = (".lora_A.weight", ".lora_down.weight", ".lora_A.default.weight")
_UP_SUFFIXES = (".lora_B.weight", ".lora_up.weight", ".lora_B.default.weight")
_ALPHA_SUFFIX = ".alpha"
_UNSUPPORTED_SUFFIXES = {
    ".dora_scale": "DoRA is not supported",
    ".lora_magnitude_vector": "DoRA is not supported",
    ".lora_B.bias": "LoRA biases are not supported",
    ".lora_up.bias": "LoRA biases are not supported",
    ".diff": "full weight differences are not supported",
    ".diff_b": "full bias differences are not supported",
}


# -- the normalised content of a file ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LoraWeights:
    """One low-rank update of one layer: delta W = scale * up @ down (times the strength chosen when applying).

    `target` is our module name (`single_transformer_blocks.0.attn.to_q`); for kohya-style keys with diffusers
    names it stays flattened (`single_transformer_blocks_0_attn_to_q`) until resolved against a model.
    `scale` is independent of the strength: alpha / rank (kohya convention), 1 without alpha.
    """

    target: str
    down: torch.Tensor  # [rank, in]
    up: torch.Tensor  # [out, rank]
    scale: float
    source: str  # the file's key stem this came from, for messages

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def delta(self) -> torch.Tensor:
        """scale * up @ down in float32: the change of the layer's weight at strength 1."""
        return self.scale * (self.up.float() @ self.down.float())


@dataclass
class LoraFile:
    """A LoRA file normalised to FramePack layers. `ignored` maps each file key that cannot be used to why."""

    path: Path
    weights: list[LoraWeights]
    ignored: dict[str, str]
    keys: tuple[str, ...]  # every key of the file, for guessing what model it was made for
    formats: set[str] = field(default_factory=set)  # "diffusers", "kohya", "hunyuan-original"

    @property
    def name(self) -> str:
        return self.path.name


# -- HunyuanVideo original (Tencent) names -> ours --------------------------------------------------------------

def _keep(up: torch.Tensor, down: torch.Tensor) -> list[torch.Tensor]:
    return [up]


def _thirds(up: torch.Tensor, down: torch.Tensor) -> list[torch.Tensor]:
    if up.shape[0] % 3:
        raise ValueError(f"a fused q/k/v update needs a row count divisible by 3, got {up.shape[0]}")
    return list(up.chunk(3, dim=0))


def _qkv_mlp(up: torch.Tensor, down: torch.Tensor) -> list[torch.Tensor]:
    # single_blocks.N.linear1 maps width D to [q | k | v | mlp]; its input width is D
    width = down.shape[1]
    if up.shape[0] <= 3 * width:
        raise ValueError(f"linear1 of width {width} needs more than {3 * width} rows, got {up.shape[0]}")
    return list(up.split([width, width, width, up.shape[0] - 3 * width], dim=0))


def _swap_halves(up: torch.Tensor, down: torch.Tensor) -> list[torch.Tensor]:
    # the original final layer emits (shift, scale); ours (and diffusers') emits (scale, shift)
    if up.shape[0] % 2:
        raise ValueError(f"a (shift, scale) update needs an even row count, got {up.shape[0]}")
    shift, scale = up.chunk(2, dim=0)
    return [torch.cat([scale, shift], dim=0)]


_Split = Callable[[torch.Tensor, torch.Tensor], list[torch.Tensor]]
_DB, _SB, _RB = "transformer_blocks.{0}.", "single_transformer_blocks.{0}.", \
    "context_embedder.token_refiner.refiner_blocks.{0}."
# (original name as a regex with dots, our module names, how the update's rows split among them)
_TENCENT_RULES: list[tuple[str, tuple[str, ...], _Split]] = [
    (r"double_blocks\.(\d+)\.img_attn_qkv", (_DB + "attn.to_q", _DB + "attn.to_k", _DB + "attn.to_v"), _thirds),
    (r"double_blocks\.(\d+)\.img_attn_proj", (_DB + "attn.to_out.0",), _keep),
    (r"double_blocks\.(\d+)\.img_mlp\.fc1", (_DB + "ff.net.0.proj",), _keep),
    (r"double_blocks\.(\d+)\.img_mlp\.fc2", (_DB + "ff.net.2",), _keep),
    (r"double_blocks\.(\d+)\.img_mod\.linear", (_DB + "norm1.linear",), _keep),
    (r"double_blocks\.(\d+)\.txt_attn_qkv",
     (_DB + "attn.add_q_proj", _DB + "attn.add_k_proj", _DB + "attn.add_v_proj"), _thirds),
    (r"double_blocks\.(\d+)\.txt_attn_proj", (_DB + "attn.to_add_out",), _keep),
    (r"double_blocks\.(\d+)\.txt_mlp\.fc1", (_DB + "ff_context.net.0.proj",), _keep),
    (r"double_blocks\.(\d+)\.txt_mlp\.fc2", (_DB + "ff_context.net.2",), _keep),
    (r"double_blocks\.(\d+)\.txt_mod\.linear", (_DB + "norm1_context.linear",), _keep),
    (r"single_blocks\.(\d+)\.linear1",
     (_SB + "attn.to_q", _SB + "attn.to_k", _SB + "attn.to_v", _SB + "proj_mlp"), _qkv_mlp),
    (r"single_blocks\.(\d+)\.linear2", (_SB + "proj_out",), _keep),
    (r"single_blocks\.(\d+)\.modulation\.linear", (_SB + "norm.linear",), _keep),
    (r"final_layer\.linear", ("proj_out",), _keep),
    (r"final_layer\.adaLN_modulation\.1", ("norm_out.linear",), _swap_halves),
    (r"time_in\.mlp\.0", ("time_text_embed.timestep_embedder.linear_1",), _keep),
    (r"time_in\.mlp\.2", ("time_text_embed.timestep_embedder.linear_2",), _keep),
    (r"guidance_in\.mlp\.0", ("time_text_embed.guidance_embedder.linear_1",), _keep),
    (r"guidance_in\.mlp\.2", ("time_text_embed.guidance_embedder.linear_2",), _keep),
    (r"vector_in\.in_layer", ("time_text_embed.text_embedder.linear_1",), _keep),
    (r"vector_in\.out_layer", ("time_text_embed.text_embedder.linear_2",), _keep),
    (r"txt_in\.input_embedder", ("context_embedder.proj_in",), _keep),
    (r"txt_in\.t_embedder\.mlp\.0", ("context_embedder.time_text_embed.timestep_embedder.linear_1",), _keep),
    (r"txt_in\.t_embedder\.mlp\.2", ("context_embedder.time_text_embed.timestep_embedder.linear_2",), _keep),
    (r"txt_in\.c_embedder\.linear_1", ("context_embedder.time_text_embed.text_embedder.linear_1",), _keep),
    (r"txt_in\.c_embedder\.linear_2", ("context_embedder.time_text_embed.text_embedder.linear_2",), _keep),
    (r"txt_in\.individual_token_refiner\.blocks\.(\d+)\.self_attn_qkv",
     (_RB + "attn.to_q", _RB + "attn.to_k", _RB + "attn.to_v"), _thirds),
    (r"txt_in\.individual_token_refiner\.blocks\.(\d+)\.self_attn_proj", (_RB + "attn.to_out.0",), _keep),
    (r"txt_in\.individual_token_refiner\.blocks\.(\d+)\.mlp\.fc1", (_RB + "ff.net.0.proj",), _keep),
    (r"txt_in\.individual_token_refiner\.blocks\.(\d+)\.mlp\.fc2", (_RB + "ff.net.2",), _keep),
    (r"txt_in\.individual_token_refiner\.blocks\.(\d+)\.adaLN_modulation\.1", (_RB + "norm_out.linear",), _keep),
]
# The same rules for kohya-flattened names (dots -> underscores); every leaf is fixed, so this is unambiguous.
_TENCENT_PATTERNS = [(re.compile(pattern), re.compile(pattern.replace(r"\.", "_")), targets, split)
                     for pattern, targets, split in _TENCENT_RULES]
_TENCENT_ROOTS = ("double_blocks", "single_blocks", "final_layer", "time_in", "guidance_in", "vector_in", "txt_in",
                  "img_in")
# Names that only Flux (BFL naming) has: its double_blocks/single_blocks must then not be read as HunyuanVideo's,
# whose flattened qkv/proj/linear1/linear2 names and 3072 width coincide with Flux's.
_FLUX_ONLY_FLATTENED = re.compile(r"(img|txt)_mod_lin$|modulation_lin$|(img|txt)_mlp_[02]$|(img|txt)_attn_norm_")
_FLUX_ONLY_DOTTED = re.compile(r"(img|txt)_attn\.(qkv|proj)$")  # HunyuanVideo writes img_attn_qkv


def _looks_like_flux(stem: str) -> bool:
    return bool(_FLUX_ONLY_DOTTED.search(stem) or _FLUX_ONLY_FLATTENED.search(stem.replace(".", "_")))


def _map_tencent(stem: str) -> tuple[tuple[str, ...], _Split] | None:
    for dotted, flattened, targets, split in _TENCENT_PATTERNS:
        match = dotted.fullmatch(stem) or flattened.fullmatch(stem)
        if match:
            return tuple(t.format(*match.groups()) for t in targets), split
    return None


# -- reading ----------------------------------------------------------------------------------------------------

_FIX = "Use a .safetensors LoRA."


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except UNREADABLE as exc:
        raise unreadable(path, exc, "LoRA", _FIX) from exc
    return tensors, metadata


def _split_key(key: str) -> tuple[str, str] | None:
    """(stem, kind) with kind in down/up/alpha, or None for a key that is not a LoRA factor."""
    for suffixes, kind in ((_DOWN_SUFFIXES, "down"), (_UP_SUFFIXES, "up"), ((_ALPHA_SUFFIX,), "alpha")):
        for suffix in suffixes:
            if key.endswith(suffix):
                return key[: -len(suffix)], kind
    return None


def _strip_prefixes(stem: str) -> tuple[str, bool]:
    """The module path without file-format prefixes, and whether it is kohya-flattened."""
    for prefix in _DOTTED_PREFIXES:
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
    for prefix in _FLATTENED_PREFIXES:
        if stem.startswith(prefix):
            return stem[len(prefix):], True
    return stem, "." not in stem


def _peft_alpha(metadata: dict[str, str], name: str) -> Callable[[str], tuple[float, bool] | None]:
    """From diffusers' saved LoraConfig: module name -> (alpha, use_rslora), or None when there is no config.

    alpha_pattern keys are module names (PEFT writes them from the model's module names), matched literally: the
    whole name or a dotted tail of it, the first listed key winning as in PEFT. They are never run as regular
    expressions, because the file controls both the patterns and the names they would run against."""
    try:
        config = json.loads(metadata[PEFT_METADATA_KEY])
        default = float(config["lora_alpha"])
    except (KeyError, TypeError, ValueError):
        return lambda stem: None
    patterns = config.get("alpha_pattern") or {}
    if not isinstance(patterns, dict):
        patterns = {}
    if len(patterns) > MAX_ALPHA_PATTERNS:
        raise CheckpointError(f"{name}: its PEFT metadata ({PEFT_METADATA_KEY}) lists {len(patterns)} alpha_pattern "
                              f"entries; at most {MAX_ALPHA_PATTERNS} are read. The file is damaged or was not made "
                              "for one model; use another LoRA")
    first: dict[str, tuple[int, float]] = {}  # module name -> (position in the file, alpha)
    for position, (pattern, alpha) in enumerate(patterns.items()):
        if len(pattern) > MAX_ALPHA_PATTERN_CHARS:
            raise CheckpointError(f"{name}: an alpha_pattern entry of its PEFT metadata has {len(pattern)} characters; "
                                  f"module names have at most {MAX_ALPHA_PATTERN_CHARS}. The file is damaged; use "
                                  "another LoRA")
        try:
            first.setdefault(pattern, (position, float(alpha)))
        except (TypeError, ValueError):
            continue  # not a number: PEFT could not use it either
    rslora = bool(config.get("use_rslora", False))

    def alpha_of(stem: str) -> tuple[float, bool]:
        # the name and its dotted tails, only those short enough to be a pattern (bounded work per name)
        window = max(0, len(stem) - MAX_ALPHA_PATTERN_CHARS)
        starts = [0] if window == 0 else []
        starts += [i + 1 for i in range(window, len(stem)) if stem[i] == "."]
        hits = [first[stem[i:]] for i in starts if stem[i:] in first]
        return (min(hits)[1] if hits else default), rslora

    return alpha_of


def _scale(alpha: torch.Tensor | None, peft: tuple[float, bool] | None, rank: int) -> float:
    if alpha is not None:
        return float(alpha.float().reshape(-1)[0]) / rank
    if peft is not None:
        value, rslora = peft
        return value / (math.sqrt(rank) if rslora else rank)
    return 1.0


def _check_factors(name: str, stem: str, alpha: torch.Tensor | None, rank: int) -> None:
    """A rank of 0 or an alpha that is not one finite number means a damaged file (the scale alpha/rank is
    undefined), said with the key instead of an IndexError or a division by zero."""
    if rank < 1:
        raise CheckpointError(f"{name}: {stem} has rank 0 (its lora_down/lora_A has no rows); the file is damaged, "
                              "download it again or use another LoRA")
    if alpha is None:
        return
    if alpha.numel() != 1:
        raise CheckpointError(f"{name}: {stem}{_ALPHA_SUFFIX} holds {alpha.numel()} values instead of one number; "
                              "the file is damaged, download it again or use another LoRA")
    if not math.isfinite(float(alpha.float().reshape(-1)[0])):
        raise CheckpointError(f"{name}: {stem}{_ALPHA_SUFFIX} is not a finite number; the file is damaged, download "
                              "it again or use another LoRA")


def load_lora_file(path: str | Path) -> LoraFile:
    """Reads a .safetensors LoRA and normalises its keys to FramePack module names (see the module docstring).

    Keys that are not LoRA factors, lack their partner, or name layers we cannot map are listed in `ignored`.
    Raises CheckpointError for pickle files, non-safetensors content, truncated files, and inconsistent factors.
    """
    path = Path(path)
    check_file(path, "LoRA", _FIX)
    tensors, metadata = _read(path)
    peft_alpha = _peft_alpha(metadata, path.name)

    groups: dict[str, dict[str, torch.Tensor]] = {}
    keys_of: dict[str, list[str]] = {}
    ignored: dict[str, str] = {}
    for key, tensor in tensors.items():
        parts = _split_key(key)
        if parts is None:
            ignored[key] = next((why for suffix, why in _UNSUPPORTED_SUFFIXES.items() if key.endswith(suffix)),
                                "not a LoRA factor (lora_A/lora_B, lora_down/lora_up or alpha)")
            continue
        stem, kind = parts
        groups.setdefault(stem, {})[kind] = tensor
        keys_of.setdefault(stem, []).append(key)

    is_flux = any(_looks_like_flux(_strip_prefixes(stem)[0]) for stem in groups)
    lora = LoraFile(path, [], ignored, tuple(tensors))
    for raw_stem, group in groups.items():
        keys = keys_of[raw_stem]
        down, up, alpha = group.get("down"), group.get("up"), group.get("alpha")
        if down is None or up is None:
            for key in keys:
                ignored[key] = "its lora_down/lora_A or lora_up/lora_B partner is missing"
            continue
        if down.ndim != 2 or up.ndim != 2:
            for key in keys:
                ignored[key] = f"not a linear-layer LoRA (factor shapes {list(down.shape)}, {list(up.shape)})"
            continue
        if down.shape[0] != up.shape[1]:
            raise CheckpointError(f"{path.name}: {raw_stem} has inconsistent LoRA factors (down {list(down.shape)}, "
                                  f"up {list(up.shape)}); the file is damaged")
        _check_factors(path.name, raw_stem, alpha, down.shape[0])
        stem, flattened = _strip_prefixes(raw_stem)
        scale = _scale(alpha, peft_alpha(stem), down.shape[0])
        if stem.replace(".", "_").startswith(_TENCENT_ROOTS):
            mapped = None if is_flux else _map_tencent(stem)
            if mapped is None:
                why = ("Flux (BFL) layer names, not HunyuanVideo" if is_flux
                       else f"HunyuanVideo layer {stem} has no linear counterpart in FramePack")
                for key in keys:
                    ignored[key] = why
                continue
            targets, split = mapped
            try:
                ups = split(up, down)
            except ValueError as exc:
                raise CheckpointError(f"{path.name}: cannot split {raw_stem} into {', '.join(targets)}: {exc}; "
                                      "the LoRA was made for another model") from exc
            lora.weights.extend(LoraWeights(t, down, u, scale, raw_stem) for t, u in zip(targets, ups))
            lora.formats.add("hunyuan-original")
        else:
            lora.weights.append(LoraWeights(stem, down, up, scale, raw_stem))
            lora.formats.add("kohya" if flattened else "diffusers")
    return lora


# -- what a file was made for -------------------------------------------------------------------------------------

_FAMILY_HINTS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^blocks_\d+_(self_attn|cross_attn|ffn|attn1|attn2)_|^(head_head|time_embedding|text_embedding)"),
     "a LoRA for Wan (2.1 / 2.2)"),
    (re.compile(r"(^|_)(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)_|^lora_te\d?_"),
     "a LoRA for Stable Diffusion (SD 1.x / 2.x / SDXL)"),
    (re.compile(r"(^|_)transformer_blocks_\d+_attn[12]_|scale_shift_table"),
     "a LoRA for LTX-Video or another attn1/attn2 video model (CogVideoX, Mochi)"),
    (re.compile(r"(^|_)(double_blocks|single_blocks|txt_in|img_in|final_layer)_"),
     "a LoRA for HunyuanVideo / HunyuanVideo-I2V that touches no layer FramePack has (e.g. only img_in)"),
]


def guess_lora_family(keys: Sequence[str]) -> str:
    """A readable guess of the model a LoRA was made for, from its key names alone."""
    stems = []
    for key in keys:
        parts = _split_key(key)
        stems.append(_strip_prefixes(parts[0] if parts else key)[0])
    if not any(_split_key(k) for k in keys):
        return "no LoRA at all (no lora_A / lora_down weights: a full model checkpoint?)"
    if any(_looks_like_flux(s) for s in stems):
        return "a LoRA for Flux"
    for pattern, family in _FAMILY_HINTS:
        if any(pattern.search(s.replace(".", "_")) for s in stems):
            return family
    sample = ", ".join(sorted(set(keys))[:3])
    return f"a LoRA for another model (keys like {sample})"
