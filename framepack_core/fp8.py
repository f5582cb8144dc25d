"""fp8 matmul: fp8-stored weights multiplied in fp8 on GPUs with fp8 tensor cores, instead of being upcast.

With fp8 weight storage (loading.py) every block matmul first upcasts its weight to the compute dtype. On NVIDIA
GPUs of compute capability 8.9 or newer (Ada, Hopper, Blackwell) `torch._scaled_mm` multiplies fp8 operands
directly at about twice the bf16 rate: the activations are quantised to float8_e4m3fn with one per-tensor scale
(their absolute maximum maps to the format's largest value, 448) and the weight keeps its stored values (scale 1,
as the community fp8 files and our fp8 storage are plain casts). Only e4m3fn weights take this path (e5m2 stays
upcast), and only bf16/fp16 compute with both matmul dimensions multiples of 16 (what the fp8 kernels need).

`select_fp8_matmul` decides once per model and device and logs why when it keeps upcasting; matmul.linear, the
matmul of every layer, takes `scaled_linear` for the layers it switched on. This module knows no layer class: the
layers that can multiply in fp8 are the modules carrying an `fp8_matmul` flag (layers.Linear).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

MIN_CAPABILITY = (8, 9)
E4M3_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448
_logged: set[str] = set()


def unsupported_reason(device: torch.device | str, capability: tuple[int, int] | None = None) -> str | None:
    """Why fp8 matmul cannot run on `device` (None when it can). `capability` overrides the GPU's own."""
    device = torch.device(device)
    if not hasattr(torch, "_scaled_mm"):
        return "this PyTorch has no torch._scaled_mm"
    if device.type != "cuda":
        return f"the {device.type} device has no fp8 matmul units (an NVIDIA GPU of compute capability >= 8.9 has)"
    major, minor = capability if capability is not None else torch.cuda.get_device_capability(device)
    if (major, minor) < MIN_CAPABILITY:
        return f"GPU compute capability {major}.{minor} has no fp8 tensor cores (8.9 or newer: Ada, Hopper, Blackwell)"
    return None


def eligible_weight(weight: torch.Tensor) -> bool:
    """An e4m3fn weight whose matmul dimensions are multiples of 16, as the fp8 kernels need."""
    return weight.dtype == torch.float8_e4m3fn and weight.shape[0] % 16 == 0 and weight.shape[1] % 16 == 0


def takes_scaled_matmul(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `scaled_linear` can multiply x by this weight: an eligible weight and bf16/fp16 activations."""
    return eligible_weight(weight) and x.dtype in (torch.bfloat16, torch.float16)


def select_fp8_matmul(model, device: torch.device | str, capability: tuple[int, int] | None = None) -> bool:
    """Turns fp8 matmul on for the model's eligible layers when `device` supports it; otherwise they keep
    upcasting and the reason is logged (once per reason). Returns whether fp8 matmul is on."""
    layers = [m for m in model.modules() if hasattr(m, "fp8_matmul") and m.weight.dtype in (torch.float8_e4m3fn,
                                                                                           torch.float8_e5m2)]
    if not layers:
        return False
    reason = unsupported_reason(device, capability)
    if reason is None and not any(eligible_weight(m.weight) for m in layers):
        reason = "the fp8 weights are float8_e5m2 or not multiples of 16 in size (fp8 matmul takes e4m3fn)"
    for layer in layers:
        layer.fp8_matmul = reason is None and eligible_weight(layer.weight)
    if reason is not None:
        if reason not in _logged:
            _logged.add(reason)
            log.info("FramePack: fp8 weights are upcast at each matmul: %s", reason)
        return False
    log.info("FramePack: fp8 weights are multiplied in fp8 (torch._scaled_mm) on %s", torch.device(device))
    return True


def scaled_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight.T + bias with x quantised to e4m3fn by one per-tensor scale and the e4m3fn weight as stored."""
    rows = x.reshape(-1, x.shape[-1])
    # the scale is rounded to x's dtype before use, so quantising (in x's dtype, no float32 copy of the
    # activations) and de-quantising (by _scaled_mm, in float32) use the same value
    scale = (rows.abs().amax().float() / E4M3_MAX).clamp(min=1e-12).to(x.dtype)
    quantised = (rows / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).contiguous()
    one = torch.ones((), dtype=torch.float32, device=x.device)
    bias = None if bias is None else bias.to(device=x.device, dtype=x.dtype, non_blocking=True)
    out = torch._scaled_mm(quantised, weight.t(), scale_a=scale.float(), scale_b=one, bias=bias, out_dtype=x.dtype)
    return out.reshape(*x.shape[:-1], weight.shape[0])
