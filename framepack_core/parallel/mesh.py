"""How the ranks of one run share the work: CFG branches across two halves, the sequence within each half.

With CFG parallelism (cfg_parallel, 2 x N ranks) ranks 0..N-1 run the positive prompt and N..2N-1 the negative
one, each half splitting its sequence N ways; rank i and rank N+i swap their velocities after every model call,
so both halves combine the same guided velocity and stay in step. A job without real CFG (cfg_scale 1) has no
negative branch: it splits its sequence over all 2N ranks when the head count allows, else both halves compute
the positive branch (same result, no gain). Without CFG parallelism all ranks split the sequence.

Every rank must build the same groups in the same order (torch.distributed's rule), so a ParallelMesh is made
once per process group, on every rank, right after init_process_group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import InputError
from ..generate import resolve_seed
from .ulysses import SequenceParallel

CFG_BRANCHES = 2


def check_layout(world: int, heads: int, cfg_parallel: bool) -> int:
    """The sequence-parallel size of each CFG half; raises InputError naming the fix for a layout that cannot run."""
    if world < 1:
        raise InputError(f"a parallel run needs at least 1 rank, got {world}")
    branches = CFG_BRANCHES if cfg_parallel else 1
    if world % branches:
        raise InputError(f"CFG parallelism runs the positive and negative prompts on two halves of the GPUs: use an "
                         f"even number of GPUs, not {world}, or turn cfg_parallel off")
    sequence = world // branches
    if heads % sequence:
        usable = ", ".join(str(n * branches) for n in range(1, heads + 1) if heads % n == 0 and n <= 8)
        raise InputError(f"{world} GPUs{' with CFG parallelism' if cfg_parallel else ''} split each sequence "
                         f"{sequence} ways, which needs a head count divisible by {sequence}; this model has "
                         f"{heads} heads: use {usable} GPUs")
    return sequence


def job_split(world: int, heads: int, cfg_parallel: bool, uses_negative: bool) -> tuple[int, bool]:
    """(ranks splitting each sequence, whether the CFG branches run on separate halves) for a job: what
    ParallelMesh.for_job builds, as plain numbers for memory planning."""
    sequence = check_layout(world, heads, cfg_parallel)
    if cfg_parallel and uses_negative:
        return sequence, True
    if cfg_parallel and heads % world:
        return sequence, False
    return world, False


@dataclass
class JobParallel:
    """The split one job uses: its sequence split (None: the whole sequence on each rank), the swap of CFG
    branches (None: each rank runs every branch it needs) and this rank's branch."""
    sequence: SequenceParallel | None
    cfg_group: object | None
    branch: int  # 0 positive, 1 negative
    device: torch.device = torch.device("cpu")

    def exchange(self, own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) velocities from this rank's branch and its partner's."""
        parts = [torch.empty_like(own) for _ in range(CFG_BRANCHES)]
        dist.all_gather(parts, own.contiguous(), group=self.cfg_group)
        return parts[0], parts[1]

    def sum_over_branches(self, counts: dict) -> dict:
        """Step-cache counters of both branches (each rank counted only its own)."""
        if self.cfg_group is None or not counts:
            return counts
        values = torch.tensor([float(counts[k]) for k in sorted(counts)], dtype=torch.float64, device=self.device)
        dist.all_reduce(values, group=self.cfg_group)
        return {k: int(v) for k, v in zip(sorted(counts), values.tolist())}


class ParallelMesh:
    def __init__(self, heads: int, cfg_parallel: bool = False, device: torch.device | str = "cpu"):
        """`device`: where this rank computes; the small agreement tensors live there too (NCCL takes only CUDA
        tensors)."""
        self.device = torch.device(device)
        if not dist.is_initialized():
            raise RuntimeError("ParallelMesh needs torch.distributed initialised (init_process_group)")
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.cfg_parallel = cfg_parallel
        self.sequence_size = check_layout(self.world, heads, cfg_parallel)
        self.branch = self.rank // self.sequence_size
        # every rank creates every group, in this order
        self._whole = SequenceParallel(dist.group.WORLD, heads) if self.world > 1 and heads % self.world == 0 \
            else None
        self._half, self._cfg_group = None, None
        if cfg_parallel:
            for b in range(CFG_BRANCHES):
                ranks = list(range(b * self.sequence_size, (b + 1) * self.sequence_size))
                group = dist.new_group(ranks)
                if b == self.branch and self.sequence_size > 1:
                    self._half = SequenceParallel(group, heads)
            for i in range(self.sequence_size):
                group = dist.new_group([i, i + self.sequence_size])
                if self.rank % self.sequence_size == i:
                    self._cfg_group = group

    def for_job(self, uses_negative: bool) -> JobParallel:
        if self.cfg_parallel and uses_negative:
            return JobParallel(self._half, self._cfg_group, self.branch, self.device)
        if self.cfg_parallel and self._whole is None:
            # no negative branch and no split over every rank: each half computes the positive branch alone
            return JobParallel(self._half, None, 0, self.device)
        return JobParallel(self._whole, None, 0, self.device)

    def agree_seed(self, seed: int) -> int:
        """Rank 0's seed on every rank (a random seed, -1, would otherwise differ per rank)."""
        seed = resolve_seed(seed)  # rank 0's draw is the one broadcast
        box = [seed]  # seeds go up to 2**64 - 1, past int64: sent as a Python object
        dist.broadcast_object_list(box, src=0, device=self.device)
        return int(box[0])

    def agreed(self, flag: bool) -> bool:
        """True on every rank when any rank says True (interrupts: all ranks must stop at the same step)."""
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())
