"""The Linear layer of a GGUF-quantized weight: it keeps the file's packed blocks and dequantizes them right before
each matmul (matmul.quantized_linear), so RAM and VRAM hold about the file's size instead of bf16's.

The packed bytes are the layer's `weight` parameter (uint8 [out_features, bytes per row]): the state dict keeps the
checkpoint's key names, `.to()` and the block streamer (offload.py) move the packed bytes, and torch.compile sees
them as an ordinary graph input. `qtype` (a ggml type id) is a plain attribute, a constant to dynamo.
Runtime LoRA adapters (lora_apply.LoraDelta) add their low-rank side path as on any layers.Linear.
"""

from __future__ import annotations

import torch
from torch import nn

from . import matmul
from .gguf_dequant import row_bytes, type_name
from .layers import Linear


class QuantizedLinear(Linear):
    qtype: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = matmul.quantized_linear(x, self.weight, self.bias, self.qtype, (self.out_features, self.in_features))
        for delta in self.lora:
            out = out + delta(x)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gguf={type_name(self.qtype)}"


def make_quantized(layer: Linear, qtype: int) -> QuantizedLinear:
    """Turns a (meta-device, freshly built) Linear into a QuantizedLinear of `qtype` in place: its weight becomes an
    empty uint8 tensor of the packed shape, to be assigned by load_state_dict(assign=True)."""
    layer.__class__ = QuantizedLinear
    layer.qtype = qtype
    packed = torch.empty(layer.out_features, row_bytes(qtype, layer.in_features), dtype=matmul.PACKED_DTYPE,
                         device=layer.weight.device)
    layer.weight = nn.Parameter(packed, requires_grad=False)
    return layer
