"""Benchmark: our transformer forward vs diffusers' HunyuanVideoFramepackTransformer3DModel.

CPU (always): a mid-size config with the released head dim and embedder widths (hidden 512 = 4 x 128, 4 dual +
8 single blocks, ~4.5k tokens: 9 noisy latents at 32x40 plus the 1x/2x/4x history, 729 SigLIP and 96 text tokens),
the same random weights and inputs in both, float32, timed interleaved in one run; prints the median ratio
ours/diffusers and each implementation's peak RSS (measured in a fresh subprocess each).

GPU (when CUDA is available): the released-size config with random bf16 weights at a 640-bucket token count
(640x608 -> 17,500 image tokens, counted by the model itself, + 729 SigLIP + 256 text), prints s/step, achieved
TFLOP/s, peak allocated and reserved VRAM with every weight resident, the activation peak against
framepack_core.memory's formula, and the SDPA kernel that ran. Low-VRAM streaming is bench_streaming.py.
bench/device_checks.sh runs these and bench_section.py as one command on a lent GPU.

    python bench/bench_transformer.py [--repeats 5] [--gpu-only] [--cpu-only] [--dry-run]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from framepack_core import RELEASED, TINY  # noqa: E402
from framepack_core.attention import kernels_used  # noqa: E402
from framepack_core.memory import peak_activation_bytes  # noqa: E402
from framepack_core.offload import BlockStreamer  # noqa: E402
from framepack_dev.diffusers_reference import reference_forward, reference_model  # noqa: E402
from framepack_dev.random_weights import randomize_  # noqa: E402
from random_weights import benchmark_parser, random_model, sequence_tokens  # noqa: E402

MID = dataclasses.replace(RELEASED, num_attention_heads=4, num_layers=4, num_single_layers=8, num_refiner_layers=2)


def make_inputs(config, grid=(9, 32, 40), text_tokens=96, image_tokens=729, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    t, h, w = grid
    r = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype)  # noqa: E731
    return dict(
        hidden_states=r(1, 16, t, h, w), timestep=torch.tensor([900.0], device=device),
        guidance=torch.tensor([10000.0], device=device),
        encoder_hidden_states=r(1, text_tokens, config.text_embed_dim),
        encoder_attention_mask=torch.ones(1, text_tokens, dtype=torch.bool, device=device),
        pooled_projections=r(1, config.pooled_projection_dim), image_embeddings=r(1, image_tokens, config.image_proj_dim),
        latent_indices=torch.arange(1 + 3, 1 + 3 + t), clean_latents=r(1, 16, 2, h, w),
        clean_latent_indices=torch.tensor([0, 4 + t]), clean_latents_2x=r(1, 16, 2, h, w),
        clean_latent_2x_indices=torch.tensor([5 + t, 6 + t]), clean_latents_4x=r(1, 16, 16, h, w),
        clean_latent_4x_indices=torch.arange(7 + t, 23 + t))


def build(impl: str, config, seed=0):
    """Our model or diffusers', float32 on the CPU, with the same random weights."""
    if impl == "ours":
        return random_model(config, seed=seed)
    return randomize_(reference_model(config), seed)


def run_once(impl, model, x):
    with torch.no_grad():
        return model(**x) if impl == "ours" else reference_forward(model, x)


