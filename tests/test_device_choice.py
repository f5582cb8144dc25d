"""framepack_dev.device: the one decision of which device the demo's and `comfy_env.sh start`'s ComfyUI runs on,
from what ComfyUI's own interpreter's torch reports (a stand-in interpreter here prints the probe's answer)."""

from __future__ import annotations

import json
import sys

from framepack_dev.device import TorchCuda, choose_device, probe_torch_cuda

GPU = TorchCuda("2.14.1+cu130", "13.0", True, "NVIDIA H200")
NO_GPU = TorchCuda("2.14.1+cu130", "13.0", False)


def test_cuda_seen_runs_on_the_gpu():
    choice = choose_device(GPU)
    assert (choice.device, choice.comfy_args) == ("cuda", ())
    assert choice.line() == "Device: cuda (torch 2.14.1+cu130 sees NVIDIA H200)"


def test_no_cuda_runs_on_the_cpu_and_says_why():
    choice = choose_device(NO_GPU)
    assert (choice.device, choice.comfy_args) == ("cpu", ("--cpu",))
    assert choice.reason == "torch 2.14.1+cu130 (CUDA 13.0 build) sees no CUDA device"
    assert choose_device(TorchCuda("2.14.1+cpu", None, False)).reason == "torch 2.14.1+cpu is a CPU-only build"
    assert choose_device(TorchCuda(None, None, False)).reason == "ComfyUI's python could not import torch"


def test_cpu_forced_wins_over_a_gpu():
    choice = choose_device(GPU, force_cpu=True)
    assert (choice.device, choice.reason, choice.comfy_args) == ("cpu", "--cpu given", ("--cpu",))


def _stand_in_python(tmp_path, answer: dict | None, code: int = 0):
    script = tmp_path / "python"
    printed = f"echo '{json.dumps(answer)}'\n" if answer is not None else ""
    script.write_text(f"#!/bin/sh\n{printed}exit {code}\n")
    script.chmod(0o755)
    return script


def test_probe_reads_what_the_interpreter_reports(tmp_path):
    seen = _stand_in_python(tmp_path, {"torch": "2.14.1", "cuda_build": "13.0", "cuda": True, "name": "NVIDIA L4"})
    assert probe_torch_cuda(seen) == TorchCuda("2.14.1", "13.0", True, "NVIDIA L4")
    assert choose_device(probe_torch_cuda(seen)).device == "cuda"
    broken = _stand_in_python(tmp_path, None, code=1)
    assert probe_torch_cuda(broken) == TorchCuda(None, None, False)


def test_probe_of_this_interpreter_agrees_with_torch():
    import torch

    found = probe_torch_cuda(sys.executable)
    assert (found.torch_version, found.available) == (torch.__version__, torch.cuda.is_available())
