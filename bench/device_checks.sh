#!/usr/bin/env bash
# The GPU checks as one command for a GPU machine whose python3 has torch, einops, safetensors and numpy (nothing
# else is needed):
#     bash bench/device_checks.sh
# Writes to $OUT (or ./bench_out), most important first (a run cut short still answers "does our CUDA code work"):
# gpu.txt; correctness.json (bench/gpu_correctness.py: generate_video bf16 on CUDA vs fp32 on the CPU, streamed vs
# resident bit for bit, fp8 storage, an interrupt mid-section, attention kernels); transformer.json (resident
# forward: s/step, TFLOP/s, peak allocated and reserved VRAM, activation peak against framepack_core.memory's
# formula, SDPA kernel used); section.json (a warm-up section, then one 33-frame section with TeaCache off and on);
# speed.json (eager vs torch.compile s/step and compile time, one 25-step section with no cache, TeaCache 0.15,
# MagCache and EasyCache, fp8 matmul and fp8 upcast vs bf16); streaming.json (every block streamed from host memory: pageable,
# pinned, and loaded from a memory-mapped safetensors file, with the host-to-device GB/s); streaming_async.json
# (pageable streaming under PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync, as ComfyUI runs); gguf.json
# (bench/bench_gguf.py: bf16, fp8, Q8_0 and Q4_0 at 640x608, s/step and peak VRAM, resident and streamed);
# parallel.json (bench/bench_parallel.py: NCCL parity of the sequence split, s/step on 1 GPU and on all GPUs).
# Expected: about 12 minutes on an H100/H200 (the released-size model is drawn with random bf16 weights on the GPU
# in about a second; torch.compile takes a minute or two; the memory-mapped variant writes a 26 GB file to TMPDIR).
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
    stream_mode=(--dry-run)
else
    mode=(--gpu-only)
    stream_mode=(--steps 1)
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
fi
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
if [ -n "${DRY_RUN:-}" ]; then check=(--dry-run); else check=(); fi
# correctness: bf16 CUDA vs fp32 CPU, streamed vs resident, fp8, interrupt, attention kernels
timeout 300 "$python" bench/gpu_correctness.py "${check[@]}" | tee "$out/correctness.json" || status=1
# several GPUs: NCCL parity of the sequence split on every GPU (N=1 still checks the NCCL path), then s/step of a
# 720p section of a mid-size model on 1 GPU and on all GPUs through the worker group, and the ratio
timeout 300 "$python" bench/bench_parallel.py "${mode[@]}" | tee "$out/parallel.json" || status=1
# resident forward: s/step, TFLOP/s, peak VRAM, activations against the formula, attention kernel
timeout 240 "$python" bench/bench_transformer.py "${mode[@]}" --repeats 3 | tee "$out/transformer.json" || status=1
# a warm-up section, then one 33-frame section, 25 steps, TeaCache off and on
timeout 240 "$python" bench/bench_section.py "${mode[@]}" | tee "$out/section.json" || status=1
# torch.compile (eager vs compiled s/step, compile time), a 25-step section with no cache, TeaCache 0.15,
# MagCache and EasyCache (speed-up and error against no cache), fp8 matmul and fp8 upcast vs bf16 (s/step,
# relative L2 error of one forward)
timeout 300 "$python" bench/bench_speed.py "${mode[@]}" --repeats 3 | tee "$out/speed.json" || status=1
# low-VRAM: pageable, pinned, memory-mapped file (last: it writes 26 GB); then the allocator ComfyUI uses
timeout 300 "$python" bench/bench_streaming.py "${stream_mode[@]}" | tee "$out/streaming.json" || status=1
PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync timeout 120 "$python" bench/bench_streaming.py "${stream_mode[@]}" \
    --variants pageable | tee "$out/streaming_async.json" || status=1
# GGUF: bf16 / fp8 / Q8_0 / Q4_0 weights (random packed blocks), resident and every block streamed
timeout 420 "$python" bench/bench_gguf.py "${mode[@]}" | tee "$out/gguf.json" || status=1
exit $status
