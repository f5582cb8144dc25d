"""Activation memory of one forward: measured on the meta device, and the formula the offload planner uses.

`measure_peak_activations` runs the real forward at full model size on the meta device (no memory, no arithmetic)
under a dispatch mode that adds up the bytes of every tensor the forward creates and subtracts them when the tensor
is freed. Attention is counted as the fused kernels on the GPU run it: the output plus a float32 log-sum-exp row,
never the full attention matrix (on meta, PyTorch would otherwise decompose it into the math path).

`peak_activation_bytes` is the closed form of that measurement (tests/core/test_memory.py holds it to the
measurement at several sizes: 1.39 GiB at 640x608 and 3.18 GiB at 1280x720 in bf16, window 9, 256 text tokens);
`default_reserve_bytes` adds TeaCache's state and the margins the offload planner keeps on top of it. Both take
`ranks`: one rank's share when the sequence is split across GPUs (1.98 / 1.14 / 0.52 GiB at 1280x720 for 2 / 4 / 8).
"""

from __future__ import annotations

import contextlib
import math
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from .config import FramePackConfig, MAX_TEXT_TOKENS
from .limits import DEFAULT_TEACACHE_THRESHOLD

MiB = 1024 ** 2
GiB = 1024 ** 3
SIGLIP_TOKENS = 729  # SigLIP so400m patch14 at 384 px
HISTORY_1X, HISTORY_2X, HISTORY_4X = 2, 2, 16  # history latents per compression (the start latent counts as 1x)


