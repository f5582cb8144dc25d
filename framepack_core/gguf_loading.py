"""Placing a FramePack GGUF's tensors into a model built on the meta device (loading.py builds and checks the
model; gguf_file.py reads and checks the file).

Which weights stay quantized: with storage "auto", every Linear weight the file stores in a quantized type keeps
its packed blocks (gguf_linear.QuantizedLinear dequantizes them at each matmul). Our converter quantizes the block
matmul weights (gguf_convert.is_quantizable); files made by other tools may also quantize the embedders' Linears or
the output head, and those stay quantized too (dequantizing them would cost bf16 memory for no precision: the
file's values are the quantized ones). Quantized tensors that are not Linear
weights (the patch embedders' convolutions, norms) are dequantized at load, as is everything with storage
"compute" or "fp8_*". Float tensors (F32/F16/BF16) are converted like a .safetensors file's.

Nothing is copied before it is placed: each tensor is a view of the memory-mapped file until it is converted or
moved to the device; a tensor already in its storage dtype on the CPU stays a view of the file's pages (a private,
copy-on-write mapping), so host RAM holds about one copy of the file.
"""

from __future__ import annotations

from typing import Callable

import torch

from .gguf_dequant import dequantize
from .gguf_file import GgufModel, GgufTensor
from .gguf_linear import make_quantized
from .layers import Linear


def _owner(model: torch.nn.Module, key: str) -> Linear | None:
    """The Linear whose weight `key` is, or None."""
    if not key.endswith(".weight"):
        return None
    try:
        module = model.get_submodule(key[: -len(".weight")])
    except AttributeError:
        return None
    return module if isinstance(module, Linear) else None


def _as_tensor(t: GgufTensor) -> torch.Tensor:
    """The float tensor (a view of the mapped file) of an F32/F16/BF16 GGUF tensor, in its logical shape."""
    data = torch.from_numpy(t.data)
    if data.dtype == torch.uint8:  # BF16: numpy has no bfloat16, the reader hands out its bytes
        data = data.view(torch.bfloat16)
    return data.reshape(t.shape)


def place(model: torch.nn.Module, source: GgufModel, prefix: str, keep_quantized: bool,
          convert: Callable[[str, torch.Tensor], torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """The state dict for `model` (built on the meta device, keys already checked against the file): quantized
    Linear weights kept packed when `keep_quantized` (their layers become QuantizedLinear), everything else through
    `convert(key, tensor)` (loading's storage rule)."""
    state = {}
    for raw_key, t in source.tensors.items():
        key = raw_key[len(prefix):]
        owner = _owner(model, key) if t.quantized and keep_quantized else None
        if owner is not None:
            make_quantized(owner, t.qtype)
            packed = torch.from_numpy(t.data).reshape(owner.weight.shape)
            state[key] = packed.to(device)
        elif t.quantized:
            state[key] = convert(key, dequantize(torch.from_numpy(t.data), t.qtype, t.shape, torch.float32)).to(device)
        else:
            state[key] = convert(key, _as_tensor(t)).to(device)
    return state
