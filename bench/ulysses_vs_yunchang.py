"""Ulysses attention, ours (framepack_core.parallel.ulysses) against yunchang's LongContextAttention, on 2 gloo ranks on
the CPU, same inputs, fully sharded q/k/v (yunchang keeps no tokens whole on every rank). Needs yunchang, which the
pack does not depend on:

    pip install yunchang==0.6.4 --no-deps && python bench/ulysses_vs_yunchang.py [--tokens 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from framepack_dev.comfy_server import free_port  # noqa: E402

HEADS, HEAD_DIM, CALLS = 8, 64, 5


def _rank(rank: int, world: int, port: int, tokens: int, out: str) -> None:
    from yunchang import LongContextAttention, set_seq_parallel_pg
    from yunchang.kernels import AttnType

    from framepack_core.parallel.ulysses import SequenceParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    set_seq_parallel_pg(world, 1, rank, world)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, tokens, HEADS, HEAD_DIM, generator=g) for _ in range(3))
    n = tokens // world
    mine = [t[:, rank * n:(rank + 1) * n].contiguous() for t in (q, k, v)]
    ours = SequenceParallel(dist.group.WORLD, HEADS)
    ours.shard(torch.zeros(1, tokens, 1), torch.ones(tokens, 1))  # records the sequence lengths
    theirs = LongContextAttention(attn_type=AttnType.TORCH_MATH)
    whole = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)))
    want = whole.transpose(1, 2).flatten(2)[:, rank * n:(rank + 1) * n]
    report = {}
    for name, call in (("ours", lambda: ours.attention(*mine, "sdpa")),
                       ("yunchang", lambda: theirs(*mine).flatten(2))):
        call()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(CALLS):
            got = call()
        dist.barrier()
        report[name] = {"s_per_call": round((time.perf_counter() - t0) / CALLS, 4),
                        "max_abs_diff_vs_one_process": (got - want).abs().max().item()}
    if rank == 0:
        Path(out).write_text(json.dumps(report, indent=2))
    dist.destroy_process_group()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        mp.start_processes(_rank, args=(2, port, args.tokens, str(out)), nprocs=2, start_method="spawn")
        print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
