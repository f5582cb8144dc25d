"""framepack_core: a standalone PyTorch implementation of FramePack (packed-context image-to-video).

Imports only torch, safetensors, einops and numpy; no ComfyUI.

The names below load their module on first use (PEP 562), so `import framepack_core.limits` (the option lists and
ranges the API client needs) does not pull in torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FramePackConfig": "config", "RELEASED": "config", "TINY": "config",
    "VAE_SCALING_FACTOR": "config", "MAX_TEXT_TOKENS": "config",
    "FramePackError": "errors", "CheckpointError": "errors", "InputError": "errors", "Interrupted": "errors",
    "FramePackTransformer": "transformer", "SectionContext": "transformer", "TeaCache": "teacache",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
