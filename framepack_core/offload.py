"""Low-VRAM execution: run the 13B transformer on a GPU with far less memory than its weights.

The small modules (embedders, token refiner, output head) live on the device. Of the 60 transformer blocks the first
ones in execution order stay resident, as many as fit next to `reserve_bytes` kept free for activations; the others
stay in CPU memory and are streamed through two preallocated device buffers ("slots"). While a block computes from
one slot, its successor is copied into the other on a side stream: the copy is issued right after the current
block's kernels are queued, and waits (a CUDA event) until the block that last read that slot has finished. So
exactly two streamed blocks are ever on the device, the plan counts exactly that, and nothing is allocated while
streaming (no allocator growth, whichever allocator backend runs). After the last streamed block the first one is
copied again, overlapping the output head, the sampler and the next step's resident blocks.

What streams is each block's tensors as stored: a GGUF-quantized weight moves as its packed bytes (gguf_linear.py) and
is dequantized on the device at its matmul. Per step, the released model's 60 blocks move 24.9 GB in bf16, 15.9 GB
with fp8 storage, 13.2 GB in Q8_0 and 7.0 GB in Q4_0 (a dual-stream block: 680 / 453 / 361 / 191 MB).

`pin_memory` packs each streamed block's CPU tensors into one page-locked buffer: its copy is then one truly
asynchronous transfer, where pageable memory makes the CPU stage every copy itself. It locks the streamed blocks'
bytes in RAM (all 60 blocks: 24 GB in bf16, 12 GB in fp8), which the OS can then neither swap nor reclaim.

The resident set can shrink and grow in place (ComfyUI's model management asks for memory between jobs). A
placement that runs out of memory half-way is undone (every module back on its CPU tensors) before the error is
re-raised. On other devices than CUDA copies are plain synchronous copies; on the CPU nothing needs to move, and
a forced streaming run there goes through the same slot code (which is how the tests exercise it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)

GiB = 1024 ** 3
DEFAULT_RESERVE_BYTES = 6 * GiB
SLOTS = 2
ALIGN = 512  # every tensor starts on a multiple of this in a slot (the CUDA allocator's own granularity)
PAGE = 4096


def module_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every tensor that moves with the module: parameters and all buffers, the non-persistent ones included (the
    runtime LoRA adapters' factors), which state_dict() leaves out."""
    return [(name, p.data) for name, p in module.named_parameters()] + list(module.named_buffers())


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


def module_bytes(module: nn.Module) -> int:
    """Device bytes the module takes, each tensor rounded up as the allocator and the slots do."""
    return sum(_aligned(t.numel() * t.element_size()) for _, t in module_tensors(module))


@dataclass(frozen=True)
class ResidencyPlan:
    resident_blocks: int  # the first N blocks (in execution order) stay on the device
    streamed_blocks: int
    device_weight_bytes: int  # weights kept on the device (fixed modules + resident blocks)
    peak_stream_bytes: int  # the two slots, each the size of the largest STREAMED block (0 when none streams)

    @property
    def fully_resident(self) -> bool:
        return self.streamed_blocks == 0

    @property
    def device_bytes(self) -> int:
        return self.device_weight_bytes + self.peak_stream_bytes


def residency(block_bytes: list[int], fixed_bytes: int, resident: int) -> ResidencyPlan:
    streamed = block_bytes[resident:]
    return ResidencyPlan(resident, len(streamed), fixed_bytes + sum(block_bytes[:resident]),
                         SLOTS * max(streamed, default=0))


def plan_residency(block_bytes: list[int], fixed_bytes: int, free_bytes: int, reserve_bytes: int,
                   force_stream: bool = False) -> ResidencyPlan:
    """The most resident blocks whose weights, with the slots the streamed rest needs, fit in `free - reserve`.
    Only the streamed blocks size the slots: when only single-stream blocks stream, no room is held back for the
    larger dual-stream blocks. `force_stream` (ComfyUI's --lowvram/--novram) keeps no block resident; when nothing
    fits, every block streams (the smallest footprint)."""
    budget = free_bytes - reserve_bytes
    if not force_stream:
        for resident in range(len(block_bytes), 0, -1):
            plan = residency(block_bytes, fixed_bytes, resident)
            if plan.device_bytes <= budget:
                return plan
    return residency(block_bytes, fixed_bytes, 0)


