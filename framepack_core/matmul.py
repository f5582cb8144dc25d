"""The matmul of every transformer Linear (layers.Linear), chosen by how its weight is stored.

A weight may be stored in another dtype than the activations (fp8 storage, loading.py) and on another device
(streamed offload, offload.py). `linear` is the one place that turns a stored weight into a matmul:
- a weight in a float dtype, or fp8 not selected for fp8 matmul: moved to x's device and dtype (the upcast), then
  F.linear;
- an e4m3fn weight of a layer that fp8.select_fp8_matmul switched on: multiplied in fp8 (fp8.scaled_linear).
Another storage format (a quantized weight dequantized at the matmul, say) adds its branch here, next to fp8's, and
answers `fusable` (layers.py joins the projections that read one input into one matmul) and `merges_exactly`
(LoRA application, lora_apply.py) for its weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import fp8
from .safetensors_file import FP8_DTYPES


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, fp8_matmul: bool = False) -> torch.Tensor:
    """F.linear in x's dtype and on x's device whatever the weight's storage; `fp8_matmul` (a layer's selection)
    multiplies an e4m3fn weight in fp8."""
    if fp8_matmul and fp8.takes_scaled_matmul(x, weight):
        return fp8.scaled_linear(x, weight.to(device=x.device, non_blocking=True), bias)
    weight = weight.to(device=x.device, dtype=x.dtype, non_blocking=True)
    bias = None if bias is None else bias.to(device=x.device, dtype=x.dtype, non_blocking=True)
    return F.linear(x, weight, bias)


def fusable(weights: list[torch.Tensor]) -> bool:
    """Whether these weights (of layers reading the same input) can be concatenated row-wise into one weight for
    one matmul: all stored in one dtype."""
    return len({weight.dtype for weight in weights}) == 1


def merges_exactly(weight: torch.Tensor) -> bool:
    """Whether a LoRA update can be merged into this stored weight. Not into fp8: a small update is far below fp8's
    spacing at the weight's size and would mostly round away, so such layers take a runtime adapter instead."""
    return weight.dtype not in FP8_DTYPES
