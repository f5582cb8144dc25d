"""Runs one forward or one section of a tiny random model on N ranks (gloo on the CPU, NCCL on GPUs), for the parity
tests and the device check: every rank builds the same model from the same seed, joins a torch.distributed group on
127.0.0.1 and runs with its share of the sequence; rank 0 writes its output to a .safetensors file.

    python -m framepack_dev.parallel_check --ranks 2 --scenario forward --out /tmp/out.safetensors
    (the scenarios' outputs on one process: run_scenario(parallel_model(), name))
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import save_file

from framepack_core.config import TINY
from framepack_core.conditioning import ImageConditioning, TextConditioning
from framepack_core.generate import GenerationRequest, generate_video
from framepack_core.parallel.mesh import ParallelMesh
from framepack_core.parallel.worker import join_group

from .comfy_server import free_port
from .random_weights import random_model

# TINY with 6 heads: splits 2, 3 and 6 ways (TINY's 2 heads only 2)
PARALLEL_TINY = dataclasses.replace(TINY, num_attention_heads=6)
SCENARIOS = ("forward", "forward_masked", "section")


def parallel_model(device: str = "cpu"):
    return random_model(PARALLEL_TINY, seed=0, std=0.05, device=device)


def forward_inputs(batch: int = 1, text_lengths=(5,), seed: int = 1, grid=(3, 8, 12)) -> dict:
    """One forward's inputs with the whole packed history (inverted layout), text padded to the longest prompt."""
    gen = torch.Generator().manual_seed(seed)
    t, h, w = grid
    rnd = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    mask = torch.zeros(batch, max(text_lengths), dtype=torch.bool)
    for i, n in enumerate(text_lengths):
        mask[i, :n] = True
    c = PARALLEL_TINY
    return dict(
        hidden_states=rnd(batch, 16, t, h, w), timestep=torch.tensor([937.0, 412.5][:batch]),
        guidance=torch.tensor([10000.0, 6000.0][:batch]),
        encoder_hidden_states=rnd(batch, max(text_lengths), c.text_embed_dim), encoder_attention_mask=mask,
        pooled_projections=rnd(batch, c.pooled_projection_dim), image_embeddings=rnd(batch, 6, c.image_proj_dim),
        latent_indices=torch.arange(3, 3 + t),
        clean_latents=rnd(batch, 16, 2, h, w), clean_latent_indices=torch.tensor([0, 3 + t]),
        clean_latents_2x=rnd(batch, 16, 2, h, w), clean_latent_2x_indices=torch.tensor([4 + t, 5 + t]),
        clean_latents_4x=rnd(batch, 16, 16, h, w), clean_latent_4x_indices=torch.arange(6 + t, 22 + t))


def video_request(seed: int = 7, **overrides) -> GenerationRequest:
    """A request for the PARALLEL_TINY model: start and end image, a prompt and a negative prompt."""
    g = torch.Generator().manual_seed(1)
    image = lambda: ImageConditioning(torch.randn(1, 16, 1, 8, 8, generator=g),  # noqa: E731
                                      torch.randn(1, 6, PARALLEL_TINY.image_proj_dim, generator=g))
    text = lambda n: TextConditioning(torch.randn(1, n, PARALLEL_TINY.text_embed_dim, generator=g),  # noqa: E731
                                      torch.randn(1, PARALLEL_TINY.pooled_projection_dim, generator=g))
    start, end, prompt, negative = image(), image(), text(5), text(3)
    base = dict(start=start, prompts=[(0.0, prompt)], negative=negative, num_frames=40, steps=3, seed=seed, end=end)
    return GenerationRequest(**{**base, **overrides})


def run_scenario(model, scenario: str, mesh: ParallelMesh | None = None, **request) -> torch.Tensor:
    """The scenario's output on this process: whole when `mesh` is None, else this rank's run of the split."""
    if scenario == "section":  # 33 frames at window 9: one section
        return generate_video(model, video_request(num_frames=33, **request), parallel=mesh).latents
    inputs = forward_inputs(2, (5, 3)) if scenario == "forward_masked" else forward_inputs()
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    job = mesh.for_job(False) if mesh is not None else None
    model.set_sequence_parallel(job.sequence if job else None)
    try:
        with torch.no_grad():
            return model(**inputs)
    finally:
        model.set_sequence_parallel(None)


def _rank_main(rank: int, world: int, init_method: str, device: str, scenarios: tuple[str, ...], out: str,
               request: dict):
    device = torch.device(device if device == "cpu" else f"cuda:{rank}")
    torch.set_num_threads(1)
    join_group(rank, world, device, init_method)
    try:
        mesh = ParallelMesh(PARALLEL_TINY.num_attention_heads, bool(request.pop("cfg_parallel", False)), device)
        model = parallel_model(str(device))
        results = {name: run_scenario(model, name, mesh, **request).float().cpu().contiguous() for name in scenarios}
        if rank == 0:
            save_file(results, out)
    finally:
        torch.distributed.destroy_process_group()


def run_ranks(world: int, scenarios: tuple[str, ...], out: str | Path, device: str = "cpu", **request) -> None:
    """Spawns `world` ranks running each of `scenarios`; rank 0's outputs go to `out`, one tensor per scenario.
    `device` "cuda" puts rank i on cuda:i (NCCL). `request` overrides the section's GenerationRequest fields (and
    cfg_parallel=True splits the CFG branches)."""
    init_method = f"tcp://127.0.0.1:{free_port()}"
    mp.start_processes(_rank_main, args=(world, init_method, device, tuple(scenarios), str(out), request),
                       nprocs=world, start_method="spawn")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="repeatable; default: all")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    run_ranks(args.ranks, tuple(args.scenario or SCENARIOS), args.out, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
