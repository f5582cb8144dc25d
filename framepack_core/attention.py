"""Attention backends: PyTorch SDPA by default; flash-attn and SageAttention when installed and chosen.

All functions take q, k, v as [batch, tokens, heads, head_dim] (the layout flash-attn and Sage use) and return
[batch, tokens, heads * head_dim]. Masking follows the original FramePack: with batch 1 the caller crops the
padding away and passes no mask ("cropping is mathematically the same"); with batch > 1 a key-padding mask is
applied, which only SDPA supports here, so masked calls always go through SDPA.

SDPA's kernel is chosen per GPU generation (`sdpa_plan`): on Hopper (sm90) cuDNN attention first, reported much
faster there than FlashAttention-2 at these shapes (batch 1, no mask, head dim 128), then flash and memory-efficient;
elsewhere flash first. On Turing (sm75) neither flash nor the memory-efficient kernel takes bf16, and PyTorch would
fall back to its math path, which materialises the whole attention matrix (16 GB at 640x608): attention runs in
fp16 there instead, with a warning. Which kernel runs is logged once per kind of call and kept in `kernels_used()`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import InputError
from .limits import DEFAULT_ATTENTION

log = logging.getLogger(__name__)

BACKENDS = ("sdpa", "flash_attn", "sage")
FP16_SAFE = 60000.0  # under fp16's 65504, so rounding in the kernel cannot overflow to inf


def _optional(module: str, attr: str):
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception:  # any import failure (missing wheel, CUDA mismatch) just means "not available"
        return None


_flash_attn_func = _optional("flash_attn", "flash_attn_func")
_sageattn = _optional("sageattention", "sageattn")
_warned_missing: set[str] = set()


def available_backends() -> list[str]:
    names = ["sdpa"]
    if _flash_attn_func is not None:
        names.append("flash_attn")
    if _sageattn is not None:
        names.append("sage")
    return names


def resolve_backend(name: str) -> str:
    """Validates a backend name; a chosen backend that is not installed falls back to SDPA, with a warning the first
    time, so that a workflow shared from a machine with flash-attn still runs everywhere."""
    if name not in BACKENDS:
        raise InputError(f"attention backend {name!r} is unknown; choose one of {', '.join(BACKENDS)}")
    if name not in available_backends():
        if name not in _warned_missing:
            _warned_missing.add(name)
            log.warning("attention backend %r is not installed; using PyTorch SDPA instead", name)
        return "sdpa"
    return name


# -- SDPA kernel choice -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SdpaPlan:
    kernels: tuple[str, ...]  # SDPA kernels in priority order; empty = PyTorch's own choice (CPU and others)
    cast: torch.dtype | None = None  # run attention in this dtype instead of the compute dtype
    warning: str | None = None


def sdpa_plan(capability: tuple[int, int] | None, dtype: torch.dtype) -> SdpaPlan:
    """The SDPA kernels to try, in order, for a CUDA device of this compute capability (None: not CUDA)."""
    if capability is None:
        return SdpaPlan(())
    if dtype == torch.float32:
        return SdpaPlan(("efficient", "math"))  # flash and cuDNN take 16-bit inputs only
    if dtype == torch.bfloat16 and tuple(capability) < (8, 0):
        return SdpaPlan(("efficient", "math"), torch.float16,
                        f"this GPU (sm{capability[0]}{capability[1]}) has no bf16 attention kernel, and PyTorch's "
                        "fallback would hold the whole attention matrix in memory (16 GB at 640x608); attention "
                        "runs in fp16 instead (q and k are normalised; v is clamped to the fp16 range)")
    if capability[0] == 9:
        return SdpaPlan(("cudnn", "flash", "efficient", "math"))
    return SdpaPlan(("flash", "efficient", "cudnn", "math"))


def _kernel(name: str):
    from torch.nn.attention import SDPBackend
    return {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[name]


def _capability(device: torch.device) -> tuple[int, int] | None:
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else None


def _usable(name: str, q, k, v, mask) -> bool:
    """Whether PyTorch can run this SDPA kernel on these inputs ([B, H, L, D])."""
    if name == "math":
        return True
    check = {"cudnn": "can_use_cudnn_attention", "flash": "can_use_flash_attention",
             "efficient": "can_use_efficient_attention"}[name]
    try:
        params = torch.backends.cuda.SDPAParams(q, k, v, mask, 0.0, False, False)
        return bool(getattr(torch.backends.cuda, check)(params, False))
    except Exception:  # an older PyTorch without the check, or a device it cannot query
        return False


_plans: dict[tuple, tuple[SdpaPlan, list]] = {}
_kernels_used: dict[str, str] = {}


def kernels_used() -> dict[str, str]:
    """Which SDPA kernel ran, per kind of call ("cuda:0 bfloat16": "cudnn", ...)."""
    return dict(_kernels_used)


def _plan_for(q, k, v, mask) -> tuple[SdpaPlan, list]:
    key = (q.device, q.dtype, mask is not None)
    if key not in _plans:
        plan = sdpa_plan(_capability(q.device), q.dtype)
        if plan.warning:
            log.warning("attention: %s", plan.warning)
        cast = plan.cast or q.dtype
        probe = [t.to(cast) for t in (q, k, v)] if plan.cast else (q, k, v)
        used = next((n for n in plan.kernels if _usable(n, *probe, mask)), "default")
        label = f"{q.device} {str(q.dtype).removeprefix('torch.')}{' masked' if mask is not None else ''}"
        _kernels_used[label] = used
        log.info("attention: SDPA kernel %s for %s", used, label)
        if used == "math" and q.shape[-2] > 4096:
            log.warning("attention: no fused SDPA kernel fits these inputs; PyTorch's math path holds the whole "
                        "attention matrix in memory")
        _plans[key] = (plan, [_kernel(n) for n in plan.kernels])
    return _plans[key]


def _kernel_context(kernels: list):
    if not kernels:
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel
    try:
        return sdpa_kernel(kernels, set_priority=True)
    except TypeError:  # PyTorch before 2.6 has no priority order: the kernels are only enabled
        return sdpa_kernel(kernels)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """F.scaled_dot_product_attention on [B, H, L, D] with the kernel plan of q's device and dtype."""
    if torch.compiler.is_compiling():
        # inductor picks the fused kernel itself; planning logs and probes, which would break the graph
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    plan, kernels = _plan_for(q, k, v, mask)
    dtype = q.dtype
    if plan.cast is not None:
        q, k = q.to(plan.cast), k.to(plan.cast)
        v = v.clamp(-FP16_SAFE, FP16_SAFE).to(plan.cast)
    with _kernel_context(kernels):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.to(dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = DEFAULT_ATTENTION,
              key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """q, k, v: [B, L, H, D]. key_mask: optional bool [B, Lk], True = attend. Returns [B, L, H*D]."""
    fast_ok = key_mask is None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
    if backend == "sage" and fast_ok and _sageattn is not None:
        out = _sageattn(q, k, v, tensor_layout="NHD")
    elif backend == "flash_attn" and fast_ok and _flash_attn_func is not None:
        out = _flash_attn_func(q, k, v)
    else:
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask).transpose(1, 2)
    return out.flatten(2)
