"""The FramePack transformer as ComfyUI's model management sees it.

`FramePackPatcher` is a ModelPatcher whose load and unload place the transformer with the core's BlockStreamer
instead of moving ComfyUI modules. Loaded through `comfy.model_management.load_models_gpu`, the placement outlives
the job (the next job re-uploads nothing) and ComfyUI takes the memory back when it needs it: "Unload models", the
load of another model (the VAE, the text encoders), --reserve-vram and out-of-memory errors. A partial unload
demotes resident blocks to streamed ones; a full one puts every weight back on its CPU tensor.
"""

from __future__ import annotations

import logging

import comfy.model_management as mm
import comfy.model_patcher
import torch

from ..framepack_core.offload import DEFAULT_RESERVE_BYTES, GiB, BlockStreamer, module_bytes

log = logging.getLogger("FramePack")
UNCAPPED = 1e30  # load_models_gpu passes 1e32 when it does not cap the weights' memory


class FramePackPatcher(comfy.model_patcher.ModelPatcher):
    def __init__(self, transformer: torch.nn.Module, name: str, pin_memory: bool = False):
        super().__init__(transformer, load_device=mm.get_torch_device(), offload_device=torch.device("cpu"),
                         size=module_bytes(transformer))
        self.name = name
        self.pin_memory = pin_memory
        self.reserve_bytes = DEFAULT_RESERVE_BYTES  # the sampler sets each job's before loading
        self.streamer: BlockStreamer | None = None
        self.placements = 0

    # -- what model management asks ------------------------------------------------------------------------

    def model_size(self) -> int:
        return self.size

    def loaded_size(self) -> int:
        return 0 if self.streamer is None else self.streamer.device_bytes

    def current_loaded_device(self):
        return self.offload_device if self.streamer is None else self.load_device

    def model_dtype(self):
        return self.model.compute_dtype

    def lowvram_patch_counter(self) -> int:
        return 0

    def clone(self, *args, **kwargs):
        raise NotImplementedError("the FramePack transformer is not a ComfyUI model: it has no clones")

    # -- placing -------------------------------------------------------------------------------------------

    def _headroom(self, device: torch.device) -> int:
        """Free memory beyond ComfyUI's --reserve-vram and this job's activation reserve."""
        return int(mm.get_free_memory(device) - mm.extra_reserved_memory() - self.reserve_bytes)

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        """Places the transformer the first time; later, grows or shrinks the resident set to the free memory
        (a job at a larger size needs a larger reserve). Returns the device bytes added."""
        device = torch.device(device_to)
        force_stream = mm.vram_state in (mm.VRAMState.LOW_VRAM, mm.VRAMState.NO_VRAM)
        if self.streamer is None:
            free = None
            if device.type != "cpu":
                free = self._headroom(device) + self.reserve_bytes
                if extra_memory < UNCAPPED:  # the weights' share ComfyUI computed for this load
                    free = min(free, int(extra_memory) + self.reserve_bytes)
            self.streamer = BlockStreamer(self.model, device, reserve_bytes=self.reserve_bytes,
                                          force_stream=force_stream, free_bytes=free, pin_memory=self.pin_memory)
            self.placements += 1
            log.info("FramePack: %s placed on %s (%.2f GB, %.3f GB kept free for activations; placement %d of this "
                     "model)", self.name, device, self.streamer.device_bytes / GiB, self.reserve_bytes / GiB,
                     self.placements)
            return self.streamer.device_bytes
        if device.type == "cpu" or force_stream:
            return 0
        headroom = self._headroom(device)
        if headroom < 0:
            self._resize(self.streamer.shrink, -headroom)
            return 0
        return self._resize(self.streamer.grow, min(headroom, int(extra_memory)))

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
        if self.streamer is None:
            return 0
        freed = self._resize(self.streamer.shrink, int(memory_to_free))
        log.info("FramePack: %s gave back %.2f GB (%d blocks now streamed)", self.name, freed / GiB,
                 self.streamer.plan.streamed_blocks)
        return freed

    def _resize(self, change, nbytes: int) -> int:
        try:
            return change(nbytes)
        except BaseException:
            self.streamer = None  # the streamer undid its whole placement before re-raising
            raise

    def detach(self, unpatch_all=True):
        # unpatch_all=False is how load_models_gpu re-registers a model that stays loaded: keep the placement
        if unpatch_all:
            self.release()
        return self.model

    def release(self) -> None:
        if self.streamer is not None:
            self.streamer.release()
            self.streamer = None
            log.info("FramePack: %s released from %s", self.name, self.load_device)

    def __del__(self):
        self.release()


def place(patcher: FramePackPatcher, reserve_bytes: int) -> torch.device:
    """Registers the transformer with model management for this job (placing it, or adapting its placement to this
    job's reserve) and returns the device it runs on."""
    patcher.reserve_bytes = int(reserve_bytes)
    mm.load_models_gpu([patcher], memory_required=patcher.reserve_bytes)
    return patcher.load_device
