"""Ulysses sequence parallelism for the FramePack transformer.

The image tokens of a forward (packed history + noisy window) are split along the sequence across the ranks of a
process group; everything that works token by token (norms, modulation, MLPs, RoPE, projections) runs on the
rank's slice only. Attention needs the whole sequence, so around it one all-to-all turns "my tokens, all heads"
into "all tokens, my heads" (HunyuanVideo's 24 heads allow 2, 3, 4, 6, 8 ranks), attention runs per head over the
full sequence, and a second all-to-all turns the result back. The SigLIP and text tokens (a few hundred) are kept
whole on every rank: each rank attends them with its own heads and an all-gather over heads rebuilds them.

A sequence that does not divide by the rank count is padded at its end; the padding is cut off before attention
and never becomes a key, so the result is the unpadded one. The collectives are torch.distributed's (NCCL on
GPUs, gloo on the CPU): yunchang's LongContextAttention was measured against this and not taken (see
README, "Several GPUs").
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..attention import attention
from ..errors import InputError


class SequenceParallel:
    """The sequence split of one process group. `shard` is called once per forward (it records the forward's
    sequence lengths), then every attention layer calls `attention`, and `gather` rebuilds the full sequence."""

    def __init__(self, group, heads: int):
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if heads % self.size:
            raise InputError(f"sequence parallelism over {self.size} GPUs needs a head count divisible by "
                             f"{self.size}; this model has {heads} heads (FramePack's 24 allow 2, 3, 4, 6 or 8)")
        self.heads = heads
        self.full = self.padded = self.local = 0

    # -- the sequence split --------------------------------------------------------------------------------

    def shard(self, tokens: torch.Tensor, rope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the image tokens [B, L, D] and of their RoPE [L, d] (padded rows rotate by 1)."""
        self.full = tokens.shape[1]
        self.padded = -(-self.full // self.size) * self.size
        self.local = self.padded // self.size
        pad = self.padded - self.full
        if pad:
            tokens = F.pad(tokens, (0, 0, 0, pad))
            rope = torch.cat([rope, torch.ones(pad, rope.shape[1], dtype=rope.dtype, device=rope.device)])
        part = slice(self.rank * self.local, (self.rank + 1) * self.local)
        # copies: a view would keep the whole sequence's memory alive for the whole forward
        return tokens[:, part].clone(), rope[part].clone()

    def local_slice(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's slice [B, local, ...] of a full-sequence tensor [B, L, ...] (a cached residual)."""
        pad = self.padded - full.shape[1]
        if pad:
            full = torch.cat([full, full.new_zeros(full.shape[0], pad, *full.shape[2:])], dim=1)
        return full[:, self.rank * self.local:(self.rank + 1) * self.local]

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """The full sequence [B, L, ...] from every rank's slice [B, local, ...], padding removed."""
        b, n = local.shape[:2]
        whole = local.new_empty(self.size * b, *local.shape[1:])  # rank after rank along dim 0
        self._all_gather_into(whole, local.contiguous())
        whole = whole.view(self.size, b, n, *local.shape[2:]).transpose(0, 1).flatten(1, 2)  # a view when b == 1
        return whole[:, :self.full]

    # -- attention -----------------------------------------------------------------------------------------

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str,
                  key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Drop-in for attention.attention. q, k, v: [B, local + R, H, D], this rank's image-token slice followed
        by R tokens every rank holds whole (SigLIP, text); key_mask: optional [B, ... + R], True = attend. Returns
        [B, local + R, H * D] as the unsplit attention would for these rows."""
        n, h, r = self.local, self.heads // self.size, q.shape[1] - self.local
        b = q.shape[0]
        heads = slice(self.rank * h, (self.rank + 1) * h)
        # keys in the order [R whole tokens | image tokens]: attention does not depend on the order of its keys,
        # and this way the padding is at the end, outside the view that attention reads
        mask = None
        if key_mask is not None:
            # its last R entries are the whole tokens' (image tokens are never masked)
            mask = torch.cat([key_mask[:, key_mask.shape[1] - r:], key_mask.new_ones(b, self.full)], dim=1)
        whole = [self._all_tokens(t[:, :n], t[:, n:, heads]) for t in (q, k, v)]
        out = attention(*whole, backend, mask).unflatten(-1, (h, -1))  # [B, R + full, h, D]
        del whole
        result = out.new_empty(b, n + r, self.heads, out.shape[-1])
        self._my_tokens(out[:, r:], result[:, :n])
        result[:, n:] = torch.cat(self._all_gather(out[:, :r]), dim=2)
        return result.flatten(2)

    def _all_tokens(self, image: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
        """[B, R + full, H/N, D]: the R whole tokens and every rank's image tokens, with this rank's heads, from
        this rank's image tokens [B, local, H, D] (all heads) and the whole tokens' heads [B, R, H/N, D]."""
        b, n, _, d = image.shape
        r, h = whole.shape[1], self.heads // self.size
        send = image.unflatten(2, (self.size, h)).permute(2, 0, 1, 3, 4).contiguous()  # [N, B, n, h, D]
        buffer = image.new_empty(b, r + self.padded, h, d)
        buffer[:, :r] = whole
        if b == 1:  # rank i's tokens land in place: [N, 1, n, h, D] is the buffer's image part itself
            self._all_to_all(send, buffer[0, r:].view(self.size, 1, n, h, d))
        else:
            received = torch.empty_like(send)
            self._all_to_all(send, received)
            buffer[:, r:] = received.transpose(0, 1).reshape(b, self.padded, h, d)
        return buffer[:, :r + self.full]

    def _my_tokens(self, image: torch.Tensor, out: torch.Tensor) -> None:
        """Writes into `out` [B, local, H, D] this rank's tokens with all heads, from every image token with this
        rank's heads `image` [B, full, H/N, D]."""
        b, _, h, d = image.shape
        send = image.new_zeros(self.size, b, self.local, h, d)  # [N, B, n, h, D]; the padding stays zero
        if b == 1:  # padded token t is send[t // n, 0, t % n]
            send.view(self.padded, h, d)[:self.full] = image[0]
        else:
            send[:] = F.pad(image, (0, 0, 0, 0, 0, self.padded - self.full)).unflatten(1, (self.size, -1)) \
                .transpose(0, 1)
        received = torch.empty_like(send)  # [i]: my tokens, rank i's heads
        self._all_to_all(send, received)
        out.unflatten(2, (self.size, h)).copy_(received.permute(1, 2, 0, 3, 4))

    # -- the collectives (memory.py's meta-device measurement replaces them) -------------------------------

    def _all_to_all(self, send: torch.Tensor, received: torch.Tensor) -> None:
        """Chunk i of `send` (dim 0) goes to rank i; chunk i of `received` (contiguous) comes from rank i."""
        dist.all_to_all_single(received, send, group=self.group)

    def _all_gather_into(self, whole: torch.Tensor, tensor: torch.Tensor) -> None:
        """`whole` [N * d0, ...] gets every rank's `tensor` [d0, ...] (contiguous), in rank order."""
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        gather(whole, tensor, group=self.group)

    def _all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous(), group=self.group)
        return parts


class SimulatedSplit(SequenceParallel):
    """Rank 0 of an N-way split with the collectives' results allocated but not filled: for measuring one rank's
    memory on the meta device (memory.measure_peak_activations) without a process group. Not for real tensors."""

    def __init__(self, size: int, heads: int):
        if heads % size:
            raise InputError(f"{heads} heads cannot be split {size} ways")
        self.group, self.size, self.rank, self.heads = None, size, 0, heads
        self.full = self.padded = self.local = 0

    def _all_to_all(self, send: torch.Tensor, received: torch.Tensor) -> None:
        pass

    def _all_gather_into(self, whole: torch.Tensor, tensor: torch.Tensor) -> None:
        pass

    def _all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [torch.empty_like(tensor) for _ in range(self.size)]
