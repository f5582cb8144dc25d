#!/usr/bin/env bash
# The benchmarks' GPU parts as one command for a GPU machine whose python3 has torch, einops, safetensors and
# numpy (nothing else is needed):
#     bash bench/device_checks.sh
# Writes gpu.txt, transformer.json, section.json and correctness.json to $OUT (or ./bench_out). It takes under 4
# minutes on an H100/H200 (the released-size model is filled with random bf16 weights on the GPU in about a second),
# plus about a minute for the correctness checks (bench/gpu_correctness.py).
# DRY_RUN=1 runs the same scripts' GPU code on the CPU with the tiny model (tests/core/test_bench_scripts.py).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench_out}
python=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0
if [ -n "${DRY_RUN:-}" ]; then
    mode=(--dry-run)
else
    mode=(--gpu-only)
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
fi
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
# resident and low-VRAM forward: s/step, TFLOP/s, peak VRAM
timeout 240 "$python" bench/bench_transformer.py "${mode[@]}" --repeats 3 | tee "$out/transformer.json" || status=1
# one 33-frame section, 25 steps, TeaCache off and on
timeout 240 "$python" bench/bench_section.py "${mode[@]}" | tee "$out/section.json" || status=1
# --- correctness (bench/gpu_correctness.py): bf16 vs fp32 CPU, streamed vs resident, fp8, interrupt, attention
if [ -n "${DRY_RUN:-}" ]; then check=(--dry-run); else check=(); fi
timeout 300 "$python" bench/gpu_correctness.py "${check[@]}" | tee "$out/correctness.json" || status=1
# --- end of correctness
exit $status
