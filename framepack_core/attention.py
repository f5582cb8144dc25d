"""Attention backends: PyTorch SDPA by default; flash-attn and SageAttention when installed and chosen.

All functions take q, k, v as [batch, tokens, heads, head_dim] (the layout flash-attn and Sage use) and return
[batch, tokens, heads * head_dim]. Masking follows the original FramePack: with batch 1 the caller crops the
padding away and passes no mask ("cropping is mathematically the same"); with batch > 1 a key-padding mask is
applied, which only SDPA supports here, so masked calls always go through SDPA.
"""

from __future__ import annotations

import importlib
import logging

import torch
import torch.nn.functional as F

from .errors import InputError

log = logging.getLogger(__name__)

BACKENDS = ("sdpa", "flash_attn", "sage")


def _optional(module: str, attr: str):
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception:  # any import failure (missing wheel, CUDA mismatch) just means "not available"
        return None


_flash_attn_func = _optional("flash_attn", "flash_attn_func")
_sageattn = _optional("sageattention", "sageattn")


def available_backends() -> list[str]:
    names = ["sdpa"]
    if _flash_attn_func is not None:
        names.append("flash_attn")
    if _sageattn is not None:
        names.append("sage")
    return names


def resolve_backend(name: str) -> str:
    """Validates a backend name; an installed-but-missing choice falls back to SDPA with a warning so that a
    workflow shared from a machine with flash-attn still runs everywhere."""
    if name not in BACKENDS:
        raise InputError(f"attention backend {name!r} is unknown; choose one of {', '.join(BACKENDS)}")
    if name not in available_backends():
        log.warning("attention backend %r is not installed; using PyTorch SDPA instead", name)
        return "sdpa"
    return name


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa",
              key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """q, k, v: [B, L, H, D]. key_mask: optional bool [B, Lk], True = attend. Returns [B, L, H*D]."""
    fast_ok = key_mask is None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
    if backend == "sage" and fast_ok and _sageattn is not None:
        out = _sageattn(q, k, v, tensor_layout="NHD")
    elif backend == "flash_attn" and fast_ok and _flash_attn_func is not None:
        out = _flash_attn_func(q, k, v)
    else:
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=mask).transpose(1, 2)
    return out.flatten(2)
