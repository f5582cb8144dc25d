"""FramePack Parallel: one video on several GPUs (sequence and CFG parallelism, framepack_core/parallel/).

The node only names the GPUs; the sampler hands its job to a persistent worker group (one process per GPU, each
with its own copy of the model) kept here between jobs. A new model, other GPUs or another CFG split stop the old
group and start a new one; a dead or failed worker stops it and the next job starts a fresh one.
"""

from __future__ import annotations

import logging
import threading

import comfy.model_management as mm
import comfy.model_patcher
import torch
from comfy_api.latest import io

from ..framepack_core.config import RELEASED
from ..framepack_core.errors import InputError
from ..framepack_core.parallel import GroupSpec, WorkerGroup, check_layout
from .parallel_choice import ALL_GPUS, GPUS_HELP, ParallelChoice, parse_gpus
from .types import CATEGORY, FramePackParallel

log = logging.getLogger("FramePack")
def _visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class FramePackParallelNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FramePackParallel", display_name="FramePack Parallel", category=CATEGORY,
            description="Runs the sampler on several GPUs: each section's tokens split across them (Ulysses sequence "
                        "parallelism; FramePack's 24 heads allow 2, 3, 4, 6 or 8), and with cfg_parallel the "
                        "positive and negative prompts on two halves at once. Same video as on one GPU. Each GPU "
                        "loads its own copy of the model (blocks that do not fit stream).",
            inputs=[
                io.String.Input("gpus", default=ALL_GPUS, tooltip=f"Which GPUs: {GPUS_HELP}"),
                io.Boolean.Input("cfg_parallel", default=False,
                                 tooltip="With cfg_scale != 1, run the negative prompt on the other half of the "
                                         "GPUs at the same time (needs an even count)"),
            ],
            outputs=[FramePackParallel.Output(display_name="parallel")],
        )

    @classmethod
    def validate_inputs(cls, gpus, cfg_parallel):
        try:
            parse_gpus(gpus, _visible_gpus())
        except InputError as err:
            return str(err)
        return True

    @classmethod
    def execute(cls, gpus, cfg_parallel):
        devices = parse_gpus(gpus, _visible_gpus())
        # the released models' heads; the sampler checks the loaded model's
        check_layout(len(devices), RELEASED.num_attention_heads, cfg_parallel)
        return io.NodeOutput(ParallelChoice(devices, bool(cfg_parallel)))


# -- the worker group kept between jobs -----------------------------------------------------------------------

class WorkerGroupPatcher(comfy.model_patcher.ModelPatcher):
    """The worker group as ComfyUI's model management sees it. Registered with every parallel job, so that "Unload
    models" (/free), and ComfyUI needing the memory the group's rank holds on ComfyUI's own GPU, stop the group (the
    next parallel job starts a new one)."""

    def __init__(self, group: WorkerGroup, weight_bytes: int):
        device = mm.get_torch_device()
        # what the group holds on ComfyUI's device: a rank's weights when one rank runs there, else nothing
        holds = weight_bytes if str(device) in group.spec.devices else 0
        super().__init__(torch.nn.Module(), load_device=device, offload_device=torch.device("cpu"), size=holds)
        self.group = group

    def model_size(self) -> int:
        return self.size

    def loaded_size(self) -> int:
        return self.size if self.group.alive else 0

    def current_loaded_device(self):
        return self.load_device

    def model_dtype(self):
        return torch.float32

    def lowvram_patch_counter(self) -> int:
        return 0

    def clone(self, *args, **kwargs):
        raise NotImplementedError("the FramePack worker group is not a ComfyUI model: it has no clones")

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        return 0  # the workers placed their weights themselves

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
        freed = self.loaded_size()
        stop_worker_group(self.group)
        return freed

    def detach(self, unpatch_all=True):
        if unpatch_all:
            stop_worker_group(self.group)
        return self.model


_lock = threading.RLock()
_group: WorkerGroup | None = None
_patcher: WorkerGroupPatcher | None = None


def worker_group(handle, choice: ParallelChoice) -> WorkerGroup:
    """The running group for this model and these GPUs, started (and any other stopped) when needed, and registered
    with ComfyUI's model management for this job."""
    global _group, _patcher
    if handle.spec is None:
        raise InputError("this FramePack model was not loaded by Load FramePack Model, so parallel workers cannot "
                         "load it; connect the loader node's output")
    check_layout(len(choice.devices), handle.transformer.config.num_attention_heads, choice.cfg_parallel)
    spec = GroupSpec(handle.spec, choice.devices, choice.cfg_parallel)
    with _lock:
        if _group is not None and (_group.spec != spec or not _group.alive):
            stop_worker_group()
        if _group is None:
            if any(d.startswith("cuda") for d in spec.devices):
                # this process's own placement of the model would hold GPU memory the workers need
                handle.patcher.release()
                mm.soft_empty_cache()
            log.info("FramePack: starting %d parallel workers for %s", spec.world, handle.name)
            _group = WorkerGroup(spec)
            _patcher = WorkerGroupPatcher(_group, handle.patcher.model_size())
        mm.load_models_gpu([_patcher])
        return _group


def stop_worker_group(group: WorkerGroup | None = None) -> None:
    """Stops the running group (only if it is `group`, when given)."""
    global _group, _patcher
    with _lock:
        if _group is not None and (group is None or group is _group):
            log.info("FramePack: stopping the parallel workers on %s", ", ".join(_group.spec.devices))
            _group.stop()
            _group, _patcher = None, None