def peak_rss_mb() -> float:
    """VmHWM of this process (unlike ru_maxrss it is not inherited from the parent across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(impl: str) -> None:
    model = build(impl, MID)
    x = make_inputs(MID)
    run_once(impl, model, x)
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1)}))


def cpu_benchmark(repeats: int) -> dict:
    """Interleaved pairs, the order alternating, so slow drift of a shared machine hits both alike. The ratio is
    the median of the per-pair ratios; the spread of those ratios is printed because single timings on a small
    shared VM swing by +-30 %."""
    ours, ref = build("ours", MID), build("diffusers", MID)
    x = make_inputs(MID)
    out_a, out_b = run_once("ours", ours, x), run_once("diffusers", ref, x)  # warm-up, and a sanity check
    max_diff = (out_a - out_b).abs().max().item()
    times = {"ours": [], "diffusers": []}
    pairs = [(("ours", ours), ("diffusers", ref))] * 2
    pairs[1] = pairs[1][::-1]
    for i in range(repeats):
        for impl, model in pairs[i % 2]:
            t0 = time.perf_counter()
            run_once(impl, model, x)
            times[impl].append(time.perf_counter() - t0)
    ratios = sorted(a / b for a, b in zip(times["ours"], times["diffusers"]))
    rss = {}
    for impl in ("ours", "diffusers"):
        out = subprocess.run([sys.executable, __file__, "--rss-child", impl], capture_output=True, text=True, check=True)
        rss[impl] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    return {"config": "hidden 512 (4x128), 4 dual + 8 single blocks, float32", "threads": torch.get_num_threads(),
            "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
            "ratio_ours_over_diffusers": round(statistics.median(ratios), 3),
            "pair_ratios": [round(r, 3) for r in ratios],
            "ratio_of_fastest": round(min(times["ours"]) / min(times["diffusers"]), 3),
            "max_abs_diff": max_diff, "peak_rss_mb": rss, "tokens": sequence_tokens(ours, x)}


def flops_per_forward(config, n_img: int, n_txt: int) -> float:
    d, mlp = config.inner_dim, config.mlp_dim
    n = n_img + n_txt
    dual = 2 * (n * d * d * 4 + n * d * mlp * 2) + 4 * n * n * d  # qkv+out and MLP for both streams, attention
    single = 2 * n * d * (3 * d + mlp) + 2 * n * (d + mlp) * d + 4 * n * n * d
    return config.num_layers * dual + config.num_single_layers * single


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory(device: torch.device) -> dict:
    """Peak device memory since the last reset: allocated by tensors, and reserved by the caching allocator (what
    nvidia-smi shows)."""
    if device.type != "cuda":
        return {"peak_vram_gb": None, "peak_reserved_gb": None}
    return {"peak_vram_gb": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved(device) / 2 ** 30, 2)}


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _timed(model, x, device: torch.device, repeats: int) -> float:
    """Median seconds of one forward, after one untimed warm-up forward."""
    run_once("ours", model, x)
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_once("ours", model, x)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def device_benchmark(repeats: int, config=RELEASED, device: str = "cuda", grid=(9, 80, 76),
                     text_tokens: int = 256) -> dict:
    """Our forward in bf16 with random weights, every weight resident: s/step, TFLOP/s, peak memory, the activation
    peak against the formula the offload planner uses, and the attention kernel that ran. The defaults are the
    released size at the 640x608 bucket (latents 80 x 76: 13,680 noisy + 3,820 history tokens, 729 SigLIP, 256
    text)."""
    device = torch.device(device)
    model = random_model(config, torch.bfloat16, device)
    x = make_inputs(config, grid=grid, text_tokens=text_tokens, dtype=torch.bfloat16, device=device)
    tokens = sequence_tokens(model, x)
    flops = flops_per_forward(config, tokens["image"], tokens["siglip"] + tokens["text"])
    report = {"tokens": tokens, "tflop_per_step": round(flops / 1e12, 2)}

    _reset_memory(device)
    streamer = BlockStreamer(model, device)  # everything fits: nothing streams
    step = _timed(model, x, device, repeats)
    report["resident"] = {"s_per_step": round(step, 3), "tflops": round(flops / step / 1e12, 1),
                          "streamed_blocks": streamer.plan.streamed_blocks, **_memory(device),
                          **_activations(model, x, device, tokens)}
    report["attention_kernels"] = kernels_used()
    streamer.release()
    return report  # low-VRAM streaming: bench_streaming.py


def _activations(model, x, device: torch.device, tokens: dict) -> dict:
    """Peak device memory of one forward above what was allocated before it (weights, inputs), against
    framepack_core.memory's formula for the same token counts (the formula leaves out the section context the
    forward also builds here: 30 MB at 640x608)."""
    formula = peak_activation_bytes(model.config, tokens["image"], tokens["text"],
                                    torch.finfo(model.compute_dtype).bits // 8)
    if device.type != "cuda":
        return {"activation_peak_gb": None, "formula_gb": round(formula / 2 ** 30, 3)}
    _sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run_once("ours", model, x)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    return {"activation_peak_gb": round(peak / 2 ** 30, 3), "formula_gb": round(formula / 2 ** 30, 3),
            "measured_over_formula": round(peak / formula, 3)}


def main():
    ap = benchmark_parser(__doc__,
                          "run the GPU part's code on the CPU with the tiny config and a small grid (checks the script, "
                          "measures nothing)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rss-child", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child)
    if args.dry_run:
        print(json.dumps({"dry_run": device_benchmark(1, TINY, "cpu", grid=(3, 8, 8), text_tokens=16)}, indent=2))
        return
    report = {}
    if not args.gpu_only:
        report["cpu"] = cpu_benchmark(args.repeats)
    if not args.cpu_only and torch.cuda.is_available():
        report["gpu"] = device_benchmark(args.repeats)
    elif not args.cpu_only:
        report["gpu"] = "skipped: no CUDA device"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
