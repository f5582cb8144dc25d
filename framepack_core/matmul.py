"""The matmul of every transformer Linear (layers.Linear), chosen by how its weight is stored.

A weight may be stored in another dtype than the activations (fp8 storage, loading.py) and on another device
(streamed offload, offload.py). `linear` is the one place that turns a stored weight into a matmul:
- a weight in a float dtype, or fp8 not selected for fp8 matmul: moved to x's device and dtype (the upcast), then
  F.linear;
- an e4m3fn weight of a layer that fp8.select_fp8_matmul switched on: multiplied in fp8 (fp8.scaled_linear).
- a GGUF-quantized weight (packed ggml blocks in a uint8 tensor, gguf_linear.QuantizedLinear): dequantized to x's
  dtype on x's device right before F.linear (`quantized_linear`), so only the packed bytes stay in memory.
Each storage answers `fusable` (layers.py joins the projections that read one input into one matmul) and
`merges_exactly` (LoRA application, lora_apply.py) for its weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import fp8
from .gguf_dequant import dequantize
from .safetensors_file import FP8_DTYPES

# the dtype of packed GGUF blocks: a weight stored so is quantized, whatever its shape says
PACKED_DTYPE = torch.uint8


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, fp8_matmul: bool = False) -> torch.Tensor:
    """F.linear in x's dtype and on x's device whatever the weight's storage; `fp8_matmul` (a layer's selection)
    multiplies an e4m3fn weight in fp8."""
    if fp8_matmul and fp8.takes_scaled_matmul(x, weight):
        return fp8.scaled_linear(x, weight.to(device=x.device, non_blocking=True), bias)
    weight = weight.to(device=x.device, dtype=x.dtype, non_blocking=True)
    bias = None if bias is None else bias.to(device=x.device, dtype=x.dtype, non_blocking=True)
    return F.linear(x, weight, bias)


def quantized_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, qtype: int,
                     shape: tuple[int, int]) -> torch.Tensor:
    """F.linear with a packed GGUF weight of logical `shape` [out, in], dequantized in x's dtype on x's device (the
    packed bytes are what moves between devices)."""
    weight = dequantize(packed.to(device=x.device, non_blocking=True), qtype, shape, x.dtype)
    bias = None if bias is None else bias.to(device=x.device, dtype=x.dtype, non_blocking=True)
    return F.linear(x, weight, bias)


def fusable(weights: list[torch.Tensor]) -> bool:
    """Whether these weights (of layers reading the same input) can be concatenated row-wise into one weight for
    one matmul: all stored in one dtype, and not packed GGUF blocks (each layer dequantizes its own)."""
    return len({weight.dtype for weight in weights}) == 1 and weights[0].dtype != PACKED_DTYPE


def merges_exactly(weight: torch.Tensor) -> bool:
    """Whether a LoRA update can be merged into this stored weight. Not into fp8: a small update is far below fp8's
    spacing at the weight's size and would mostly round away, so such layers take a runtime adapter instead. Not
    into packed GGUF blocks either: merging would need dequantizing and requantizing the base weight."""
    return weight.dtype not in FP8_DTYPES and weight.dtype != PACKED_DTYPE
