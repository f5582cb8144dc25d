"""Correctness on a CUDA GPU (bench/device_checks.sh runs it): generate_video end to end, 2 sections of 4 steps, with
a mid-size random model, checked against references on the same weights and inputs.

- bf16 on CUDA against fp32 on the CPU: relative L2 error of the latents, bound BF16_BOUND;
- every block streamed (offload.BlockStreamer, force_stream) against all weights resident: expected bitwise equal
  (the same kernels on the same values; the copies are exact), with the peak VRAM of both;
- fp8 (e4m3fn) weight storage, loaded from a safetensors file onto CUDA: relative L2 against bf16, bound FP8_BOUND;
- an interrupt in the middle of a section: Interrupted is raised after exactly the steps before it, the device
  memory goes back to what it was, and the next run gives the uninterrupted latents bit for bit;
- which of flash-attn and SageAttention imported (with the import error otherwise), and each one that did against
  SDPA (bound BF16_BOUND).

    python bench/gpu_correctness.py             # on a CUDA machine; JSON on stdout, exit 1 if a check fails
    python bench/gpu_correctness.py --dry-run   # the same code on the CPU with the tiny model (checks the script)
    python bench/gpu_correctness.py --device cpu   # the mid-size model with the CPU standing in for CUDA

Bounds: bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.4 %). One forward of the mid-size model in bf16 is
about 0.5 % (relative L2) from fp32 and the 8 sampler steps, the second section seeing the first one's output,
add to that: BF16_BOUND = 3 %. fp8 e4m3fn keeps 4 significant bits (2^-4 = 6 % per weight, averaged down over
each dot product): FP8_BOUND = 15 %. Both bounds are to be confirmed on the first GPU.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from framepack_core import RELEASED, TINY  # noqa: E402
from framepack_core.conditioning import ImageConditioning, TextConditioning  # noqa: E402
from framepack_core.errors import Interrupted  # noqa: E402
from framepack_core.generate import GenerationRequest, generate_video  # noqa: E402
from framepack_core.loading import load_framepack_model, save_framepack_model  # noqa: E402
from framepack_core.offload import BlockStreamer  # noqa: E402
from framepack_core.planning import plan_video  # noqa: E402
from framepack_dev.random_weights import random_model  # noqa: E402

MID = dataclasses.replace(RELEASED, num_attention_heads=4, num_layers=4, num_single_layers=8, num_refiner_layers=2)
BF16_BOUND, FP8_BOUND = 0.03, 0.15
NUM_FRAMES, STEPS = 73, 4  # 19 latents: 2 sections of 9
INTERRUPT_AFTER = STEPS + 2  # in the middle of the second section


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm())


def make_request(config, size: tuple[int, int], seed: int = 7) -> GenerationRequest:
    g = torch.Generator().manual_seed(seed)
    h, w = size[0] // 8, size[1] // 8
    start = ImageConditioning(torch.randn(1, 16, 1, h, w, generator=g),
                              torch.randn(1, 729, config.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, 64, config.text_embed_dim, generator=g),
                            torch.randn(1, config.pooled_projection_dim, generator=g))
    return GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=NUM_FRAMES, steps=STEPS, seed=seed)


class Device:
    """The device under test; a CPU standing in for CUDA has no memory statistics."""

    def __init__(self, name: str):
        self.device = torch.device(name)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float | None:
        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3) if self.cuda else None

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device) if self.cuda else 0


def run(model, request, dev: Device, **kwargs) -> tuple[torch.Tensor, float]:
    dev.sync()
    t0 = time.perf_counter()
    latents = generate_video(model, copy.deepcopy(request), device=dev.device, **kwargs).latents
    dev.sync()
    return latents.float().cpu(), round(time.perf_counter() - t0, 2)


def set_backend(model, backend: str) -> None:
    for module in model.modules():
        if hasattr(module, "backend"):
            module.backend = backend


def attention_imports() -> dict:
    found = {}
    for name, module in (("flash_attn", "flash_attn"), ("sage", "sageattention")):
        try:
            imported = importlib.import_module(module)
            found[name] = {"imported": True, "version": getattr(imported, "__version__", None)}
        except Exception as err:  # a missing wheel or a CUDA mismatch alike
            found[name] = {"imported": False, "error": f"{type(err).__name__}: {err}"[:300]}
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="the tiny model on the CPU: checks the script only")
    args = ap.parse_args()
    config, size = (TINY, (64, 64)) if args.dry_run else (MID, (256, 256))
    dev = Device("cpu" if args.dry_run else args.device)
    if dev.cuda and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device; use --dry-run or --device cpu"}))
        return 1
    request = make_request(config, size)
    assert len(plan_video(NUM_FRAMES).sections) == 2
    checks: dict[str, dict] = {}

    reference = random_model(config, torch.float32, "cpu", seed=0, std=0.05 if args.dry_run else 0.02)
    fp32_cpu, fp32_seconds = run(reference, request, Device("cpu"))

    bf16 = copy.deepcopy(reference).to(dev.device, torch.bfloat16)
    bf16.compute_dtype = torch.bfloat16
    dev.reset_peak()
    resident, seconds = run(bf16, request, dev)
    error = rel_l2(resident, fp32_cpu)
    checks["bf16_vs_fp32_cpu"] = {"rel_l2": round(error, 5), "bound": BF16_BOUND, "ok": error <= BF16_BOUND,
                                  "seconds": seconds, "fp32_cpu_seconds": fp32_seconds,
                                  "peak_vram_gb": dev.peak_gb()}

    # every block streamed from CPU copies of the same bf16 weights
    host = copy.deepcopy(reference).to(torch.bfloat16)
    host.compute_dtype = torch.bfloat16
    dev.reset_peak()
    streamer = BlockStreamer(host, dev.device, reserve_bytes=0, force_stream=True)
    try:
        streamed, seconds = run(host, request, dev)
    finally:
        streamer.release()
    checks["streamed_vs_resident"] = {
        "bitwise": bool(torch.equal(streamed, resident)), "max_abs_diff": float((streamed - resident).abs().max()),
        "ok": bool(torch.equal(streamed, resident)), "streamed_blocks": streamer.plan.streamed_blocks,
        "seconds": seconds, "peak_vram_gb": dev.peak_gb(),
        "resident_peak_vram_gb": checks["bf16_vs_fp32_cpu"]["peak_vram_gb"]}

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mid_bf16.safetensors"
        save_framepack_model(reference, path, storage="bf16")
        fp8 = load_framepack_model(path, compute_dtype="bf16", storage="fp8_e4m3fn", device=dev.device)
    fp8_dtypes = sorted({str(p.dtype) for p in fp8.parameters()})
    dev.reset_peak()
    fp8_latents, seconds = run(fp8, request, dev)
    error = rel_l2(fp8_latents, resident)
    checks["fp8_e4m3fn_vs_bf16"] = {"rel_l2": round(error, 5), "bound": FP8_BOUND,
                                    "ok": error <= FP8_BOUND and "torch.float8_e4m3fn" in fp8_dtypes,
                                    "weight_dtypes": fp8_dtypes, "seconds": seconds, "peak_vram_gb": dev.peak_gb()}
    del fp8

    calls, steps_seen = [], []
    before = dev.allocated()
    try:
        run(bf16, request, dev, interrupt=lambda: calls.append(1) or len(calls) > INTERRUPT_AFTER,
            on_step=lambda *a: steps_seen.append(a[:3]))
        raised = False
    except Interrupted:
        raised = True
    dev.sync()
    leaked = dev.allocated() - before
    again, _ = run(bf16, request, dev)
    checks["interrupt_mid_section"] = {
        "raised": raised, "steps_before": len(steps_seen), "expected_steps": INTERRUPT_AFTER,
        "leaked_bytes": leaked, "rerun_bitwise": bool(torch.equal(again, resident)),
        "ok": raised and len(steps_seen) == INTERRUPT_AFTER and leaked <= 0 and bool(torch.equal(again, resident))}

    imports = attention_imports()
    for name, found in imports.items():
        if not found["imported"] or not dev.cuda:
            continue
        try:
            set_backend(bf16, name)
            latents, _ = run(bf16, request, dev)
            error = rel_l2(latents, resident)
            found.update(rel_l2_vs_sdpa=round(error, 5), bound=BF16_BOUND, ok=error <= BF16_BOUND)
        except Exception as err:
            found.update(ok=False, error=f"{type(err).__name__}: {err}"[:300])
        finally:
            set_backend(bf16, "sdpa")
    checks["attention_backends"] = {**imports, "ok": all(f.get("ok", True) for f in imports.values())}

    report = {"dry_run" if args.dry_run else "gpu": {
        "device": torch.cuda.get_device_name(dev.device) if dev.cuda else "cpu", "torch": torch.__version__,
        "model": "TINY" if args.dry_run else "MID (4 heads, 4 dual + 8 single blocks, released widths)",
        "size": list(size), "num_frames": NUM_FRAMES, "steps": STEPS, "checks": checks,
        "ok": all(c["ok"] for c in checks.values())}}
    print(json.dumps(report, indent=1))
    return 0 if next(iter(report.values()))["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
