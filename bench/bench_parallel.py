"""Several GPUs (framepack_core/parallel): communication per step and expected scaling on paper (CPU), measured
seconds per step on 1 and N GPUs in one run (GPU), parity of the split on GPUs (NCCL).

CPU (default): for the released model at 480p and 720p (window 9, 256 text tokens) and N = 2, 4, 8, the bytes one
rank sends per attention layer and per step (Ulysses all-to-all of q, k, v and back, the text tokens' all-gather,
the output's gather), and the expected speed-up t1 / (t1 / N + bytes / bandwidth), with no overlap of compute and
communication (a lower bound on the speed-up), for NVLink and PCIe. t1 comes from the step's FLOPs (counted from
the model's layer shapes) at an effective throughput calibrated on a published single-H100 figure (the FramePack
sequence-parallel port's 1.46 s/step at 768x512, field_features_and_pains.md). CFG parallelism sends one latent
per step and halves the work of a job with real CFG: its 2x is not in the table.

GPU (--gpu-only, with 1 or more CUDA GPUs): NCCL parity of one forward and one section on all GPUs against one
GPU; then s/step of one 720p section of a mid-size model (the released widths, 2 + 4 blocks, random bf16 weights
written to a temp file) through the worker group on 1 GPU and on every GPU, in one run, and the ratio.

    python bench/bench_parallel.py [--cpu-only] [--gpu-only] [--dry-run]
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from framepack_core import RELEASED  # noqa: E402
from framepack_core.config import FramePackConfig  # noqa: E402
from framepack_core.memory import SIGLIP_TOKENS, default_reserve_bytes, image_tokens, peak_activation_bytes  # noqa: E402,E501
from random_weights import benchmark_parser  # noqa: E402

GiB = 2 ** 30
SIZES = {"480p": (60, 104), "720p": (90, 160)}  # latent h, w of 832x480 (16:9) and 1280x720
TEXT_TOKENS = 256
WINDOW = 9
# a published single-H100 figure the throughput is calibrated on: 1.46 s/step at 768x512 (latents 64 x 96)
CALIBRATION = {"s_per_step": 1.46, "latent_hw": (64, 96), "source": "FramePack sequence-parallel port, 1 H100"}
LINKS_GB_S = {"NVLink (H100 SXM, 450 GB/s per direction, 80 % achieved)": 360.0,
              "PCIe 4.0 x16 (32 GB/s per direction, 75 % achieved)": 24.0}
RANKS = (2, 4, 8)


def step_flops(config: FramePackConfig, image: int, text: int = TEXT_TOKENS) -> float:
    """Multiply-adds x 2 of one forward: every block's Linear layers on the tokens they see (dual-stream: image
    tokens through the image stream, SigLIP + text through the context stream; single-stream: all), and attention
    (QK^T and AV) over the joint sequence. Embedders and the output head are under 1 % and left out."""
    d, mlp = config.inner_dim, config.mlp_dim
    other = SIGLIP_TOKENS + text
    n = image + other
    dual_stream = 4 * d * d + 2 * d * mlp + 6 * d * d  # q, k, v, out; the MLP; the 6-way modulation's output
    single = 3 * d * d + d * mlp + (d + mlp) * d + 3 * d * d  # q, k, v, mlp in; out; the 3-way modulation
    linear = config.num_layers * dual_stream * (image + other) + config.num_single_layers * single * n
    attention = (config.num_layers + config.num_single_layers) * 2 * n * n * d  # QK^T and AV
    return 2.0 * (linear + attention)


def bytes_per_layer(config: FramePackConfig, image: int, ranks: int, text: int = TEXT_TOKENS,
                    element_bytes: int = 2) -> float:
    """Bytes one rank sends in one attention layer: q, k, v to the other ranks and the result back (each
    (N-1)/N of its padded image slice), and its heads of the SigLIP + text outputs to every other rank."""
    local = math.ceil(image / ranks)
    width = config.inner_dim * element_bytes
    all_to_all = 4 * local * width * (ranks - 1) / ranks
    whole_tokens = (SIGLIP_TOKENS + text) * width / ranks * (ranks - 1)
    return all_to_all + whole_tokens


def bytes_per_step(config: FramePackConfig, image: int, ranks: int, text: int = TEXT_TOKENS) -> float:
    layers = config.num_layers + config.num_single_layers
    head = config.out_channels * config.patch_size ** 2 * config.patch_size_t  # float32 outputs per token
    output_gather = math.ceil(image / ranks) * head * 4 * (ranks - 1)
    return layers * bytes_per_layer(config, image, ranks, text) + output_gather


def scaling_table(config: FramePackConfig = RELEASED) -> dict:
    calibration_tokens = image_tokens(config, WINDOW, *CALIBRATION["latent_hw"])
    throughput = step_flops(config, calibration_tokens) / CALIBRATION["s_per_step"]
    table = {"effective_tflops": round(throughput / 1e12, 1), "calibration": CALIBRATION, "sizes": {}}
    for name, hw in SIZES.items():
        image = image_tokens(config, WINDOW, *hw)
        t1 = step_flops(config, image) / throughput
        rows = {}
        for n in RANKS:
            sent = bytes_per_step(config, image, n)
            rows[str(n)] = {
                "mb_per_layer": round(bytes_per_layer(config, image, n) / 1e6, 1),
                "gb_per_step": round(sent / 1e9, 2),
                "activation_gib_per_rank": round(peak_activation_bytes(config, image, TEXT_TOKENS, ranks=n) / GiB, 2),
                "expected_speedup": {link: round(t1 / (t1 / n + sent / (gb_s * 1e9)), 2)
                                     for link, gb_s in LINKS_GB_S.items()}}
        table["sizes"][name] = {"image_tokens": image, "t1_s_per_step": round(t1, 2),
                                "activation_gib_one_gpu": round(peak_activation_bytes(config, image) / GiB, 2),
                                "ranks": rows}
    return table


# -- measured -------------------------------------------------------------------------------------------------

MID = dataclasses.replace(RELEASED, num_layers=2, num_single_layers=4)


def parity(devices: str) -> dict:
    """One forward and one section on every GPU (NCCL) or 2 CPU ranks (gloo) against one process."""
    from safetensors.torch import load_file

    from framepack_dev.parallel_check import SCENARIOS, parallel_model, run_ranks, run_scenario

    ranks = torch.cuda.device_count() if devices == "cuda" else 2
    device = "cuda:0" if devices == "cuda" else "cpu"
    want = {name: run_scenario(parallel_model(device), name).float().cpu() for name in SCENARIOS}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.safetensors"
        run_ranks(ranks, SCENARIOS, out, device=devices)
        got = load_file(out)
    diffs = {name: (got[name] - want[name]).abs().max().item() for name in SCENARIOS}
    return {"ranks": ranks, "max_abs_diff": diffs, "ok": all(d < 1e-4 for d in diffs.values())}


def seconds_per_step(config: FramePackConfig, devices: tuple[str, ...], latent_hw: tuple[int, int], steps: int,
                     dtype: str, model_file: Path) -> dict:
    from framepack_core.conditioning import ImageConditioning, TextConditioning
    from framepack_core.generate import GenerationRequest
    from framepack_core.parallel import GroupSpec, ModelSpec, WorkerGroup

    g = torch.Generator().manual_seed(0)
    h, w = latent_hw
    start = ImageConditioning(torch.randn(1, 16, 1, h, w, generator=g),
                              torch.randn(1, SIGLIP_TOKENS, config.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, TEXT_TOKENS, config.text_embed_dim, generator=g),
                            torch.randn(1, config.pooled_projection_dim, generator=g))
    request = GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=33, steps=steps, seed=1)
    t0 = time.perf_counter()
    reserve = default_reserve_bytes(config, WINDOW, h, w, ranks=len(devices))
    with WorkerGroup(GroupSpec(ModelSpec(str(model_file), compute_dtype=dtype), devices)) as group:
        started = time.perf_counter() - t0
        group.run(request, reserve)  # warm-up: kernels, allocator, NCCL communicators
        t1 = time.perf_counter()
        group.run(request, reserve)
        elapsed = time.perf_counter() - t1
    return {"ranks": len(devices), "group_start_s": round(started, 2), "s_per_step": round(elapsed / steps, 4)}


def measured(dry_run: bool) -> dict:
    from framepack_core.loading import save_framepack_model
    from framepack_dev.parallel_check import PARALLEL_TINY
    from framepack_dev.random_weights import random_model

    if dry_run:
        config, hw, steps, dtype = PARALLEL_TINY, (8, 12), 2, "fp32"
        many = ("cpu", "cpu")
    else:
        config, hw, steps, dtype = MID, SIZES["720p"], 4, "bf16"
        many = tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    report = {"parity": parity("cpu" if dry_run else "cuda")}
    with tempfile.TemporaryDirectory() as tmp:
        model = random_model(config, dtype=torch.float32 if dry_run else torch.bfloat16, seed=0, std=0.02)
        [model_file] = save_framepack_model(model, Path(tmp) / "model.safetensors")
        del model
        one = seconds_per_step(config, many[:1], hw, steps, dtype, model_file)
        report["one"] = one
        if len(many) > 1:
            split = seconds_per_step(config, many, hw, steps, dtype, model_file)
            report["many"] = split
            report["speedup"] = round(one["s_per_step"] / split["s_per_step"], 2)
    report["model"] = {"layers": config.num_layers, "single_layers": config.num_single_layers,
                       "latent_hw": list(hw), "steps": steps, "dtype": dtype}
    return report


def main() -> int:
    ap = benchmark_parser(__doc__.splitlines()[0], "run the GPU part's code on CPU ranks with the tiny model")
    args = ap.parse_args()
    result = {}
    if not args.gpu_only and not args.dry_run:
        result["cpu"] = scaling_table()
    if args.dry_run:
        result["dry_run"] = measured(dry_run=True)
    elif not args.cpu_only and torch.cuda.is_available():
        result["gpu"] = measured(dry_run=False)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
