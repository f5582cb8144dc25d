"""Which device a ComfyUI we start runs on: the GPU when the torch of ComfyUI's interpreter sees CUDA, the CPU
otherwise or when asked. One decision (:func:`choose_device`), used by scripts/demo.py and by
``scripts/comfy_env.sh start``; the tests' servers always ask for the CPU.

The probe runs in ComfyUI's interpreter, not in ours, because that is the torch that will run the model (a user's
COMFYUI_PYTHON may have another build than the venv's).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

_PROBE = """
import json
try:
    import torch
except Exception as err:
    print(json.dumps({"torch": None, "error": repr(err)}))
else:
    seen = torch.cuda.is_available()
    print(json.dumps({"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda": seen,
                      "name": torch.cuda.get_device_name(0) if seen else None}))
"""


@dataclass(frozen=True)
class TorchCuda:
    """What the interpreter's torch says about CUDA."""
    torch_version: str | None
    cuda_build: str | None  # torch.version.cuda: None for a CPU-only build
    available: bool
    device_name: str | None = None


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda" or "cpu"
    reason: str
    comfy_args: tuple[str, ...]  # main.py arguments that make ComfyUI use that device

    def line(self) -> str:
        return f"Device: {self.device} ({self.reason})"


def probe_torch_cuda(python: str | Path, timeout: float = 120.0) -> TorchCuda:
    """Asks ``python`` (ComfyUI's interpreter) whether its torch sees a CUDA device."""
    done = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return TorchCuda(None, None, False)
    found = json.loads(lines[-1])
    return TorchCuda(found.get("torch"), found.get("cuda_build"), bool(found.get("cuda")), found.get("name"))


def choose_device(cuda: TorchCuda, force_cpu: bool = False) -> DeviceChoice:
    """GPU when torch sees CUDA and the CPU is not forced; the reason says which of those decided it."""
    if force_cpu:
        return DeviceChoice("cpu", "--cpu given", ("--cpu",))
    if cuda.available:
        return DeviceChoice("cuda", f"torch {cuda.torch_version} sees {cuda.device_name or 'a CUDA device'}", ())
    if cuda.torch_version is None:
        why = "ComfyUI's python could not import torch"
    elif cuda.cuda_build is None:
        why = f"torch {cuda.torch_version} is a CPU-only build"
    else:
        why = f"torch {cuda.torch_version} (CUDA {cuda.cuda_build} build) sees no CUDA device"
    return DeviceChoice("cpu", why, ("--cpu",))
