"""Low-VRAM execution: run the 13B transformer on a GPU with far less memory than its weights.

The small modules (embedders, token refiner, output head) live on the device. Of the 60 transformer blocks, as
many as fit — after leaving `reserve_bytes` free for activations — stay resident; the others stay in CPU memory
and are streamed: each one is copied to the device right before it runs (the next one is already being copied on
a side stream while the current one computes) and dropped right after. With everything fitting, nothing streams.
On the CPU the streamer changes nothing (the copies are the tensors themselves), which keeps its code path
testable without a GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)

GiB = 1024 ** 3


def module_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


@dataclass(frozen=True)
class ResidencyPlan:
    resident_blocks: int  # the first N blocks (in execution order) stay on the device
    streamed_blocks: int
    device_weight_bytes: int  # weights kept on the device (fixed modules + resident blocks)
    peak_stream_bytes: int  # at most two streamed blocks in flight (current + prefetched)

    @property
    def fully_resident(self) -> bool:
        return self.streamed_blocks == 0


def plan_residency(block_bytes: list[int], fixed_bytes: int, free_bytes: int, reserve_bytes: int,
                   force_stream: bool = False) -> ResidencyPlan:
    """How many blocks can stay on the device: fill `free - reserve - fixed - room for two streamed blocks`.
    `force_stream` (ComfyUI's --lowvram/--novram) keeps no block resident."""
    budget = free_bytes - reserve_bytes - fixed_bytes
    if not force_stream and budget >= sum(block_bytes):
        return ResidencyPlan(len(block_bytes), 0, fixed_bytes + sum(block_bytes), 0)
    stream_room = 2 * max(block_bytes, default=0)
    budget -= stream_room
    resident, used = 0, 0
    if not force_stream:
        for size in block_bytes:
            if used + size > budget:
                break
            used += size
            resident += 1
    return ResidencyPlan(resident, len(block_bytes) - resident, fixed_bytes + used, stream_room)


class BlockStreamer:
    """Installs itself as `model.block_runner`; see the module docstring."""

    def __init__(self, model: nn.Module, device: torch.device | str, reserve_bytes: int = 6 * GiB,
                 force_stream: bool = False, free_bytes: int | None = None):
        self.model = model
        self.device = torch.device(device)
        blocks = model.blocks
        fixed = [m for name, m in model.named_children() if name not in ("transformer_blocks", "single_transformer_blocks")]
        if free_bytes is None:
            free_bytes = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else 1 << 62
        fixed_bytes = sum(module_bytes(m) for m in fixed)
        self.plan = plan_residency([module_bytes(b) for b in blocks], fixed_bytes, free_bytes, reserve_bytes,
                                   force_stream)
        resident = blocks[: self.plan.resident_blocks]
        self.resident = set(map(id, resident))
        # Device copies are swapped in and the CPU tensors kept, so release() frees the device without a new
        # CPU copy (weights loaded from safetensors stay memory-mapped).
        self._restore: list[tuple[nn.Module, dict]] = []
        for module in [*fixed, *resident]:
            copies = {name: t.to(self.device, non_blocking=True) for name, t in _tensors(module)}
            self._restore.append((module, _swap_in(module, copies)))
        self.streamed = [b for b in blocks if id(b) not in self.resident]
        self._next_of = {id(a): b for a, b in zip(self.streamed, self.streamed[1:])}
        self._copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._pending: dict[int, tuple[dict, torch.cuda.Event | None]] = {}
        model.block_runner = self.run
        log.info("FramePack offload: %d blocks resident, %d streamed, %.2f GB of weights on %s",
                 self.plan.resident_blocks, self.plan.streamed_blocks, self.plan.device_weight_bytes / GiB, self.device)

    def _start_copy(self, block: nn.Module) -> None:
        if id(block) in self._pending:
            return
        stream = self._copy_stream
        with torch.cuda.stream(stream) if stream is not None else _nullcontext():
            copies = {name: t.to(self.device, non_blocking=True) for name, t in _tensors(block)}
        event = None
        if stream is not None:
            event = torch.cuda.Event()
            event.record(stream)
        self._pending[id(block)] = (copies, event)

    def run(self, block: nn.Module, fn):
        if id(block) in self.resident:
            return fn()
        self._start_copy(block)
        copies, event = self._pending.pop(id(block))
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)
            for t in copies.values():
                t.record_stream(torch.cuda.current_stream(self.device))
        nxt = self._next_of.get(id(block))
        if nxt is not None:
            self._start_copy(nxt)  # overlaps with this block's compute
        originals = _swap_in(block, copies)
        try:
            return fn()
        finally:
            _swap_in(block, originals)

    def release(self) -> None:
        """Puts every weight back on its CPU tensor and drops the device copies."""
        self.model.block_runner = None
        self._pending.clear()
        for module, originals in reversed(self._restore):
            _swap_in(module, originals)
        self._restore.clear()


def _tensors(module: nn.Module):
    for name, p in module.named_parameters():
        yield name, p.data
    for name, b in module.named_buffers():
        yield name, b


def _swap_in(module: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Points the module's parameters at other tensors (same values, other device); returns the previous ones."""
    previous = {}
    for name, tensor in tensors.items():
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        current = getattr(owner, attr)
        previous[name] = current.data
        current.data = tensor
    return previous


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
