"""What a worker group is made of: the model to load (as the loader node loads it) and one device per rank."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..compile import compile_blocks
from ..fp8 import select_fp8_matmul
from ..limits import AUTO, DEFAULT_ATTENTION, DEFAULT_COMPUTE_DTYPE
from ..loading import load_framepack_model, stored_bytes
from ..lora_apply import apply_lora_stack


@dataclass(frozen=True)
class ModelSpec:
    """How to load the model, the way the loader node does, so that every rank builds the same one."""
    path: str
    compute_dtype: str = DEFAULT_COMPUTE_DTYPE
    storage: str = AUTO
    attention: str = DEFAULT_ATTENTION
    loras: tuple[tuple[str, float], ...] = ()
    compile_mode: str | None = None  # None: not compiled

    def stored_bytes(self) -> int | None:
        """The weights' bytes once loaded, from the files' headers alone (None for GGUF)."""
        return stored_bytes(self.path, compute_dtype=self.compute_dtype, storage=self.storage)

    def load(self, device: torch.device):
        model = load_framepack_model(self.path, compute_dtype=self.compute_dtype, storage=self.storage,
                                     attention_backend=self.attention)
        if self.loras:
            apply_lora_stack(model, list(self.loras))
        select_fp8_matmul(model, device)
        if self.compile_mode:
            compile_blocks(model, self.compile_mode, device=device)
        return model


@dataclass(frozen=True)
class GroupSpec:
    """A worker group: the model, one device per rank ("cuda:0", "cuda:1", ... or "cpu") and the CFG split."""
    model: ModelSpec
    devices: tuple[str, ...]
    cfg_parallel: bool = False

    @property
    def world(self) -> int:
        return len(self.devices)
