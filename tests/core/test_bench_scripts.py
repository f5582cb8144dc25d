"""The GPU checks are run rarely (only when a GPU is lent), so their code is run here on the CPU in dry-run mode:
bench/device_checks.sh with DRY_RUN=1 runs the GPU parts of the benchmark scripts and the correctness checks
(bench/gpu_correctness.py) with the tiny model. This measures nothing; it makes sure the one prepared GPU command
works before device time is spent on it."""

import json
import os
import subprocess
import sys
from pathlib import Path

from framepack_core import TINY

REPO = Path(__file__).resolve().parents[2]


def test_device_checks_script_runs_in_dry_run_mode(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", str(REPO / "bench" / "device_checks.sh")], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr

    forward = json.loads((tmp_path / "transformer.json").read_text())["dry_run"]
    tokens = forward["tokens"]
    # grid (3, 8, 8), 2x2 patches: 3 * 4 * 4 noisy tokens; history 1x 2*16, 2x 1*2*2 (pooled), 4x 4*1*1 (padded)
    assert tokens == {"image": 48 + 40, "noisy": 48, "history": 32 + 4 + 4, "siglip": 729, "text": 16}
    assert forward["resident"]["streamed_blocks"] == 0 and forward["resident"]["s_per_step"] > 0
    assert forward["resident"]["formula_gb"] > 0 and forward["attention_kernels"] == {"cpu bfloat16": "default"}

    section = json.loads((tmp_path / "section.json").read_text())["dry_run"]
    assert set(section) == {"warm_up_s", "teacache_off", "teacache_0.15"}
    assert section["teacache_off"]["teacache_skipped_steps"] == 0
    assert section["warm_up_s"] > 0 and all(section[k]["seconds"] > 0 for k in ("teacache_off", "teacache_0.15"))

    blocks = TINY.num_layers + TINY.num_single_layers
    streaming = json.loads((tmp_path / "streaming.json").read_text())["dry_run"]
    assert set(streaming) == {"allocator", "h2d_gb_per_s", "pageable", "pinned", "mmap"}
    for variant in ("pageable", "pinned", "mmap"):
        assert streaming[variant]["streamed_blocks"] == blocks and streaming[variant]["s_per_step"] > 0
    assert streaming["mmap"]["file_write_s"] >= 0
    under_async = json.loads((tmp_path / "streaming_async.json").read_text())["dry_run"]
    assert under_async["allocator"] == "backend:cudaMallocAsync" and set(under_async) == {"allocator", "h2d_gb_per_s",
                                                                                          "pageable"}

    # speed options: every part ran and reported in the shape the GPU run will use
    speed = json.loads((tmp_path / "speed.json").read_text())["dry_run"]
    assert speed["eager"]["s_per_step"] > 0 and speed["compiled"]["s_per_step"] > 0
    assert speed["compiled"]["compile_seconds"] is not None
    assert set(speed["caches"]) == {"none", "teacache_0.15", "magcache_default", "easycache_default"}
    assert speed["caches"]["none"]["skipped_steps"] == 0
    for label, cache in speed["caches"].items():  # the dry run's 4 steps: every step accounted for
        assert cache["computed_steps"] + cache["skipped_steps"] == 4, label
    assert speed["caches"]["easycache_default"]["computed_steps"] == 4  # all inside EasyCache's warm-up
    fp8 = speed["fp8"]
    assert fp8["fp8_upcast"]["layers"] == 0 and fp8["fp8_matmul"]["layers"] > 0  # the scaled path really ran
    assert 0 < fp8["fp8_matmul"]["rel_l2_vs_bf16"] < 0.1

    gguf = json.loads((tmp_path / "gguf.json").read_text())["dry_run"]
    assert set(gguf) == {"bf16", "fp8_e4m3fn", "Q8_0", "Q4_0"}
    for kind, entry in gguf.items():
        assert entry["resident"]["s_per_step"] > 0 and entry["resident"]["streamed_blocks"] == 0
        assert entry["streamed"]["s_per_step"] > 0
    streamed = {kind: entry["streamed"]["streamed_bytes_per_step"] for kind, entry in gguf.items()}
    assert streamed["Q4_0"] < streamed["Q8_0"] < streamed["bf16"] and streamed["fp8_e4m3fn"] < streamed["bf16"]

    parallel = json.loads((tmp_path / "parallel.json").read_text())["dry_run"]
    assert parallel["parity"]["ok"] and parallel["parity"]["ranks"] == 2
    assert parallel["one"]["ranks"] == 1 and parallel["many"]["ranks"] == 2 and parallel["speedup"] > 0

    correctness = json.loads((tmp_path / "correctness.json").read_text())["dry_run"]
    checks = correctness["checks"]
    assert correctness["ok"] and all(check["ok"] for check in checks.values())
    assert 0 < checks["bf16_vs_fp32_cpu"]["rel_l2"] <= checks["bf16_vs_fp32_cpu"]["bound"]  # bf16 really ran
    assert checks["streamed_vs_resident"]["bitwise"]
    assert checks["streamed_vs_resident"]["streamed_blocks"] == TINY.num_layers + TINY.num_single_layers
    assert "torch.float8_e4m3fn" in checks["fp8_e4m3fn_vs_bf16"]["weight_dtypes"]
    assert 0 < checks["fp8_e4m3fn_vs_bf16"]["rel_l2"] <= checks["fp8_e4m3fn_vs_bf16"]["bound"]
    interrupt = checks["interrupt_mid_section"]
    assert interrupt["raised"] and interrupt["steps_before"] == interrupt["expected_steps"] and interrupt["rerun_bitwise"]
    assert {"flash_attn", "sage"} <= checks["attention_backends"].keys()