def free_device_bytes(device: torch.device) -> int:
    """Free device memory, counting what PyTorch's caching allocator holds unused; unbounded off CUDA."""
    if device.type != "cuda":
        return 1 << 62
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


class CudaCopies:
    """Copies on a side stream, ordered against the compute (current) stream with events."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def copy(self, pairs, after):
        """Queues dst.copy_(src) for each pair once `after` (an event of the compute stream, or None) has passed;
        returns the event that marks the copies done."""
        with torch.cuda.stream(self.stream):
            if after is not None:
                self.stream.wait_event(after)
            for dst, src in pairs:
                dst.copy_(src, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        return done

    def compute_waits(self, event) -> None:
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)

    def compute_done(self):
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))
        return done

    def drain(self) -> None:
        """Work queued on the compute stream from now on runs after every copy queued so far."""
        torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def synchronize(self) -> None:
        """Waits until every copy and kernel queued so far has finished (before host memory is unpinned)."""
        torch.cuda.synchronize(self.device)


class InlineCopies:
    """Other devices and the CPU: a copy is complete when copy_ returns, as far as later work can tell."""

    def copy(self, pairs, after):
        for dst, src in pairs:
            dst.copy_(src)
        return None

    def compute_waits(self, event) -> None:
        pass

    def compute_done(self):
        return None

    def drain(self) -> None:
        pass

    def synchronize(self) -> None:
        pass


class _Block:
    """A transformer block as the streamer moves it: its tensors' places in a slot and their CPU sources."""

    def __init__(self, index: int, module: nn.Module):
        self.index, self.module = index, module
        self.targets, self.sources, self.layout = [], [], []
        offset = 0
        for name, tensor in module_tensors(module):
            owner_name, _, attr = name.rpartition(".")
            self.targets.append((module.get_submodule(owner_name) if owner_name else module, attr))
            self.sources.append(tensor)
            self.layout.append((offset, tensor.numel() * tensor.element_size(), tensor.dtype, tensor.shape))
            offset += _aligned(tensor.numel() * tensor.element_size())
        self.nbytes = offset
        self.host: torch.Tensor | None = None  # the packed page-locked copy, when pinned

    def views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """This block's tensors laid out in a flat uint8 buffer (a slot, or the packed host copy)."""
        return [buffer[o:o + n].view(dtype).view(shape) for o, n, dtype, shape in self.layout]

    def swap(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Points the block's parameters and buffers at other tensors; returns the previous ones."""
        previous = []
        for (owner, attr), tensor in zip(self.targets, tensors):
            current = getattr(owner, attr)
            previous.append(current.data)
            current.data = tensor
        return previous


class _Slot:
    def __init__(self, index: int, buffer: torch.Tensor):
        self.index, self.buffer = index, buffer
        self.holds: _Block | None = None  # whose weights the buffer holds (or is being filled with)
        self.ready = None  # event: the copy into the buffer is done
        self.free = None  # event: the last compute reading the buffer is done
        self._views: dict[int, list[torch.Tensor]] = {}

    def views_of(self, block: _Block) -> list[torch.Tensor]:
        if block.index not in self._views:
            self._views[block.index] = block.views(self.buffer)
        return self._views[block.index]


class BlockStreamer:
    """Installs itself as `model.block_runner`; see the module docstring."""

    def __init__(self, model: nn.Module, device: torch.device | str, reserve_bytes: int = DEFAULT_RESERVE_BYTES,
                 force_stream: bool = False, free_bytes: int | None = None, pin_memory: bool = False,
                 copies=None):
        self.model = model
        self.device = torch.device(device)
        self.pin_memory = pin_memory and self.device.type == "cuda"
        self.copies = copies or (CudaCopies(self.device) if self.device.type == "cuda" else InlineCopies())
        self.blocks = [_Block(i, b) for i, b in enumerate(model.blocks)]
        self.fixed = [m for name, m in model.named_children()
                      if name not in ("transformer_blocks", "single_transformer_blocks")]
        self._block_bytes = [b.nbytes for b in self.blocks]
        self._fixed_bytes = sum(module_bytes(m) for m in self.fixed)
        self._placed: dict[int, tuple[nn.Module, dict]] = {}
        self._slots: list[_Slot] = []
        self._resident = 0
        self._streamed: dict[int, _Block] = {}
        self._next: dict[int, _Block] = {}
        self._last_slot: _Slot | None = None
        self._pinned: list[torch.Tensor] = []
        self.copied_bytes = 0  # streamed bytes copied so far (pinned copies count too)
        if free_bytes is None:
            free_bytes = free_device_bytes(self.device)
        self.plan = plan_residency(self._block_bytes, self._fixed_bytes, free_bytes, reserve_bytes, force_stream)
        try:
            for module in self.fixed:
                self._place(module)
            self._set_resident(self.plan.resident_blocks)
        except BaseException:
            self.release()
            raise
        model.block_runner = self.run
        log.info("FramePack offload: %d blocks resident, %d streamed%s, %.2f GB of weights and %.2f GB of stream "
                 "buffers on %s", self.plan.resident_blocks, self.plan.streamed_blocks,
                 " from pinned memory" if self._pinned else "", self.plan.device_weight_bytes / GiB,
                 self.plan.peak_stream_bytes / GiB, self.device)

    @property
    def device_bytes(self) -> int:
        return self.plan.device_bytes

    # -- placing ---------------------------------------------------------------------------------------------

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True)

    def _allocate(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes, dtype=torch.uint8, device=self.device)

    def _place(self, module: nn.Module) -> None:
        copies = {name: self._to_device(t) for name, t in module_tensors(module)}
        self._placed[id(module)] = (module, _swap_in(module, copies))

    def _unplace(self, module: nn.Module) -> None:
        module, originals = self._placed.pop(id(module))
        _swap_in(module, originals)

    def _set_resident(self, target: int) -> None:
        """Demotes or promotes blocks so the first `target` are resident; frees before it allocates."""
        while self._resident > target:
            self._resident -= 1
            self._unplace(self.blocks[self._resident].module)
        self._size_slots(max(self._block_bytes[target:], default=0))
        while self._resident < target:
            self._place(self.blocks[self._resident].module)
            self._resident += 1
        streamed = self.blocks[target:]
        self._streamed = {id(b.module): b for b in streamed}
        # cyclic: after the last streamed block the first one is fetched for the next step
        self._next = {id(a.module): b for a, b in zip(streamed, streamed[1:] + streamed[:1])}
        if self.pin_memory:
            for block in streamed:
                self._pin(block)
        self.plan = residency(self._block_bytes, self._fixed_bytes, target)

    def _size_slots(self, nbytes: int) -> None:
        if self._slots and self._slots[0].buffer.numel() == nbytes:
            return
        self.copies.drain()
        self._slots, self._last_slot = [], None
        if nbytes:
            self._slots = [_Slot(i, self._allocate(nbytes)) for i in range(SLOTS)]

    def shrink(self, nbytes: int) -> int:
        """Demotes resident blocks until at least `nbytes` of device memory are freed (or none is left resident);
        returns the bytes freed."""
        before = self.plan.device_bytes
        target = 0
        for resident in range(self._resident - 1, -1, -1):
            if before - residency(self._block_bytes, self._fixed_bytes, resident).device_bytes >= nbytes:
                target = resident
                break
        self._resize(target)
        return before - self.plan.device_bytes

    def grow(self, nbytes: int) -> int:
        """Promotes streamed blocks while at most `nbytes` more device memory is used; returns the bytes used."""
        before = self.plan.device_bytes
        target = self._resident
        for resident in range(self._resident + 1, len(self.blocks) + 1):
            if residency(self._block_bytes, self._fixed_bytes, resident).device_bytes - before <= nbytes:
                target = resident
        if target != self._resident:
            self._resize(target)
        return self.plan.device_bytes - before

    def _resize(self, target: int) -> None:
        try:
            self._set_resident(target)
        except BaseException:
            self.release()
            raise

    # -- pinned host memory ----------------------------------------------------------------------------------

    def _pin(self, block: _Block) -> None:
        """Packs the block's CPU tensors into one page-aligned buffer and page-locks it in place (no rounding up,
        unlike PyTorch's pinned allocator); the block's CPU tensors then live in it."""
        if block.host is not None or not self.pin_memory:
            return
        size = -(-block.nbytes // PAGE) * PAGE
        raw = torch.empty(size + PAGE, dtype=torch.uint8)
        start = -raw.data_ptr() % PAGE
        host = raw[start:start + size]  # whole pages of its own: no page shared with another registration
        views = block.views(host)
        for view, source in zip(views, block.sources):
            view.copy_(source)
        if not _host_register(host):
            log.warning("FramePack offload: page-locking %.2f GB failed; streaming from pageable memory",
                        size / GiB)
            self.pin_memory = False
            return
        block.swap(views)
        block.sources, block.host = views, host
        self._pinned.append(host)

    # -- running ---------------------------------------------------------------------------------------------

    def _holding(self, block: _Block) -> _Slot | None:
        return next((s for s in self._slots if s.holds is block), None)

    def _other(self, slot: _Slot | None) -> _Slot:
        return self._slots[0] if slot is None else self._slots[1 - slot.index]

    def _fill(self, slot: _Slot, block: _Block) -> _Slot:
        if block.host is not None:
            pairs = [(slot.buffer[:block.nbytes], block.host[:block.nbytes])]
        else:
            pairs = list(zip(slot.views_of(block), block.sources))
        slot.ready = self.copies.copy(pairs, after=slot.free)
        slot.holds = block
        self.copied_bytes += block.nbytes
        return slot

    def run(self, block: nn.Module, fn):
        streamed = self._streamed.get(id(block))
        if streamed is None:
            return fn()
        slot = self._holding(streamed) or self._fill(self._other(self._last_slot), streamed)
        self.copies.compute_waits(slot.ready)
        originals = streamed.swap(slot.views_of(streamed))
        try:
            out = fn()
        finally:
            streamed.swap(originals)
            slot.free = self.copies.compute_done()
            self._last_slot = slot
        successor = self._next[id(block)]
        if self._holding(successor) is None:
            self._fill(self._other(slot), successor)  # queued after this block's kernels: it overlaps them
        return out

    def release(self) -> None:
        """Puts every weight back on its CPU tensor and frees the device copies and the slots."""
        self.model.block_runner = None
        self.copies.drain()
        self._slots, self._last_slot, self._streamed, self._next = [], None, {}, {}
        for module, originals in reversed(list(self._placed.values())):
            _swap_in(module, originals)
        self._placed.clear()
        self._resident = 0
        if self._pinned:
            self.copies.synchronize()  # no copy may still be reading a buffer when it is unpinned
        for host in self._pinned:
            _host_unregister(host)
        self._pinned.clear()


def _host_register(host: torch.Tensor) -> bool:
    cudart = torch.cuda.cudart()
    if int(cudart.cudaHostRegister(host.data_ptr(), host.numel(), 0)) == 0:
        return True
    clear = getattr(cudart, "cudaGetLastError", None)
    if clear is not None:
        clear()  # a failed registration must not surface later as the error of an unrelated kernel
    return False


def _host_unregister(host: torch.Tensor) -> None:
    torch.cuda.cudart().cudaHostUnregister(host.data_ptr())


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
