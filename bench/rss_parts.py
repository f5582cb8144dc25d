"""Where the memory of a 720p job goes, part by part, in this process (no server): each part runs in a fresh
process, and its peak RSS growth is the kernel's high-water mark (VmHWM, reset just before the part through
/proc/self/clear_refs) over the RSS at that moment.

    python bench/rss_parts.py sample   # one sampling step of the tiny transformer, one 9-latent section at 720p
    python bench/rss_parts.py vae      # ComfyUI's VAE.decode of one decode chunk (--latents, default 18) with the
                                       # tiny TAEHV
    python bench/rss_parts.py write    # write_mp4 of a 60-frame video with a stand-in decoder that returns
                                       # fresh frames in the layout ComfyUI's VAE.decode returns (no VAE)

--width/--height change the size (default 1280x720); --frames the video length of `write`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MB = 1024 * 1024


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(name: str, run) -> dict:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status_kb("VmRSS")
    started = time.monotonic()
    run()
    growth = status_kb("VmHWM") - before
    return {"part": name, "rss_before_mb": round(before / 1024, 1), "peak_growth_mb": round(growth / 1024, 1),
            "seconds": round(time.monotonic() - started, 1)}


def part_sample(width: int, height: int) -> dict:
    import torch

    from framepack_core import TINY
    from framepack_core.conditioning import ImageConditioning, TextConditioning
    from framepack_core.generate import GenerationRequest, generate_video
    from framepack_dev.random_weights import tiny_transformer

    model = tiny_transformer()
    g = torch.Generator().manual_seed(0)
    start = ImageConditioning(torch.randn(1, 16, 1, height // 8, width // 8, generator=g),
                              torch.randn(1, 16, TINY.image_proj_dim, generator=g))
    text = TextConditioning(torch.randn(1, 5, TINY.text_embed_dim, generator=g), torch.randn(1, 16, generator=g))
    request = GenerationRequest(start=start, prompts=[(0.0, text)], num_frames=33, steps=1, seed=1)
    return measure(f"one sampling step, one 9-latent section at {width}x{height}",
                   lambda: generate_video(model, request, keep_latents=False))


def _comfy_vae():
    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, str(Path.home() / ".cache/framepack-comfy/ComfyUI"))
    from comfy.cli_args import args

    args.cpu = True  # as the CPU server runs (ComfyUI's --cpu)
    import comfy.sd

    from framepack_dev.tiny_vae import write_tiny_taehv

    path = Path(tempfile.mkdtemp()) / "taehv_tiny.safetensors"
    write_tiny_taehv(path)
    vae = comfy.sd.VAE(sd=load_file(str(path)))
    vae.first_stage_model.show_progress_bar = False
    return vae, torch


def part_vae(width: int, height: int, latents: int) -> dict:
    vae, torch = _comfy_vae()
    samples = torch.randn(1, 16, latents, height // 8, width // 8)
    vae.decode(samples[:, :, :2, :4, :4])  # load the model first
    with torch.inference_mode():  # as ComfyUI runs nodes; with autograd on, every activation would be kept
        return measure(f"ComfyUI VAE.decode, tiny TAEHV, {latents} latents -> {4 * latents - 3} frames at "
                       f"{width}x{height}", lambda: vae.decode(samples))


def part_write(width: int, height: int, frames: int) -> dict:
    import torch

    from framepack_core.mp4 import write_mp4
    from framepack_core.planning import plan_video

    plan = plan_video(frames)
    latents = torch.zeros(1, 16, plan.total_latents, height // 8, width // 8)

    def decode(chunk: torch.Tensor) -> torch.Tensor:
        t = 4 * chunk.shape[2] - 3
        return torch.rand(1, 3, t, height, width).movedim(1, -1)  # VAE.decode's [B, T, H, W, C] view

    path = Path(tempfile.mkdtemp()) / "v.mp4"
    return measure(f"write_mp4, {frames} frames at {width}x{height}, stand-in decoder (its output included)",
                   lambda: write_mp4(str(path), plan, latents, decode, keep_frames=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("sample", "vae", "write"))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--latents", type=int, default=18, help="latents per decode of `vae` (a long video's chunk: 18)")
    args = ap.parse_args()
    if args.part == "sample":
        report = part_sample(args.width, args.height)
    elif args.part == "vae":
        report = part_vae(args.width, args.height, args.latents)
    else:
        report = part_write(args.width, args.height, args.frames)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
