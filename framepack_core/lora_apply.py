"""Applying LoRAs (read by lora_formats.py) to the FramePack transformer's Linear layers, several at once with
strengths.

A weight that a merge would not change faithfully (stored in float8: a small update merged into fp8 is mostly
rounded away, because it is far below fp8's spacing at the weight's size; or packed GGUF blocks, which a merge would
have to dequantize and requantize; matmul.merges_exactly) gets a runtime
`LoraDelta`, a low-rank side path computed next to the layer's matmul; any other weight is merged,
W += strength * scale * up @ down, computed in float32.
Merging cannot be undone: apply LoRAs to a freshly loaded model, before an offload streamer is installed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError, InputError
from .layers import Linear
from .limits import MAX_LORAS
from .lora_formats import LoraFile, LoraWeights, guess_lora_family, load_lora_file
from .matmul import merges_exactly


class LoraDelta(nn.Module):
    """scale * up(down(x)) kept in high precision next to a (possibly fp8) base weight: one entry of a
    layers.Linear's `lora` list, added to the layer's output."""

    def __init__(self, down: torch.Tensor, up: torch.Tensor, scale: float):
        super().__init__()
        self.register_buffer("down", down, persistent=False)
        self.register_buffer("up", up, persistent=False)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down = self.down.to(device=x.device, dtype=x.dtype)
        up = self.up.to(device=x.device, dtype=x.dtype)
        return F.linear(F.linear(x, down), up) * self.scale


# -- applying -----------------------------------------------------------------------------------------------------

@dataclass
class AppliedLora:
    """What one LoRA did: `layers` maps each matched module to "merged", "runtime" (fp8 weight) or "skipped"
    (strength 0); `unmatched` maps each unusable file key to why."""

    name: str
    strength: float
    layers: dict[str, str]
    unmatched: dict[str, str]

    @property
    def matched(self) -> int:
        return len(self.layers)

    def count(self, mode: str) -> int:
        return sum(1 for m in self.layers.values() if m == mode)

    def __str__(self) -> str:
        text = (f"{self.name} (strength {self.strength:g}): {self.matched} layers "
                f"({self.count('merged')} merged, {self.count('runtime')} runtime on fp8/GGUF"
                f"{', strength 0: nothing changed' if self.count('skipped') else ''})")
        if self.unmatched:
            shown = "; ".join(f"{k}: {why}" for k, why in list(self.unmatched.items())[:5])
            more = f" and {len(self.unmatched) - 5} more" if len(self.unmatched) > 5 else ""
            text += f"; {len(self.unmatched)} keys unused ({shown}{more})"
        return text


@dataclass
class LoraReport:
    loras: list[AppliedLora]

    def __str__(self) -> str:
        return " | ".join(str(lora) for lora in self.loras) or "no LoRA"


@dataclass
class _Plan:
    lora: LoraFile
    strength: float
    layers: list[tuple[str, Linear, LoraWeights]]
    unmatched: dict[str, str]


def _linear_layers(model: torch.nn.Module) -> tuple[dict[str, Linear], dict[str, str | None]]:
    layers = {name: m for name, m in model.named_modules() if isinstance(m, Linear)}
    flattened: dict[str, str | None] = {}
    for name in layers:
        key = name.replace(".", "_")
        flattened[key] = None if key in flattened else name  # None: two modules flatten alike (never in FramePack)
    return layers, flattened


def _plan(lora: LoraFile, strength: float, layers: dict[str, Linear], flattened: dict[str, str | None]) -> _Plan:
    plan = _Plan(lora, float(strength), [], dict(lora.ignored))
    for weights in lora.weights:
        name = weights.target if weights.target in layers else flattened.get(weights.target.replace(".", "_"))
        if name is None:
            plan.unmatched[weights.source] = f"the FramePack transformer has no layer {weights.target}"
            continue
        module = layers[name]
        # out/in features, not the weight's shape: a GGUF-quantized weight is stored as packed bytes
        if (module.out_features, module.in_features) != (weights.up.shape[0], weights.down.shape[1]):
            raise CheckpointError(
                f"{lora.name}: layer {name} is [out {module.out_features}, in {module.in_features}] but the "
                f"LoRA ({weights.source}) changes a [out {weights.up.shape[0]}, in {weights.down.shape[1]}] weight: "
                f"it was made for a model of another size ({guess_lora_family(lora.keys)}); use a HunyuanVideo or "
                "FramePack LoRA")
        plan.layers.append((name, module, weights))
    if not plan.layers:
        raise CheckpointError(f"{lora.name} matched no layer of the FramePack transformer: it looks like "
                              f"{guess_lora_family(lora.keys)}; use a HunyuanVideo or FramePack LoRA")
    return plan


@torch.no_grad()
def _apply_one(module: Linear, weights: LoraWeights, strength: float) -> str:
    weight = module.weight
    if not merges_exactly(weight):
        # runtime adapter beside the fp8 or GGUF-quantized weight, kept in float32 on the weight's device
        down = weights.down.to(device=weight.device, dtype=torch.float32)
        up = weights.up.to(device=weight.device, dtype=torch.float32)
        module.lora.append(LoraDelta(down, up, strength * weights.scale))
        return "runtime"
    delta = weights.up.to(weight.device, torch.float32) @ weights.down.to(weight.device, torch.float32)
    # a new tensor rather than in place: the old one may be memory-mapped from the model file or shared
    weight.data = (weight.data.float() + (strength * weights.scale) * delta).to(weight.dtype)
    return "merged"


def apply_loras(model: torch.nn.Module, loras: Sequence[tuple[LoraFile, float]]) -> LoraReport:
    """Applies several LoRAs with their strengths (negative allowed, 0 changes nothing) to the model's Linear layers.

    fp8-stored and GGUF-quantized weights get a runtime LoraDelta at full strength; other weights are merged
    (W += strength * scale * up @ down in float32, cast back to the storage dtype). Every LoRA is checked before
    any layer changes: a LoRA that matches no layer, or whose shapes do not fit, raises CheckpointError.
    """
    layers, flattened = _linear_layers(model)
    plans = [_plan(lora, strength, layers, flattened) for lora, strength in loras]
    report = LoraReport([])
    for plan in plans:
        modes: dict[str, str] = {}
        for name, module, weights in plan.layers:
            modes[name] = "skipped" if plan.strength == 0 else _apply_one(module, weights, plan.strength)
        report.loras.append(AppliedLora(plan.lora.name, plan.strength, modes, plan.unmatched))
    return report


def apply_lora_stack(model: torch.nn.Module, stack: Sequence[tuple[str | Path, float]], *,
                     max_loras: int = MAX_LORAS) -> LoraReport:
    """Applies a LoRA stack as the loader node gets it: a file listed more than once is applied once with its
    strengths added (the update is linear in the strength), at most ``max_loras`` different files are accepted
    (checked before anything loads), and the files are loaded and applied one at a time, so only one LoRA's tensors
    are in memory at once.

    Each file is checked before it changes a layer, but an error in a later file leaves the earlier ones merged:
    apply the stack to a freshly loaded model and drop the model when this raises."""
    strengths: dict[str, float] = {}
    paths: dict[str, Path] = {}
    for path, strength in stack:
        same_file = os.path.realpath(path)  # two names of one file (a link) are one LoRA
        paths.setdefault(same_file, Path(path))
        strengths[same_file] = strengths.get(same_file, 0.0) + float(strength)
    if len(strengths) > max_loras:
        raise InputError(f"the LoRA stack holds {len(strengths)} different LoRAs; at most {max_loras} are applied "
                         "at once: remove some FramePack LoRA nodes (or merge LoRAs into one file)")
    report = LoraReport([])
    for same_file, strength in strengths.items():
        lora = load_lora_file(paths[same_file])
        report.loras.extend(apply_loras(model, [(lora, strength)]).loras)
        del lora  # before the next file is read
    return report
