"""GGUF figures: what each type costs and how close it stays.

CPU (default, `--cpu-only`), all in one run:
- `sizes_13b`: the released 13B model built on the meta device, bytes counted per type: the file's tensor bytes (our
  converter's layout: block matmul weights quantized, the rest bf16; and, for comparison, with the embedders' and
  the head's Linears quantized too), which are also the resident weight bytes, and the bytes one dual-stream and one
  single-stream block move when streamed; each against bf16 and fp8.
- `tiny_errors`: a random tiny model saved in bf16, converted to each type the converter makes (and fp8 storage):
  relative L2 error of one forward against the bf16 model on the same inputs, and of a whole short video's latents
  (generate_video, same request and seed).
- `converter_memory`: the converter run in a child process on a 1024-wide random model (0.4 GB in bf16) to Q8_0:
  its peak RSS and peak anonymous RSS (sampled; the source's memory-mapped pages count in RSS but not in the
  anonymous part) above the RSS after imports, against the source file and its largest tensor.
- `cpu_forward`: one forward of a mid-size random model (512 wide, 2 + 4 blocks) on the CPU, bf16 compute, Q8_0 and
  Q4_0 (dequantized at each matmul) against bf16, median of 3, same run.

GPU (`--gpu-only`; `--dry-run` runs the same code on the CPU with the tiny model): s/step and peak VRAM of one
forward at the 640x608 bucket for bf16, fp8 (e4m3fn, fp8 matmul where supported), Q8_0 and Q4_0, every block resident
and every block streamed from host memory. The quantized models get random packed blocks with small scales (speed does
not depend on the values; quantizing 13B weights in Python would take minutes).

    python bench/bench_gguf.py [--cpu-only | --gpu-only | --dry-run]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_transformer import _memory, _reset_memory, _sync, make_inputs  # noqa: E402
from framepack_core import RELEASED, TINY, FramePackConfig, FramePackTransformer  # noqa: E402
from framepack_core.conditioning import ImageConditioning, TextConditioning  # noqa: E402
from framepack_core.fp8 import select_fp8_matmul  # noqa: E402
from framepack_core.generate import GenerationRequest, generate_video  # noqa: E402
from framepack_core.gguf_convert import CONVERT_TYPES, convert, is_quantizable  # noqa: E402
from framepack_core.gguf_dequant import QUANT_TYPES, TYPE_IDS  # noqa: E402
from framepack_core.gguf_linear import make_quantized  # noqa: E402
from framepack_core.layers import Linear  # noqa: E402
from framepack_core.loading import is_fp8_eligible, load_framepack_model, save_framepack_model  # noqa: E402
from framepack_core.offload import BlockStreamer, module_bytes  # noqa: E402
from random_weights import benchmark_parser, random_model  # noqa: E402

GB = 1e9
SIZE_TYPES = ("Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0", "Q3_K", "Q2_K")
MID = FramePackConfig(num_attention_heads=4, attention_head_dim=128, num_layers=2, num_single_layers=4,
                      num_refiner_layers=1, text_embed_dim=256, pooled_projection_dim=64, image_proj_dim=128)
# byte offsets of each type's float16 scale fields inside a block (ggml-quants.c's block layouts)
SCALE_FIELDS = {"Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "Q2_K": (80, 82),
                "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def _tensor_bytes(key: str, shape: tuple[int, ...], kind: str, everything: bool = False) -> int:
    """Bytes of one tensor stored as `kind` (a ggml type, "bf16" or "fp8"): the converter's rule (fp8: the core's fp8
    rule), or with `everything` every 2-D weight whose rows are whole blocks (embedders and head too)."""
    n = 1
    for d in shape:
        n *= d
    if kind == "fp8":
        return n if is_fp8_eligible(key) else 2 * n
    eligible = is_quantizable(key, shape) or (everything and key.endswith(".weight") and len(shape) == 2)
    if kind == "bf16" or not eligible:
        return 2 * n
    _, block, size = QUANT_TYPES[TYPE_IDS[kind]]
    return n // block * size if shape[-1] % block == 0 else 2 * n


def sizes_13b() -> dict:
    with torch.device("meta"):
        model = FramePackTransformer(RELEASED)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    dual = {k.split(".", 2)[2]: s for k, s in shapes.items() if k.startswith("transformer_blocks.0.")}
    single = {k.split(".", 2)[2]: s for k, s in shapes.items() if k.startswith("single_transformer_blocks.0.")}

    def total(kind, everything=False):
        return sum(_tensor_bytes(k, s, kind, everything) for k, s in shapes.items())

    def block(kind, part, prefix):
        return sum(_tensor_bytes(prefix + k, s, kind) for k, s in part.items())

    bf16, fp8 = total("bf16"), total("fp8")
    report = {"parameters": sum(torch.Size(s).numel() for s in shapes.values()), "tensors": len(shapes),
              "bf16_gb": round(bf16 / GB, 2), "fp8_gb": round(fp8 / GB, 2), "types": {}}
    for kind in ("fp8", *SIZE_TYPES):
        weights = total(kind)
        report["types"][kind] = {
            "file_gb": round(weights / GB, 2), "vs_bf16": round(weights / bf16, 3), "vs_fp8": round(weights / fp8, 3),
            "with_embedders_and_head_gb": round(total(kind, True) / GB, 2),
            "dual_block_mb": round(block(kind, dual, "transformer_blocks.0.") / 1e6, 1),
            "single_block_mb": round(block(kind, single, "single_transformer_blocks.0.") / 1e6, 1)}
    report["types"]["bf16"] = {"file_gb": round(bf16 / GB, 2), "dual_block_mb": round(
        block("bf16", dual, "transformer_blocks.0.") / 1e6, 1), "single_block_mb": round(
        block("bf16", single, "single_transformer_blocks.0.") / 1e6, 1)}
    return report


def _rel(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _request(config) -> GenerationRequest:
    g = torch.Generator().manual_seed(1)
    start = ImageConditioning(torch.randn(1, 16, 1, 8, 8, generator=g),
                              torch.randn(1, 6, config.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, 5, config.text_embed_dim, generator=g),
                            torch.randn(1, config.pooled_projection_dim, generator=g))
    return GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=40, steps=4, seed=5, window=4)


def _forward_inputs(config):
    return make_inputs(config, grid=(2, 8, 8), text_tokens=7, image_tokens=6, dtype=torch.float32)


def tiny_errors(folder: Path) -> dict:
    [src] = save_framepack_model(random_model(TINY, seed=11, std=0.05), folder / "tiny_bf16.safetensors",
                                 storage="bf16")
    reference = load_framepack_model(src, compute_dtype="bf16")
    x = _forward_inputs(TINY)
    with torch.no_grad():
        ref_out = reference(**x)
    ref_video = generate_video(reference, _request(TINY)).latents
    report = {}
    candidates = {name: lambda n=name: load_framepack_model(convert(src, folder / f"tiny-{n}.gguf", n))
                  for name in CONVERT_TYPES}
    candidates["fp8_e4m3fn"] = lambda: load_framepack_model(src, storage="fp8_e4m3fn")
    for name, load in candidates.items():
        model = load()
        with torch.no_grad():
            out = model(**x)
        report[name] = {"forward_rel_l2": round(_rel(out, ref_out), 5),
                        "video_latents_rel_l2": round(_rel(generate_video(model, _request(TINY)).latents, ref_video), 5)}
    return report


def _median_forward(model, x, repeats=3) -> float:
    times = []
    with torch.no_grad():
        model(**x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(**x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_forward(folder: Path) -> dict:
    [src] = save_framepack_model(random_model(MID, seed=12, std=0.02), folder / "mid_bf16.safetensors", storage="bf16")
    x = make_inputs(MID, grid=(2, 16, 16), text_tokens=32, image_tokens=64, dtype=torch.bfloat16)
    bf16 = _median_forward(load_framepack_model(src, compute_dtype="bf16"), x)
    report = {"config": "512 wide, 2 dual + 4 single blocks", "bf16_s": round(bf16, 3)}
    for name in ("Q8_0", "Q4_0"):
        seconds = _median_forward(load_framepack_model(convert(src, folder / f"mid-{name}.gguf", name)), x)
        report[name] = {"s": round(seconds, 3), "vs_bf16": round(seconds / bf16, 2)}
    return report


CONVERT_CHILD = """
import sys, threading, time
from framepack_core.gguf_convert import convert

