"""Low-VRAM streaming as users get it: the released-size model in bf16 with random weights, every block streamed
from CPU memory through the two device slots (framepack_core.offload).

Variants, each timed after an untimed warm-up forward: `pageable` (plain host memory, the default), `pinned` (the
loader's pin_memory: streamed blocks packed into page-locked buffers) and `mmap` (the weights saved to a
safetensors file and loaded back through our loader, memory-mapped as a user's are). Each reports s/step, the
streaming rate it achieved (streamed bytes per step over the step time), the setup time (placement, packing and
page-locking) and peak allocated and reserved device memory. The host-to-device copy bandwidth is measured on its
own (1 GiB, pageable and pinned). Under PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync (how ComfyUI runs) the same
code measures that allocator; bench/device_checks.sh runs both.

    python bench/bench_streaming.py [--variants pageable,pinned,mmap] [--steps 2] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_transformer import _memory, _reset_memory, _sync, _timed, make_inputs  # noqa: E402
from framepack_core import RELEASED, TINY  # noqa: E402
from framepack_core.loading import load_framepack_model, save_framepack_model  # noqa: E402
from framepack_core.offload import BlockStreamer  # noqa: E402
from random_weights import random_model  # noqa: E402

VARIANTS = ("pageable", "pinned", "mmap")


def host_to_device_gb_per_s(device: torch.device, nbytes: int = 1 << 30, repeats: int = 5) -> dict:
    """Median rate of one nbytes copy from pageable and from pinned host memory, after a warm-up copy."""
    if device.type != "cuda":
        return {"pageable": None, "pinned": None}
    dst = torch.empty(nbytes, dtype=torch.uint8, device=device)
    rates = {}
    for kind in ("pageable", "pinned"):
        src = torch.ones(nbytes, dtype=torch.uint8, pin_memory=kind == "pinned")
        times = []
        for _ in range(repeats + 1):
            _sync(device)
            t0 = time.perf_counter()
            dst.copy_(src, non_blocking=True)
            _sync(device)
            times.append(time.perf_counter() - t0)
        rates[kind] = round(nbytes / statistics.median(times[1:]) / 1e9, 1)
        del src
    return rates


def streamed_run(model, x, device: torch.device, steps: int, pin_memory: bool = False) -> dict:
    _reset_memory(device)
    t0 = time.perf_counter()
    streamer = BlockStreamer(model, device, reserve_bytes=0, force_stream=True, pin_memory=pin_memory)
    _sync(device)
    setup = time.perf_counter() - t0
    step = _timed(model, x, device, steps)
    per_step = sum(b.nbytes for b in streamer.blocks)
    report = {"s_per_step": round(step, 3), "stream_gb_per_s": round(per_step / step / 1e9, 1),
              "setup_s": round(setup, 2), "streamed_blocks": streamer.plan.streamed_blocks,
              "pinned": bool(streamer._pinned), **_memory(device)}
    streamer.release()
    return report


def streaming_benchmark(variants, steps: int, config=RELEASED, device: str = "cuda", grid=(9, 80, 76),
                        text_tokens: int = 256, workdir: str | None = None) -> dict:
    device = torch.device(device)
    report = {"allocator": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "default"),
              "h2d_gb_per_s": host_to_device_gb_per_s(device)}
    model = random_model(config, torch.bfloat16, device).to("cpu")  # drawn on the device, kept in host memory
    x = make_inputs(config, grid=grid, text_tokens=text_tokens, dtype=torch.bfloat16, device=device)
    for variant in variants:
        if variant == "mmap":
            with tempfile.TemporaryDirectory(dir=workdir) as folder:
                t0 = time.perf_counter()
                [path] = save_framepack_model(model, Path(folder) / "random_bf16.safetensors")
                written = time.perf_counter() - t0
                del model
                mapped = load_framepack_model(path, compute_dtype="bf16")
                report["mmap"] = {"file_write_s": round(written, 1), **streamed_run(mapped, x, device, steps)}
                model = mapped
        else:
            report[variant] = streamed_run(model, x, device, steps, pin_memory=variant == "pinned")
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=2, help="timed forwards per variant (after one warm-up)")
    ap.add_argument("--workdir", default=None, help="where the mmap variant writes its 26 GB file (default: TMPDIR)")
    ap.add_argument("--dry-run", action="store_true",
                    help="the same code on the CPU with the tiny config (checks the script, measures nothing)")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.dry_run:
        report = {"dry_run": streaming_benchmark(variants, 1, TINY, "cpu", grid=(3, 8, 8), text_tokens=16,
                                                 workdir=args.workdir)}
    elif torch.cuda.is_available():
        report = {"gpu": streaming_benchmark(variants, args.steps, workdir=args.workdir)}
    else:
        report = {"gpu": "skipped: no CUDA device"}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
