"""What the FramePack Parallel node chose: one device per rank and the CFG split (no ComfyUI code, so tests can
import it without a ComfyUI)."""

from __future__ import annotations

from dataclasses import dataclass

from ..framepack_core.errors import InputError

ALL_GPUS = "all"
CPU_PREFIX = "cpu:"
MAX_RANKS = 16
MAX_CPU_RANKS = 8
MAX_GPUS_TEXT = 64
GPUS_HELP = ("'all' (every GPU this ComfyUI sees), CUDA indices such as '0,1' or '0,1,2,3', or 'cpu:N' for N CPU "
             "processes (slow; to try the feature without GPUs)")


@dataclass(frozen=True)
class ParallelChoice:
    devices: tuple[str, ...]
    cfg_parallel: bool


def parse_gpus(text: str, visible: int) -> tuple[str, ...]:
    """The device of each rank for the node's `gpus` text; InputError naming the fix when it cannot be used."""
    text = str(text).strip().lower().replace(" ", "")
    if len(text) > MAX_GPUS_TEXT:
        raise InputError(f"gpus is {len(text)} characters long; use {GPUS_HELP}")
    if text.startswith(CPU_PREFIX):
        count = text[len(CPU_PREFIX):]
        if not count.isdigit() or not 1 <= int(count) <= MAX_CPU_RANKS:
            raise InputError(f"gpus {text!r}: 'cpu:N' takes N from 1 to {MAX_CPU_RANKS}")
        return ("cpu",) * int(count)
    if text == ALL_GPUS:
        if visible < 1:
            raise InputError("gpus 'all': this ComfyUI sees no CUDA GPU; use 'cpu:2' to try parallel runs on the "
                             "CPU, or remove the FramePack Parallel node")
        return tuple(f"cuda:{i}" for i in range(min(visible, MAX_RANKS)))
    parts = text.split(",")
    if not all(p.isdigit() for p in parts) or len(parts) > MAX_RANKS:
        raise InputError(f"gpus {text!r} is not a GPU list: use {GPUS_HELP}")
    indices = [int(p) for p in parts]
    if len(set(indices)) != len(indices):
        raise InputError(f"gpus {text!r} names a GPU twice; each GPU runs one rank")
    missing = [i for i in indices if i >= visible]
    if missing:
        raise InputError(f"gpus {text!r}: this ComfyUI sees {visible} CUDA GPU(s) (0-{visible - 1}), not "
                         f"{', '.join(map(str, missing))}")
    return tuple(f"cuda:{i}" for i in indices)
