"""torch.compile for the FramePack transformer, one block at a time ("regional compilation").

Only the 20 dual-stream and 40 single-stream blocks are compiled, where nearly all the time goes. All blocks of a
kind share their `forward` code, and parameters are graph inputs, so each kind compiles once and every block of
that kind reuses the graph: start-up costs two compilations, not sixty, and the embedders, the output head and the
step caches (TeaCache/MagCache) stay eager. The block streamer keeps working: it swaps the weights' storage around
each block call, which a compiled block reads like any other input.

Token counts change between sections (balanced windows, the first and the last section), with the prompt (text
tokens) and between the guidance branches. `mark_token_dims` marks those sequence dimensions dynamic before the
blocks run, so one graph per kind serves them all.

Recompilations: a generation compiles each block kind once, 2 graphs in all, whatever the number of sections,
window sizes and prompt lengths. A kind compiles again only for a new structure: a key-padding mask (batch > 1),
another dtype or device, or runtime LoRA adapters (fp8 weights) on some blocks of the kind but not others. Dynamo
keeps at most `torch._dynamo.config.recompile_limit` graphs per kind (8 by default) and runs further variants
eagerly, so the count is bounded by 2 x that limit.
"""

from __future__ import annotations

import logging

import torch

from .errors import InputError
from .limits import COMPILE_MODES, DEFAULT_COMPILE_MODE

log = logging.getLogger(__name__)

# COMPILE_MODES leaves out "reduce-overhead" (CUDA graphs): CUDA graphs replay fixed input addresses, while the
# block streamer hands every streamed block freshly copied weights.


def unavailable_reason(device: torch.device | str) -> str | None:
    """Why inductor cannot compile for `device` (None when it can): it generates Triton kernels for NVIDIA GPUs
    and C++ for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        from torch.utils._triton import has_triton
        if not has_triton():
            return "torch.compile on NVIDIA GPUs needs Triton (pip install triton; on Windows triton-windows)"
    elif device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
            get_cpp_compiler()
        except Exception as err:  # any failure to find one means the same thing to the user
            return f"torch.compile on the CPU needs a C++ compiler ({err})"
    return None


def compile_blocks(model, mode: str = DEFAULT_COMPILE_MODE, backend="inductor",
                   device: torch.device | str | None = None) -> None:
    """Compiles each transformer block in place (lazily: the first forward pays the compilation).
    `backend` is torch.compile's (a name or a callable; tests pass a counting one); with `device`, inductor's
    needs for it are checked first, so a missing compiler is an error here rather than at the first step."""
    if mode not in COMPILE_MODES:
        raise InputError(f"compile mode {mode!r} must be one of {', '.join(COMPILE_MODES)}")
    reason = unavailable_reason(device) if device is not None and backend == "inductor" else None
    if reason:
        raise InputError(f"torch_compile is on, but {reason}; install it or turn torch_compile off")
    for block in model.blocks:
        block.compile(backend=backend, mode=None if mode == DEFAULT_COMPILE_MODE else mode)
    model.compile_mode = mode
    log.info("FramePack: transformer blocks compiled with torch.compile (%s); the first step compiles them", mode)


def mark_token_dims(*tensors_and_dims: tuple[torch.Tensor | None, int]) -> None:
    """Marks the token dimension of each (tensor, dim) dynamic for the compiled blocks. `maybe_` because a
    dimension that the code needs as a constant (a size-1 batch, say) is then specialised instead of failing."""
    for tensor, dim in tensors_and_dims:
        if tensor is not None:
            torch._dynamo.maybe_mark_dynamic(tensor, dim)