class PeakTracker(TorchDispatchMode):
    """Live bytes of the tensors created inside the `with` block, and their peak. A tensor that shares storage
    with an input of its operation (a view, an in-place result) is not new memory and is not counted."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def _forget(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t.untyped_storage()) for t in _tensors_in((args, kwargs))}
        for tensor in _tensors_in(out):
            storage = tensor.untyped_storage()
            key = id(storage)
            if key in inputs or key in self._tracked:
                continue
            nbytes = storage.nbytes()
            self._tracked.add(key)
            self.live += nbytes
            weakref.finalize(storage, self._forget, key, nbytes)
        self.peak = max(self.peak, self.live)
        return out


def _tensors_in(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _tensors_in(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from _tensors_in(item)


def _fused_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """What flash / cuDNN / memory-efficient attention allocate for q, k, v [B, H, L, D]: a float32 log-sum-exp per
    row, and the output, laid out [B, L, H, D] (returned as its [B, H, L, D] view, as the kernels do)."""
    b, h, n, _ = q.shape
    logsumexp = q.new_empty((b, h, n), dtype=torch.float32)
    del logsumexp
    return q.new_empty(b, n, h, v.shape[-1]).transpose(1, 2)


@contextlib.contextmanager
def fused_attention_on_meta():
    """Replaces SDPA by `_fused_attention` while measuring (module attribute: every caller looks it up per call)."""
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _fused_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def image_tokens(config: FramePackConfig, latent_frames: int, latent_h: int, latent_w: int,
                 clean_1x: int = HISTORY_1X) -> int:
    """Image tokens of one forward: the noisy window plus the packed 1x/2x/4x history (each compressed slot is
    padded up to whole patches, as the history embedders do). `clean_1x` is 3 for F1 with an end image."""
    p = config.patch_size
    h, w = math.ceil(latent_h / p), math.ceil(latent_w / p)
    noisy = latent_frames * h * w
    one_x = clean_1x * h * w
    two_x = math.ceil(HISTORY_2X / 2) * math.ceil(latent_h / 4) * math.ceil(latent_w / 4)
    four_x = math.ceil(HISTORY_4X / 4) * math.ceil(latent_h / 8) * math.ceil(latent_w / 8)
    return noisy + one_x + two_x + four_x


def measure_peak_activations(model, latent_frames: int, latent_h: int, latent_w: int,
                             text_tokens: int = MAX_TEXT_TOKENS, teacache: bool = False, ranks: int = 1) -> int:
    """Peak bytes of activations of one forward of `model` (built on the meta device, any config), weights and the
    step-invariant section context excluded. The inputs are those of an inverted-mode section. `ranks` > 1
    measures one rank of that many splitting the sequence (parallel/ulysses.py), its collectives' buffers
    included."""
    from .parallel.ulysses import SimulatedSplit
    from .teacache import TeaCache

    if ranks > 1:
        model.set_sequence_parallel(SimulatedSplit(ranks, model.config.num_attention_heads))
        try:
            return measure_peak_activations(model, latent_frames, latent_h, latent_w, text_tokens, teacache)
        finally:
            model.set_sequence_parallel(None)

    config, dtype = model.config, model.compute_dtype
    meta = dict(device="meta", dtype=dtype)
    clean = dict(clean_latents=torch.empty(1, 16, HISTORY_1X, latent_h, latent_w, **meta),
                 clean_latent_indices=torch.arange(HISTORY_1X, device="meta"),
                 clean_latents_2x=torch.empty(1, 16, HISTORY_2X, latent_h, latent_w, **meta),
                 clean_latent_2x_indices=torch.arange(HISTORY_2X, device="meta"),
                 clean_latents_4x=torch.empty(1, 16, HISTORY_4X, latent_h, latent_w, **meta),
                 clean_latent_4x_indices=torch.arange(HISTORY_4X, device="meta"))
    shape = (1, config.in_channels, latent_frames, latent_h, latent_w)
    with fused_attention_on_meta():
        context = model.prepare(shape, torch.arange(latent_frames, device="meta"),
                                torch.empty(1, SIGLIP_TOKENS, config.image_proj_dim, **meta), **clean)
        x = torch.empty(shape, device="meta", dtype=torch.float32)
        text = torch.empty(1, text_tokens, config.text_embed_dim, device="meta", dtype=torch.float32)
        pooled = torch.empty(1, config.pooled_projection_dim, device="meta", dtype=torch.float32)
        timestep, guidance = torch.empty(1, device="meta"), torch.empty(1, device="meta")
        # TeaCache keeps the previous step's modulated input and residual between steps: two computed steps (a
        # two-step cache computes both) measure the second one with them alive
        cache = TeaCache(2, DEFAULT_TEACACHE_THRESHOLD) if teacache else None
        with PeakTracker() as tracker, torch.no_grad():
            for _ in range(2 if teacache else 1):
                model(x, timestep, text, None, pooled, guidance, context=context, cache=cache)
    return tracker.peak


def peak_activation_bytes(config: FramePackConfig, image_token_count: int, text_tokens: int = MAX_TEXT_TOKENS,
                          dtype_bytes: int = 2, teacache: bool = False, ranks: int = 1) -> int:
    """Closed form of `measure_peak_activations`, counted in [tokens, inner_dim] tensors of the compute dtype.

    The peak is inside a single-stream block over the joint sequence of N = image + SigLIP + text tokens: its input,
    its packed q/k/v/mlp projection (3 + mlp_ratio rows), q rotated, and either k being normalised and rotated (one
    float32 copy plus the rounded result) or the attention output; meanwhile the forward holds the image tokens,
    the encoder tokens and the refined text, and the joint RoPE (complex64, head_dim / 2 per token). The projection
    before it also holds the concatenated q/k/v/mlp weight. TeaCache keeps the previous step's modulated input and
    residual (two image-token tensors) alive.

    With the sequence split `ranks` ways (parallel/ulysses.py) one rank holds its share of the image tokens and all
    the SigLIP and text tokens; around attention its all-to-all buffers add about two rows per local image token
    (the gathered q, k, v of its heads and the send buffer), and a step cache keeps the whole sequence's probe and
    residual, as on one GPU.
    """
    local = -(-image_token_count // ranks)
    n = local + SIGLIP_TOKENS + text_tokens
    row = config.inner_dim * dtype_bytes
    packed = 3 + config.mlp_ratio
    held = n + text_tokens  # image + encoder tokens (n) and the refined text, in tokens
    k_rows = 4 / dtype_bytes + (1 if dtype_bytes < 4 else 0)
    attention_phase = (1 + packed + 1 + max(k_rows, 2)) * n * row
    if ranks > 1:
        attention_phase += 2 * local * row
    projection_phase = (2 + packed) * n * row + packed * config.inner_dim * row
    total = max(attention_phase, projection_phase) + held * row + n * config.attention_head_dim * 4
    if teacache:
        total += 2 * image_token_count * row
    return int(total)


def default_reserve_bytes(config: FramePackConfig, latent_frames: int, latent_h: int, latent_w: int, *,
                          dtype_bytes: int = 2, teacache_branches: int = 0, clean_1x: int = HISTORY_1X,
                          text_tokens: int = MAX_TEXT_TOKENS, ranks: int = 1) -> int:
    """GPU memory to keep free next to the weights while sampling sections of `latent_frames` latents: the peak
    activations (with TeaCache's per-branch state: the positive and, with real CFG, the negative branch) plus 20 %
    for the caching allocator's rounding and fragmentation and 512 MiB for library workspaces (cuBLAS, attention),
    fp8 weights upcast at their matmul and the section's step-invariant context."""
    tokens = image_tokens(config, latent_frames, latent_h, latent_w, clean_1x)
    peak = peak_activation_bytes(config, tokens, text_tokens, dtype_bytes, ranks=ranks)
    with_cache = peak_activation_bytes(config, tokens, text_tokens, dtype_bytes, teacache=True, ranks=ranks)
    peak += teacache_branches * (with_cache - peak)
    return int(1.2 * peak) + 512 * MiB
