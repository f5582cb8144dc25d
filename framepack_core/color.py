"""RGB frames to 8-bit Y'CbCr 4:2:0 (BT.709, limited range), the pixel format H.264 players expect.

Done here in integer arithmetic rather than by the video library's scaler (FFmpeg's swscale), so the bytes handed
to the encoder are a fixed function of the frame, whatever SIMD path or version of swscale a machine has.

Y  = 16  + 219 * (0.2126 R + 0.7152 G + 0.0722 B)            (R, G, B in [0, 1])
Cb = 128 + 224 * (B - Y') / 1.8556,   Cr = 128 + 224 * (R - Y') / 1.5748
Chroma is taken from the mean RGB of each 2x2 block (centre-sited), which needs even width and height.
"""

from __future__ import annotations

import torch

_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
_SHIFT = 16  # fixed-point fraction bits of the coefficients


def _fixed(values: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(round(v * (1 << _SHIFT)) for v in values)


_Y = _fixed(tuple(219 / 255 * k for k in (_KR, _KG, _KB)))
_CB = _fixed(tuple(224 / 255 / (2 * (1 - _KB)) * c for c in (-_KR, -_KG, 1 - _KB)))
_CR = _fixed(tuple(224 / 255 / (2 * (1 - _KR)) * c for c in (1 - _KR, -_KG, -_KB)))


def _weighted(planes: torch.Tensor, coefficients: tuple[int, int, int], offset: int, extra_shift: int = 0):
    """offset + round(sum of planes[i] * coefficients[i] / 2^(SHIFT + extra_shift)), clamped to 0-255, as uint8.
    planes: int32 [3, h, w]; the right shift of a negative total floors, so rounding is half-up throughout."""
    shift = _SHIFT + extra_shift
    r, g, b = planes.unbind(0)
    total = r * coefficients[0]
    total += g * coefficients[1]
    total += b * coefficients[2]
    total += 1 << (shift - 1)
    total >>= shift
    total += offset
    return total.clamp_(0, 255).to(torch.uint8)


def to_rgb24(frames: torch.Tensor) -> torch.Tensor:
    """Float frames [..., C >= 3] in [0, 1] (ComfyUI's IMAGE) -> uint8 RGB on the CPU: clamped, scaled by 255 and
    rounded to nearest (ties to even); an alpha channel is dropped."""
    return (frames[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def rgb_to_yuv420p(frame: torch.Tensor) -> torch.Tensor:
    """frame: uint8 [H, W, 3] RGB -> uint8 [H * 3 // 2, W]: the Y plane, then the U and V planes (each H/2 x W/2)
    flattened after it (the layout of a yuv420p picture in one array). A few milliseconds for a 720p frame."""
    if frame.dtype != torch.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"expected a uint8 RGB frame [H, W, 3], got {frame.dtype} {list(frame.shape)}")
    h, w, _ = frame.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 chroma needs an even width and height, got {w}x{h}")
    planes = frame.permute(2, 0, 1).to(torch.int32)
    y = _weighted(planes, _Y, 16)
    rows = planes[:, 0::2] + planes[:, 1::2]
    block_sums = rows[:, :, 0::2] + rows[:, :, 1::2]  # 4x the mean RGB of each 2x2 block
    u = _weighted(block_sums, _CB, 128, extra_shift=2)
    v = _weighted(block_sums, _CR, 128, extra_shift=2)
    return torch.cat([y.flatten(), u.flatten(), v.flatten()]).reshape(h * 3 // 2, w)
