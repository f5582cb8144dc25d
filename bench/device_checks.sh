#!/usr/bin/env bash
# The GPU checks of issues 2 and 3 as one command for a lent GPU machine (its python3 has torch, einops,
# safetensors and numpy; nothing else is needed):
#     device run: command "bash bench/device_checks.sh", timeout_s 540
# Writes gpu.txt, transformer.json, section.json and speed.json to $OUT (or ./bench_out). Expected: about 7
# minutes on an H100/H200 (the released-size model is filled with random bf16 weights on the GPU in about a second;
# the speed checks' torch.compile takes a minute or two of that).
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
# resident and low-VRAM forward: s/step, TFLOP/s, peak VRAM (issue 2)
timeout 240 "$python" bench/bench_transformer.py "${mode[@]}" --repeats 3 | tee "$out/transformer.json" || status=1
# one 33-frame section, 25 steps, TeaCache off and on (issue 3)
timeout 240 "$python" bench/bench_section.py "${mode[@]}" | tee "$out/section.json" || status=1

# --- speed options (issue 12): torch.compile, TeaCache vs MagCache, fp8 matmul ---------------------------------
# eager vs compiled s/step + compile time, TFLOP/s against the bound; one 25-step section with no cache, TeaCache
# 0.15 and MagCache default; fp8 matmul and fp8 upcast vs bf16 (s/step, relative L2 error of one forward)
speed_checks() {
    timeout 300 "$python" bench/bench_speed.py "${mode[@]}" --repeats 3 | tee "$out/speed.json"
}
speed_checks || status=1
# --- end of speed options ----------------------------------------------------------------------------------------

exit $status
