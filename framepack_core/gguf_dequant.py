"""Dequantization of GGUF (ggml) quantized weights with torch ops, on any device, inside torch.compile graphs.

A quantized weight is kept as its packed bytes: a uint8 tensor [out_features, bytes_per_row], each row the ggml
blocks of one output row (ggml quantizes along the innermost dimension, the Linear's in_features). `dequantize`
turns it into an [out_features, in_features] tensor right before the matmul. Each block type follows the layout
of ggml-quants.c; the arithmetic runs in float32 in the same order as the `gguf` package's numpy reference
(gguf/quants.py), so the result equals it bit for bit before the final cast to the compute dtype.

Only bit operations, integer->float casts, dtype views and float multiply/adds are used: no Python loops over
data, no numpy, nothing dynamo cannot trace (no graph break). The format constants are written here (they are
part of the file format) so this module does not need the `gguf` package; tests compare them with it.
"""

from __future__ import annotations

import torch

# ggml type id -> (name, elements per block, bytes per block); ggml's GGMLQuantizationType values
QUANT_TYPES = {
    2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
}
# the plain float types a GGUF tensor may have (read as ordinary tensors, never kept packed)
FLOAT_TYPES = {0: ("F32", torch.float32), 1: ("F16", torch.float16), 30: ("BF16", torch.bfloat16)}
TYPE_IDS = {name: qtype for qtype, (name, *_) in {**QUANT_TYPES, **FLOAT_TYPES}.items()}
QK_K = 256


def type_name(qtype: int) -> str:
    entry = QUANT_TYPES.get(qtype) or FLOAT_TYPES.get(qtype)
    return entry[0] if entry else f"type {qtype}"


def row_bytes(qtype: int, in_features: int) -> int:
    """Bytes of one packed row of `in_features` elements (in_features must be a multiple of the block size)."""
    _, block, size = QUANT_TYPES[qtype]
    return in_features // block * size


def _f16(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The float16 at byte `start` of every block, as float32 [n, 1]."""
    return blocks[:, start:start + 2].contiguous().view(torch.float16).float()


def _shifted(bytes_: torch.Tensor, shifts: tuple[int, ...], mask: int) -> torch.Tensor:
    """(bytes >> s) & mask for each shift s, stacked on a new second-to-last axis: [..., len(shifts), n]."""
    s = torch.tensor(shifts, dtype=torch.uint8, device=bytes_.device).view(len(shifts), 1)
    return (bytes_.unsqueeze(-2) >> s) & mask


def _bits(bytes_: torch.Tensor) -> torch.Tensor:
    """The bits of little-endian bytes [n, k] as [n, 8k] (bit i of the k-byte integer at column i)."""
    s = torch.arange(8, dtype=torch.uint8, device=bytes_.device)
    return ((bytes_.unsqueeze(-1) >> s) & 1).flatten(-2)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """Packed 4-bit values [n, 16] -> [n, 32]: the low nibbles are elements 0-15, the high ones 16-31."""
    return _shifted(qs, (0, 4), 0x0F).flatten(-2)


def _q8_0(b):
    return b[:, 2:].contiguous().view(torch.int8).float() * _f16(b, 0)


def _q4_0(b):
    return _f16(b, 0) * (_nibbles(b[:, 2:]).to(torch.int8) - 8).float()


def _q4_1(b):
    return _f16(b, 0) * _nibbles(b[:, 4:]).float() + _f16(b, 2)


def _five_bit(qh: torch.Tensor, qs: torch.Tensor) -> torch.Tensor:
    return _nibbles(qs) | (_bits(qh) << 4)


def _q5_0(b):
    return _f16(b, 0) * (_five_bit(b[:, 2:6], b[:, 6:]).to(torch.int8) - 16).float()


def _q5_1(b):
    return _f16(b, 0) * _five_bit(b[:, 4:8], b[:, 8:]).float() + _f16(b, 2)


def _k_scale_min(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 six-bit scales and mins of a Q4_K/Q5_K block from its 12 scale bytes."""
    d, m, m_d = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = torch.cat([d & 0x3F, (m_d & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (m_d >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc, mn


def _k_scaled(b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """d * scale * q - dmin * min for Q4_K/Q5_K: q [n, 8, 32]."""
    n = b.shape[0]
    sc, mn = _k_scale_min(b[:, 4:16])
    d = (_f16(b, 0) * sc.float()).view(n, 8, 1)
    dm = (_f16(b, 2) * mn.float()).view(n, 8, 1)
    return (d * q.float() - dm).view(n, QK_K)


def _q4_k(b):
    n = b.shape[0]
    return _k_scaled(b, _shifted(b[:, 16:].view(n, 4, 32), (0, 4), 0x0F).view(n, 8, 32))


def _q5_k(b):
    n = b.shape[0]
    ql = _shifted(b[:, 48:].view(n, 4, 32), (0, 4), 0x0F).view(n, 8, 32)
    qh = _shifted(b[:, 16:48], tuple(range(8)), 0x01)  # [n, 8, 32]
    return _k_scaled(b, ql | (qh << 4))


def _q6_k(b):
    n = b.shape[0]
    scales = b[:, 192:208].contiguous().view(torch.int8).float()
    d = (_f16(b, 208) * scales).view(n, 16, 1)
    ql = _shifted(b[:, :128].view(n, 2, 64), (0, 4), 0x0F).reshape(n, 8, 32)
    qh = _shifted(b[:, 128:192].view(n, 2, 32), (0, 2, 4, 6), 0x03).reshape(n, 8, 32)
    q = ((ql | (qh << 4)).to(torch.int8) - 32).view(n, 16, 16).float()
    return (d * q).view(n, QK_K)


def _q3_k(b):
    n = b.shape[0]
    hmask, qs, scales = b[:, :32], b[:, 32:96], b[:, 96:108]
    low = _shifted(scales[:, :8], (0, 4), 0x0F).reshape(n, 16)
    high = _shifted(scales[:, 8:12], (0, 2, 4, 6), 0x03).reshape(n, 16)
    sc = ((low | (high << 4)).to(torch.int8) - 32).float()
    dl = (_f16(b, 108) * sc).view(n, 16, 1)
    ql = _shifted(qs.view(n, 2, 32), (0, 2, 4, 6), 0x03).reshape(n, 16, 16)
    qh = _shifted(hmask.view(n, 1, 32), tuple(range(8)), 0x01).reshape(n, 16, 16) ^ 1
    q = (ql.to(torch.int8) - (qh << 2).to(torch.int8)).float()
    return (dl * q).view(n, QK_K)


def _q2_k(b):
    n = b.shape[0]
    scales, qs = b[:, :16], b[:, 16:80]
    dl = (_f16(b, 80) * (scales & 0x0F).float()).view(n, 16, 1)
    ml = (_f16(b, 82) * (scales >> 4).float()).view(n, 16, 1)
    q = _shifted(qs.view(n, 2, 32), (0, 2, 4, 6), 0x03).reshape(n, 16, 16).float()
    return (dl * q - ml).view(n, QK_K)


_BLOCK_DEQUANT = {2: _q4_0, 3: _q4_1, 6: _q5_0, 7: _q5_1, 8: _q8_0, 10: _q2_k, 11: _q3_k, 12: _q4_k, 13: _q5_k,
                  14: _q6_k}


def dequantize(packed: torch.Tensor, qtype: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The [*shape] tensor in `dtype` that the packed uint8 blocks hold (computed in float32, cast once)."""
    _, _, size = QUANT_TYPES[qtype]
    blocks = packed.reshape(-1, size)
    return _BLOCK_DEQUANT[qtype](blocks).reshape(shape).to(dtype)
