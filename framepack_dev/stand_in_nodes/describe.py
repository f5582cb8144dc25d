"""Summarise any node value (tensors, lists, dicts, objects) as JSON-able data (torch only; no comfy imports).

Used by the FramePackTestDescribe output node so tests can see, over HTTP, what a node produced
(CONDITIONING, CLIP_VISION_OUTPUT, LATENT, custom types...), and by tests to summarise the values they
expect the same way.
"""

from __future__ import annotations

from typing import Any

import torch

_MAX_DEPTH = 6
_MAX_ITEMS = 32


def describe_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    summary: dict[str, Any] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", "")}
    if tensor.numel() and not tensor.is_complex():
        values = tensor.detach().to("cpu", torch.float64)
        summary.update(mean=values.mean().item(), std=values.std(unbiased=False).item(),
                       min=values.min().item(), max=values.max().item())
    return summary


def describe(value: Any, depth: int = 0) -> Any:
    """A JSON-able summary: tensors -> {"shape", "dtype", "mean", "std", "min", "max"}; lists/tuples/dicts
    recursively (first 32 items); plain objects -> {"class": name, **their attributes}; scalars as is."""
    if isinstance(value, torch.Tensor):
        return describe_tensor(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth >= _MAX_DEPTH:
        return {"class": type(value).__name__, "truncated": True}
    if isinstance(value, (list, tuple)):
        return [describe(item, depth + 1) for item in value[:_MAX_ITEMS]]
    if isinstance(value, dict):
        return {str(k): describe(v, depth + 1) for k, v in list(value.items())[:_MAX_ITEMS]}
    attributes = getattr(value, "__dict__", None)
    summary: dict[str, Any] = {"class": type(value).__name__}
    if isinstance(attributes, dict):
        summary.update({str(k): describe(v, depth + 1) for k, v in list(attributes.items())[:_MAX_ITEMS]
                        if not str(k).startswith("_")})
    return summary