def rss_kb():
    values = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS:", "RssAnon:")):
            values[line.split(":")[0]] = int(line.split()[1])
    return values["VmRSS"], values["RssAnon"]

before = rss_kb()
peak = list(before)
done = threading.Event()
def sample():
    while not done.is_set():
        peak[:] = [max(p, v) for p, v in zip(peak, rss_kb())]
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
convert(sys.argv[1], sys.argv[2], "Q8_0")
done.set()
print(*before, *peak)
"""


def converter_memory(folder: Path) -> dict:
    import subprocess
    config = FramePackConfig(num_attention_heads=8, attention_head_dim=128, num_layers=2, num_single_layers=2,
                             num_refiner_layers=1, text_embed_dim=1024, pooled_projection_dim=256,
                             image_proj_dim=256)
    model = random_model(config, seed=13)
    largest = max(t.numel() for t in model.state_dict().values()) * 2
    [src] = save_framepack_model(model, folder / "wide_bf16.safetensors", storage="bf16")
    del model
    out = subprocess.run([sys.executable, "-c", CONVERT_CHILD, str(src), str(folder / "wide-Q8_0.gguf")],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    rss0, anon0, rss1, anon1 = (int(v) for v in out.stdout.split())
    return {"source_mb": round(src.stat().st_size / 1e6, 1), "largest_tensor_bf16_mb": round(largest / 1e6, 1),
            "gguf_mb": round((folder / "wide-Q8_0.gguf").stat().st_size / 1e6, 1),
            "peak_rss_above_imports_mb": round((rss1 - rss0) / 1e3, 1),
            "peak_anon_rss_above_imports_mb": round((anon1 - anon0) / 1e3, 1)}


def quantize_random_(model: FramePackTransformer, type_name: str, seed: int = 0, scale: float = 0.002):
    """Turns every block matmul Linear (gguf_convert.is_quantizable) into a QuantizedLinear of random blocks with scales of `scale` (in place,
    on the model's device)."""
    qtype = TYPE_IDS[type_name]
    _, block, size = QUANT_TYPES[qtype]
    gen = None
    for name, layer in list(model.named_modules()):
        if isinstance(layer, Linear) and is_quantizable(name + ".weight", tuple(layer.weight.shape)):
            device = layer.weight.device
            gen = gen or torch.Generator(device).manual_seed(seed)
            n = layer.out_features * layer.in_features // block
            blocks = torch.randint(0, 256, (n, size), dtype=torch.uint8, device=device, generator=gen)
            for offset in SCALE_FIELDS[type_name]:
                values = (torch.rand(n, 1, device=device, generator=gen) * scale).half()
                blocks[:, offset:offset + 2] = values.view(torch.uint8)
            make_quantized(layer, qtype)
            layer.weight = torch.nn.Parameter(blocks.view(layer.out_features, -1), requires_grad=False)
    return model


def _timed(model, x, device, repeats) -> float:
    times = []
    with torch.no_grad():
        model(**x)
        _sync(device)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(**x)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def device_benchmark(config=RELEASED, device="cuda", grid=(9, 80, 76), text_tokens=256, repeats=2) -> dict:
    """bf16 / fp8 / Q8_0 / Q4_0 at the 640x608 bucket (latents 80 x 76), resident and streamed."""
    device = torch.device(device)
    x = make_inputs(config, grid=grid, text_tokens=text_tokens, dtype=torch.bfloat16, device=device)
    report = {}
    for kind in ("bf16", "fp8_e4m3fn", "Q8_0", "Q4_0"):
        model = random_model(config, torch.bfloat16, device)
        if kind == "fp8_e4m3fn":
            for name, layer in model.named_modules():
                if isinstance(layer, Linear) and is_fp8_eligible(name + ".weight"):
                    layer.weight.data = layer.weight.data.to(torch.float8_e4m3fn)
            select_fp8_matmul(model, device)
        elif kind != "bf16":
            quantize_random_(model, kind)
        model.compute_dtype = torch.bfloat16
        entry = {"weight_mb": round(module_bytes(model) / 1e6, 1)}
        _reset_memory(device)
        streamer = BlockStreamer(model, device)
        entry["resident"] = {"s_per_step": round(_timed(model, x, device, repeats), 3),
                             "streamed_blocks": streamer.plan.streamed_blocks, **_memory(device)}
        streamer.release()
        model.to("cpu")
        _reset_memory(device)
        streamer = BlockStreamer(model, device, reserve_bytes=0, force_stream=True)
        entry["streamed"] = {"s_per_step": round(_timed(model, x, device, repeats), 3),
                             "streamed_bytes_per_step": sum(b.nbytes for b in streamer.blocks),
                             **_memory(device)}
        streamer.release()
        report[kind] = entry
        del model, streamer
        _reset_memory(device)
    return report


def main():
    ap = benchmark_parser(__doc__.split("\n\n")[0], "the GPU part on the CPU with the tiny model")
    args = ap.parse_args()
    if args.dry_run:
        print(json.dumps({"dry_run": device_benchmark(TINY, "cpu", grid=(2, 8, 8), text_tokens=7, repeats=1)},
                         indent=1))
        return
    if args.gpu_only:
        print(json.dumps({"gpu": device_benchmark()}, indent=1))
        return
    report = {"sizes_13b": sizes_13b()}
    with tempfile.TemporaryDirectory() as folder:
        report["tiny_errors"] = tiny_errors(Path(folder))
        report["cpu_forward"] = cpu_forward(Path(folder))
        report["converter_memory"] = converter_memory(Path(folder))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
