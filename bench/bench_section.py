"""Wall time of one full 33-frame FramePack section (window 9, 25 UniPC steps), i.e. seconds per output frame.

CPU: the tiny random model (framepack_core.TINY) at the 640x608 bucket (the real token count of a section).
GPU (when CUDA is available): the released-size model with random bf16 weights at the same bucket, after an untimed
warm-up section, TeaCache off and on (threshold 0.15), with peak allocated and reserved memory.

    python bench/bench_section.py [--steps 25] [--cpu-only] [--gpu-only]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from framepack_core import RELEASED, TINY  # noqa: E402
from framepack_core.conditioning import ImageConditioning, TextConditioning  # noqa: E402
from framepack_core.generate import GenerationRequest, generate_video  # noqa: E402
from random_weights import benchmark_parser, random_model  # noqa: E402

BUCKET = (640, 608)  # height, width in pixels -> latents 80 x 76


def one_section(model, config, steps: int, teacache: float, bucket=BUCKET) -> dict:
    g = torch.Generator().manual_seed(1)
    h, w = bucket[0] // 8, bucket[1] // 8
    start = ImageConditioning(torch.randn(1, 16, 1, h, w, generator=g), torch.randn(1, 729, config.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, 128, config.text_embed_dim, generator=g),
                            torch.randn(1, config.pooled_projection_dim, generator=g))
    request = GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=33, steps=steps, seed=3,
                                teacache_threshold=teacache)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = generate_video(model, request)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 2), "s_per_frame": round(seconds / 33, 3), "s_per_step": round(seconds / steps, 3),
            "teacache_skipped_steps": result.stats["teacache_skipped"]}


def main():
    ap = benchmark_parser(__doc__,
                          "run the GPU part's code on the CPU with the tiny model in bf16 at 64x64, 2 steps (checks the script,"
                          " measures nothing)")
    ap.add_argument("--steps", type=int, default=25)
    args = ap.parse_args()
    if args.dry_run:
        model = random_model(TINY, torch.bfloat16, "cpu")
        report = timed_sections(model, TINY, 2, bucket=(64, 64))
        print(json.dumps({"dry_run": report}, indent=2))
        return
    report = {"bucket": f"{BUCKET[1]}x{BUCKET[0]}", "frames": 33, "steps": args.steps}
    if not args.gpu_only:
        model = random_model(TINY, torch.float32, "cpu")
        report["cpu_tiny_fp32"] = {"threads": torch.get_num_threads(), **one_section(model, TINY, args.steps, 0.0)}
    if not args.cpu_only and torch.cuda.is_available():
        model = random_model(RELEASED, torch.bfloat16, "cuda")  # resident: 25.7 GB of weights
        report["gpu_released_bf16"] = timed_sections(model, RELEASED, args.steps)
    print(json.dumps(report, indent=2))


def timed_sections(model, config, steps: int, bucket=BUCKET) -> dict:
    """A short untimed section first (kernel selection, cuBLAS/cuDNN handles, allocator growth: what a user's first
    job pays once), then one section with TeaCache off and one at 0.15; peak allocated and reserved memory."""
    t0 = time.perf_counter()
    one_section(model, config, 2, 0.0, bucket=bucket)
    report = {"warm_up_s": round(time.perf_counter() - t0, 2)}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for name, threshold in (("teacache_off", 0.0), ("teacache_0.15", 0.15)):
        report[name] = one_section(model, config, steps, threshold, bucket=bucket)
    if torch.cuda.is_available():
        report["peak_vram_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
        report["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 2 ** 30, 2)
    return report


if __name__ == "__main__":
    main()
