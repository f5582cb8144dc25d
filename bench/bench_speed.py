"""Speed options measured against the plain path in the same run, on the same inputs.

CPU (default): torch.compile (inductor, regional) vs eager forward on the mid-size config of bench_transformer.py
(hidden 512 = 4 x 128, 4 dual + 8 single blocks, ~4.5k tokens, float32), timed in interleaved pairs whose order
alternates; prints the compile time, the median of the per-pair ratios compiled/eager, their spread and the ratio
of the fastest runs. Then one 33-frame section of 25 steps on the same config (random weights, 256x320) with no
cache, TeaCache 0.15, MagCache and EasyCache at their defaults: computed and skipped steps and the wall time
against no cache, in one run (random weights: the step patterns only hint at what real weights do).

GPU (--gpu-only, used by bench/device_checks.sh): the released size with random bf16 weights at the 640x608
bucket, resident:
- eager vs compiled s/step (and the compile time), TFLOP/s and s/step over the bound (flop count / 989 TFLOP/s,
  0.51 s/step at 640x608 on an H100/H200);
- one 33-frame section of 25 steps with no cache, TeaCache 0.15, MagCache and EasyCache at their defaults:
  s/section, computed and skipped steps, speed-up and relative L2 error against no cache;
- fp8 e4m3fn weights: s/step with fp8 matmul (torch._scaled_mm) and with the upcast, vs bf16, and the relative
  L2 error of one forward against bf16.

    python bench/bench_speed.py [--repeats 5] [--cpu-only | --gpu-only | --dry-run]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_transformer import MID, build, flops_per_forward, make_inputs, run_once  # noqa: E402
from framepack_core import RELEASED, TINY, FramePackTransformer  # noqa: E402
from framepack_core.compile import compile_blocks, unavailable_reason  # noqa: E402
from framepack_core.conditioning import ImageConditioning, TextConditioning  # noqa: E402
from framepack_core.fp8 import select_fp8_matmul, unsupported_reason  # noqa: E402
from framepack_core.generate import GenerationRequest, generate_video  # noqa: E402
from framepack_core.layers import Linear  # noqa: E402
from framepack_core.loading import is_fp8_eligible  # noqa: E402
from framepack_core.stepcache import stats_kind  # noqa: E402
from random_weights import benchmark_parser, random_model, sequence_tokens  # noqa: E402

DENSE_BF16_TFLOPS = 989.0  # H100/H200 SXM dense bf16 peak, the bound the issue states
BUCKET = (640, 608)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _step(model, x, device, repeats: int) -> float:
    """Median seconds of one forward after a warm-up forward."""
    run_once("ours", model, x)
    return statistics.median(_seconds(lambda: run_once("ours", model, x), device) for _ in range(repeats))


# -- CPU: compiled vs eager ----------------------------------------------------------------------------------

def cpu_compile_ratio(repeats: int, config=MID, grid=(9, 32, 40), text_tokens=96) -> dict:
    eager, compiled = build("ours", config), build("ours", config)
    x = make_inputs(config, grid=grid, text_tokens=text_tokens)
    reference = run_once("ours", eager, x)
    compile_blocks(compiled, "default", device="cpu")
    compile_s = _seconds(lambda: run_once("ours", compiled, x), torch.device("cpu"))
    max_diff = (run_once("ours", compiled, x) - reference).abs().max().item()
    times = {"eager": [], "compiled": []}
    order = [("eager", eager), ("compiled", compiled)]
    for i in range(repeats):
        for name, model in (order if i % 2 == 0 else order[::-1]):
            times[name].append(_seconds(lambda m=model: run_once("ours", m, x), torch.device("cpu")))
    ratios = sorted(c / e for c, e in zip(times["compiled"], times["eager"]))
    return {"config": "hidden 512 (4x128), 4 dual + 8 single blocks, float32", "threads": torch.get_num_threads(),
            "tokens": sequence_tokens(eager, x), "compile_seconds": round(compile_s, 1),
            "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
            "ratio_compiled_over_eager": round(statistics.median(ratios), 3),
            "pair_ratios": [round(r, 3) for r in ratios],
            "ratio_of_fastest": round(min(times["compiled"]) / min(times["eager"]), 3),
            "max_abs_diff": max_diff}


# -- GPU -----------------------------------------------------------------------------------------------------

def _fp8_twin(model, config, device):
    """The same weights with the block matmul weights cast to float8_e4m3fn (what fp8 storage holds)."""
    with torch.device("meta"):
        fp8 = FramePackTransformer(config)
    state = {k: (v.to(torch.float8_e4m3fn) if is_fp8_eligible(k) else v) for k, v in model.state_dict().items()}
    fp8.load_state_dict(state, assign=True)
    fp8.compute_dtype = torch.bfloat16
    return fp8.to(device).eval().requires_grad_(False)


def _rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(((a.float() - b.float()).norm() / b.float().norm()).item(), 5)


def fp8_report(model, config, x, device, repeats: int, force_capability=None) -> dict:
    reference = run_once("ours", model, x)
    bf16_step = _step(model, x, device, repeats)
    twin = _fp8_twin(model, config, device)
    report = {"bf16_s_per_step": round(bf16_step, 4)}
    target = "cuda" if force_capability else device  # the dry run pretends to be a capable GPU
    for label, capability in (("fp8_upcast", (8, 0)), ("fp8_matmul", force_capability)):
        reason = unsupported_reason(target, capability)
        if label == "fp8_matmul" and reason:
            report[label] = f"skipped: {reason}"
            continue
        select_fp8_matmul(twin, target, capability)
        out = run_once("ours", twin, x)
        step = _step(twin, x, device, repeats)
        report[label] = {"s_per_step": round(step, 4), "ratio_to_bf16": round(step / bf16_step, 3),
                         "rel_l2_vs_bf16": _rel_l2(out, reference),
                         "layers": sum(1 for m in twin.modules() if isinstance(m, Linear) and m.fp8_matmul)}
    del twin
    return report


def cache_report(model, config, steps: int, bucket, device) -> dict:
    g = torch.Generator().manual_seed(1)
    h, w = bucket[0] // 8, bucket[1] // 8
    start = ImageConditioning(torch.randn(1, 16, 1, h, w, generator=g),
                              torch.randn(1, 729, config.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, 128, config.text_embed_dim, generator=g),
                            torch.randn(1, config.pooled_projection_dim, generator=g))
    report, reference = {}, None
    # one step first, so that the first timed run does not pay the first call's allocations and kernel choices
    generate_video(model, GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=33, steps=1, seed=3,
                                            cache="none"), device=device)
    for label, options in (("none", dict(cache="none")), ("teacache_0.15", dict(cache="teacache", teacache_threshold=0.15)),
                           ("magcache_default", dict(cache="magcache")), ("easycache_default", dict(cache="easycache"))):
        request = GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=33, steps=steps, seed=3, **options)
        result = None

        def run():
            nonlocal result
            result = generate_video(model, request, device=device)

        seconds = _seconds(run, device)
        kind = stats_kind(options["cache"])
        report[label] = {"s_per_section": round(seconds, 2), "skipped_steps": result.stats[f"{kind}_skipped"],
                         "computed_steps": result.stats[f"{kind}_computed"] if options["cache"] != "none" else steps}
        if reference is None:
            reference = seconds, result.latents
        else:
            report[label].update(speedup=round(reference[0] / seconds, 2),
                                 rel_l2_vs_uncached=_rel_l2(result.latents, reference[1]))
    return report


def cpu_cache_report(config=MID, steps: int = 25, bucket=(256, 320)) -> dict:
    """The step caches on the mid-size config on the CPU: steps computed per section and time against no cache."""
    model = random_model(config, torch.float32, "cpu")
    with torch.no_grad():
        report = cache_report(model, config, steps, bucket, torch.device("cpu"))
    return {"config": "hidden 512 (4x128), 4 dual + 8 single blocks, float32, random weights", "steps": steps,
            "size": f"{bucket[1]}x{bucket[0]}, 33 frames (one section)", "threads": torch.get_num_threads(), **report}


def device_report(repeats: int, config=RELEASED, device="cuda", grid=(9, 80, 76), text_tokens=256, steps=25,
                  bucket=BUCKET, compile_backend="inductor", force_fp8_capability=None) -> dict:
    device = torch.device(device)
    model = random_model(config, torch.bfloat16, device)
    x = make_inputs(config, grid=grid, text_tokens=text_tokens, dtype=torch.bfloat16, device=device)
    tokens = sequence_tokens(model, x)
    flops = flops_per_forward(config, tokens["image"], tokens["siglip"] + tokens["text"])
    bound = flops / (DENSE_BF16_TFLOPS * 1e12)
    report = {"tokens": tokens, "tflop_per_step": round(flops / 1e12, 2), "bound_s_per_step": round(bound, 3)}

    def step_entry(seconds):
        return {"s_per_step": round(seconds, 4), "tflops": round(flops / seconds / 1e12, 1),
                "over_bound": round(seconds / bound, 2)}

    with torch.no_grad():
        report["eager"] = step_entry(_step(model, x, device, repeats))
        report["fp8"] = fp8_report(model, config, x, device, repeats, force_fp8_capability)
        report["caches"] = cache_report(model, config, steps, bucket, device)
        reason = unavailable_reason(device) if compile_backend == "inductor" else None
        if reason:
            report["compiled"] = f"skipped: {reason}"
        else:
            compile_blocks(model, "default", backend=compile_backend)
            first = _seconds(lambda: run_once("ours", model, x), device)
            compiled = _step(model, x, device, repeats)
            report["compiled"] = {**step_entry(compiled), "compile_seconds": round(first - compiled, 1),
                                  "ratio_to_eager": round(compiled / report["eager"]["s_per_step"], 3)}
    if device.type == "cuda":
        report["peak_vram_gb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    return report


def main():
    ap = benchmark_parser(__doc__,
                          "run the GPU part's code on the CPU with the tiny model (dynamo's eager backend, fp8 matmul forced: "
                          "torch._scaled_mm runs on the CPU too); checks the script, measures nothing")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.dry_run:
        report = device_report(1, TINY, "cpu", grid=(3, 8, 8), text_tokens=16, steps=4, bucket=(64, 64),
                               compile_backend="eager", force_fp8_capability=(9, 0))
        print(json.dumps({"dry_run": report}, indent=2))
        return
    report = {}
    if not args.gpu_only:
        report["cpu_compile"] = cpu_compile_ratio(args.repeats)
        report["cpu_caches"] = cpu_cache_report()
    if not args.cpu_only:
        report["gpu"] = device_report(args.repeats) if torch.cuda.is_available() else "skipped: no CUDA device"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
