"""3-D rotary position embedding of HunyuanVideo as FramePack uses it.

Each token gets one 1-D RoPE per axis (time, y, x) with the axis dims of the config (16/56/56 for the released
model, theta 256). Time positions are the section's frame *indices*, not 0..T-1: that is how FramePack places the
start frame, the blank gap, the window and the history on one time line. Compressed history (2x, 4x) gets the
RoPE of the full-resolution grid average-pooled over each patch, so a 4x token sits at the centre of the 4x8x8
latent block it summarises.

Frequencies are returned as (cos, sin), each [tokens, head_dim] in float32, with every frequency repeated for the
two channels of its rotation pair (channels 2i, 2i+1 rotate together).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _axis_angles(positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    """positions [N] -> angles [N, dim] (each frequency twice, interleaved)."""
    # float32 throughout, as the checkpoints were trained: float64 angles would drift from them at large positions.
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device)[: dim // 2] / dim))
    angles = torch.outer(positions.to(torch.float32), inv_freq)
    return angles.repeat_interleave(2, dim=1)


def rope_grid(frame_indices: torch.Tensor, height: int, width: int, axes_dim: tuple[int, int, int],
              theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE for the token grid frame_indices x height x width (token units), in t-major order. Returns (cos, sin)."""
    device = frame_indices.device
    t, y, x = torch.meshgrid(frame_indices.to(torch.float32), torch.arange(height, dtype=torch.float32, device=device),
                             torch.arange(width, dtype=torch.float32, device=device), indexing="ij")
    angles = torch.cat([_axis_angles(p.reshape(-1), d, theta) for p, d in zip((t, y, x), axes_dim)], dim=1)
    return angles.cos(), angles.sin()


def pad_to_multiple(x: torch.Tensor, kernel: tuple[int, int, int]) -> torch.Tensor:
    """Replicate-pads [B, C, T, H, W] at the end of each axis to a multiple of the kernel (the history embedders'
    rule: a partial block repeats its last frame/row/column)."""
    pads = []
    for size, k in zip(reversed(x.shape[2:]), reversed(kernel)):
        pads += [0, (k - size % k) % k]
    return F.pad(x, pads, mode="replicate") if any(pads) else x


def pooled_rope_grid(frame_indices: torch.Tensor, height: int, width: int, axes_dim: tuple[int, int, int], theta: float,
                     kernel: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE of a compressed history slot: full-grid RoPE, replicate-padded and average-pooled by `kernel`."""
    cos, sin = rope_grid(frame_indices, height, width, axes_dim, theta)
    grid = torch.stack([cos, sin]).transpose(1, 2).reshape(2, -1, len(frame_indices), height, width)
    pooled = F.avg_pool3d(pad_to_multiple(grid, kernel), kernel, stride=kernel)
    pooled = pooled.flatten(2).transpose(1, 2)
    return pooled[0], pooled[1]


def to_complex(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(cos, sin) [N, D] with interleaved pairs -> one complex rotation per pair [N, D/2]."""
    return torch.complex(cos[:, ::2].contiguous(), sin[:, ::2].contiguous())


def rotate_float32(xf: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """RoPE on a contiguous float32 xf [B, N, H, D]: channel pairs (2i, 2i+1) viewed as complex numbers are
    multiplied by the complex freqs [N, D/2], (a + ib)(cos + i sin), i.e. the pair becomes
    (a cos - b sin, b cos + a sin). With complex freqs the result is written into xf itself (no second float32 copy
    of q or k). `freqs` may also be its real view [N, D/2, 2] (cos, sin), which the compiled blocks get: inductor
    generates no code for complex tensors, while the same rotation in real arithmetic fuses with the norm and cast
    around it; that path returns a new tensor."""
    if not freqs.is_complex():
        a, b = xf.unflatten(-1, (-1, 2)).unbind(-1)
        cos, sin = freqs[None, :, None].unbind(-1)
        return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)
    torch.view_as_complex(xf.unflatten(-1, (-1, 2))).mul_(freqs[None, :, None, :])
    return xf
