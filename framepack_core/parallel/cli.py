"""Generate a FramePack video's latents on several GPUs without ComfyUI, under torchrun:

    torchrun --nproc-per-node 4 -m framepack_core.parallel.cli --model FramePackI2V_HY_bf16.safetensors \\
        --inputs conditioning.safetensors --num-frames 150 --out latents.safetensors [--cfg-parallel --cfg 3]

Across machines, torchrun's rendezvous (--nnodes, --rdzv-endpoint) forms the group the same way. Each rank loads
its own copy of the model onto cuda:LOCAL_RANK (gloo on CPUs when no GPU is visible, for trying it out) and runs the
same code path as the FramePack Parallel node. Rank 0 writes the latents ([1, 16, T, h, w], model space, decode
with the HunyuanVideo VAE) and the used seed into the .safetensors metadata.

--inputs is a .safetensors file of the encoded conditioning: start_latent [1, 16, 1, h, w] and start_embeds
[1, N, D_siglip] (the VAE's and SigLIP's encodings of the start image), prompt_tokens [1, L, D_text] and
prompt_pooled [1, D_pooled] (the hunyuan_video text encoder's), optionally negative_tokens / negative_pooled and
end_latent / end_embeds. --random-inputs HxW makes random ones of the model's widths instead (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file

from ..conditioning import ImageConditioning, TextConditioning
from ..errors import FramePackError, InputError
from ..generate import GenerationRequest, generate_video
from ..limits import (DEFAULT_CFG, DEFAULT_COMPUTE_DTYPE, DEFAULT_END_STRENGTH, DEFAULT_FRAMES, DEFAULT_GUIDANCE,
                      DEFAULT_STEPS, MAX_FRAMES, MAX_SIDE, MIN_SIDE, MODES, RANDOM_SEED, Mode)
from .mesh import ParallelMesh
from .spec import ModelSpec
from .worker import join_group

REQUIRED = ("start_latent", "start_embeds", "prompt_tokens", "prompt_pooled")
OPTIONAL_PAIRS = (("negative_tokens", "negative_pooled"), ("end_latent", "end_embeds"))
MAX_INPUT_BYTES = 1 << 30  # conditioning is a few MB; refuse anything that could not be one


def read_inputs(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"--inputs {path.name}: give a .safetensors file (no pickle files are read)")
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise InputError(f"--inputs {path.name} is {path.stat().st_size >> 20} MB; conditioning takes a few MB")
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    missing = [k for k in REQUIRED if k not in tensors]
    for a, b in OPTIONAL_PAIRS:
        if (a in tensors) != (b in tensors):
            missing.append(b if a in tensors else a)
    if missing:
        raise InputError(f"--inputs {path.name} lacks {', '.join(missing)} (keys: {', '.join(sorted(tensors))})")
    return tensors


def random_inputs(model, height: int, width: int) -> dict[str, torch.Tensor]:
    c, g = model.config, torch.Generator().manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return {"start_latent": rnd(1, 16, 1, height // 8, width // 8), "start_embeds": rnd(1, 729, c.image_proj_dim),
            "prompt_tokens": rnd(1, 64, c.text_embed_dim), "prompt_pooled": rnd(1, c.pooled_projection_dim)}


def build_request(tensors: dict[str, torch.Tensor], args) -> GenerationRequest:
    end = None
    if "end_latent" in tensors:
        end = ImageConditioning(tensors["end_latent"], tensors["end_embeds"])
    negative = None
    if "negative_tokens" in tensors:
        negative = TextConditioning(tensors["negative_tokens"], tensors["negative_pooled"])
    return GenerationRequest(
        start=ImageConditioning(tensors["start_latent"], tensors["start_embeds"]),
        prompts=[(0.0, TextConditioning(tensors["prompt_tokens"], tensors["prompt_pooled"]))],
        num_frames=args.num_frames, mode=Mode(args.mode), negative=negative, end=end, end_strength=args.strength,
        steps=args.steps, guidance_scale=args.guidance, cfg_scale=args.cfg, seed=args.seed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="torchrun --nproc-per-node N -m framepack_core.parallel.cli",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="FramePack .safetensors file, sharded folder or .gguf")
    parser.add_argument("--inputs", help="the encoded conditioning (.safetensors, keys above)")
    parser.add_argument("--random-inputs", metavar="HxW", help="random conditioning at this pixel size instead")
    parser.add_argument("--out", required=True, help="where rank 0 writes the latents (.safetensors)")
    parser.add_argument("--mode", choices=MODES, default=Mode.INVERTED.value,
                        help="inverted for FramePackI2V_HY, forward for F1")
    parser.add_argument("--num-frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    parser.add_argument("--cfg", type=float, default=DEFAULT_CFG)
    parser.add_argument("--strength", type=float, default=DEFAULT_END_STRENGTH)
    parser.add_argument("--seed", type=int, default=RANDOM_SEED)
    parser.add_argument("--cfg-parallel", action="store_true", help="the CFG branches on two halves of the ranks")
    parser.add_argument("--compute-dtype", default=DEFAULT_COMPUTE_DTYPE)
    parser.add_argument("--attention", default="sdpa")
    args = parser.parse_args(argv)
    if (args.inputs is None) == (args.random_inputs is None):
        parser.error("give exactly one of --inputs and --random-inputs")
    if not 1 <= args.num_frames <= MAX_FRAMES:
        parser.error(f"--num-frames must be 1-{MAX_FRAMES}")
    if args.random_inputs is not None:
        size = args.random_inputs.lower().split("x")
        if len(size) != 2 or not all(v.isdigit() and MIN_SIDE <= int(v) <= MAX_SIDE for v in size):
            parser.error(f"--random-inputs takes HxW in pixels, each {MIN_SIDE}-{MAX_SIDE}, e.g. 720x1280")
        args.random_inputs = tuple(int(v) for v in size)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if "RANK" not in os.environ:
        print("run me under torchrun (it sets RANK, WORLD_SIZE and the rendezvous), e.g. torchrun --nproc-per-node 2 "
              "-m framepack_core.parallel.cli ...", file=sys.stderr)
        return 2
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    join_group(rank, world, device, "env://")
    try:
        model = ModelSpec(args.model, compute_dtype=args.compute_dtype, attention=args.attention).load(device)
        if device.type == "cuda":
            model.to(device)
        if args.random_inputs:
            tensors = random_inputs(model, *args.random_inputs)
        else:
            tensors = read_inputs(args.inputs)
        mesh = ParallelMesh(model.config.num_attention_heads, args.cfg_parallel, device)
        on_step = None
        if rank == 0:
            def on_step(section, sections, step, steps, x0):
                print(f"section {section + 1}/{sections} step {step + 1}/{steps}", file=sys.stderr, flush=True)
        result = generate_video(model, build_request(tensors, args), device=device, on_step=on_step, parallel=mesh)
        if rank == 0:
            meta = {"seed": str(result.seed), "plan": json.dumps(result.plan.summary()), "world": str(world)}
            save_file({"latents": result.latents.contiguous()}, args.out, metadata=meta)
            print(f"wrote {args.out}: latents {list(result.latents.shape)}, seed {result.seed}", file=sys.stderr)
    except FramePackError as err:
        print(f"rank {rank}: {err}", file=sys.stderr)
        return 1
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
