"""One video on several GPUs: sequence parallelism (Ulysses, ulysses.py) and CFG parallelism (mesh.py) over
torch.distributed, run by a persistent group of worker processes (workers.py, worker.py) inside ComfyUI or by
torchrun (cli.py)."""

from .mesh import ParallelMesh, check_layout
from .ulysses import SequenceParallel
from .spec import GroupSpec, ModelSpec
from .workers import WorkerGroup, WorkerGroupError

__all__ = ["GroupSpec", "ModelSpec", "ParallelMesh", "SequenceParallel", "WorkerGroup", "WorkerGroupError",
           "check_layout"]
