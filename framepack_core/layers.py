"""Building blocks of the packed HunyuanVideo transformer.

Attribute names are chosen so that `state_dict()` keys equal the released checkpoints' keys (diffusers naming:
`attn.to_q`, `ff.net.0.proj`, `norm1.linear`, ...). Never rename an attribute here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import matmul
from .attention import attention
from .rope import rotate_float32


class Linear(nn.Linear):
    """A linear layer that computes in its input's dtype whatever dtype its weight is stored in.

    This is what makes fp8 storage work (weights upcast at the matmul, one layer at a time) and what lets weights
    live on another device than the activations (streamed offload); matmul.linear does the matmul for each storage.
    `lora` holds runtime low-rank adapters (lora_apply.LoraDelta), used when the base weight is stored in fp8 and
    merging would lose the LoRA in fp8 rounding. `fp8_matmul` (set by fp8.select_fp8_matmul) multiplies an fp8
    weight in fp8 instead of upcasting it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a ModuleList so the adapters' tensors move with the layer (offload); non-persistent, so the
        # state dict keeps exactly the checkpoint's keys
        self.lora = nn.ModuleList()
        self.fp8_matmul = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = matmul.linear(x, self.weight, self.bias, self.fp8_matmul)
        for delta in self.lora:
            out = out + delta(x)
        return out


def fused_linear(x: torch.Tensor, layers: list[Linear]) -> list[torch.Tensor]:
    """Several Linears reading the same input as ONE matmul (weights concatenated on the fly, a cheap copy next to
    the activations), split back per layer. Layers with runtime LoRA adapters fall back to separate calls."""
    if any(len(layer.lora) for layer in layers) or not matmul.fusable([layer.weight for layer in layers]):
        return [layer(x) for layer in layers]
    return list(fused_projection(x, layers).split([layer.out_features for layer in layers], dim=-1))


def fused_projection(x: torch.Tensor, layers: list[Linear]) -> torch.Tensor:
    """The outputs of LoRA-free Linears whose weights are matmul.fusable side by side in one tensor, from one matmul."""
    # concatenated in the storage dtype (fp8 weights stay fp8 for fp8 matmul, and an upcast touches each byte once)
    weight = torch.cat([layer.weight.to(device=x.device, non_blocking=True) for layer in layers])
    bias = torch.cat([layer.bias.to(device=x.device, dtype=x.dtype, non_blocking=True) for layer in layers])
    return matmul.linear(x, weight, bias, all(layer.fp8_matmul for layer in layers))


class RMSNorm(nn.Module):
    """RMS norm over the last dim; the variance is taken in float32 whatever the compute dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalized_float32(x).to(x.dtype)

    def normalized_float32(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised x as ONE new float32 tensor, scaled in place (no float32 temporaries of x's size)."""
        xf = torch.empty_like(x, dtype=torch.float32, memory_format=torch.contiguous_format).copy_(x)
        mean_square = torch.linalg.vector_norm(xf, dim=-1, keepdim=True).square_().div_(x.shape[-1])
        xf.mul_(mean_square.add_(self.eps).rsqrt_())
        return xf.mul_(self.weight.to(device=x.device, dtype=torch.float32))


def rms_norm_rope(x: torch.Tensor, norm: RMSNorm, freqs: torch.Tensor) -> torch.Tensor:
    """norm(x) rotated by RoPE (rope.rotate_float32) in one float32 copy of x, rounded once to x's dtype: q and k are
    the largest tensors of a block, and separate norm and RoPE steps would each make float32 copies of them."""
    xf = norm.normalized_float32(x)
    return rotate_float32(xf, freqs).to(x.dtype)


def layer_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


class LayerNorm(nn.LayerNorm):
    """Affine layer norm whose parameters may be stored in another dtype than the activations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(device=x.device, dtype=x.dtype)
        bias = self.bias.to(device=x.device, dtype=x.dtype)
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)


def timestep_features(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features [cos | sin] of t (flip_sin_to_cos=True, no frequency shift), in float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class MLPEmbedder(nn.Module):
    """linear_1 -> SiLU -> linear_2 (diffusers' TimestepEmbedding and PixArtAlphaTextProjection)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear_1 = Linear(in_dim, out_dim)
        self.linear_2 = Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ConditionEmbedding(nn.Module):
    """temb = embed(timestep) + embed(distilled guidance) + embed(pooled CLIP-L text)."""

    def __init__(self, dim: int, pooled_dim: int, guidance_embeds: bool = True):
        super().__init__()
        self.timestep_embedder = MLPEmbedder(256, dim)
        self.text_embedder = MLPEmbedder(pooled_dim, dim)
        self.guidance_embedder = MLPEmbedder(256, dim) if guidance_embeds else None

    def forward(self, timestep: torch.Tensor, pooled: torch.Tensor, guidance: torch.Tensor | None) -> torch.Tensor:
        temb = self.timestep_embedder(timestep_features(timestep).to(pooled.dtype))
        if self.guidance_embedder is not None:
            temb = temb + self.guidance_embedder(timestep_features(guidance).to(pooled.dtype))
        return temb + self.text_embedder(pooled)


class RefinerConditionEmbedding(nn.Module):
    """The token refiner's temb: embed(timestep) + embed(mean of the text tokens)."""

    def __init__(self, dim: int, text_dim: int):
        super().__init__()
        self.timestep_embedder = MLPEmbedder(256, dim)
        self.text_embedder = MLPEmbedder(text_dim, dim)

    def forward(self, timestep: torch.Tensor, pooled_text: torch.Tensor) -> torch.Tensor:
        return self.timestep_embedder(timestep_features(timestep).to(pooled_text.dtype)) + self.text_embedder(pooled_text)


class ActivatedProjection(nn.Module):
    """`proj` followed by an activation: the first entry of diffusers' FeedForward.net."""

    def __init__(self, dim_in: int, dim_out: int, activation: str):
        super().__init__()
        self.proj = Linear(dim_in, dim_out)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # a new tensor, the MLP's widest: activated in place instead of copied
        return F.silu(x, inplace=True) if self.activation == "silu" else torch.ops.aten.gelu_(x, approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner_dim: int, activation: str = "gelu_tanh"):
        super().__init__()
        self.net = nn.ModuleList([ActivatedProjection(dim, inner_dim, activation), nn.Identity(), Linear(inner_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class RefinerAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = Linear(dim, dim), Linear(dim, dim), Linear(dim, dim)
        self.to_out = nn.ModuleList([Linear(dim, dim), nn.Identity()])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = (proj(x).unflatten(-1, (self.heads, -1)).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out[0](out.transpose(1, 2).flatten(2))


class RefinerGates(nn.Module):
    """HunyuanVideoAdaNorm: two gates (attention, MLP) from temb."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = Linear(dim, 2 * dim)

    def forward(self, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate_attn, gate_mlp = self.linear(F.silu(temb)).chunk(2, dim=-1)
        return gate_attn[:, None], gate_mlp[:, None]


class RefinerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=1e-6)
        self.attn = RefinerAttention(dim, heads)
        self.norm2 = LayerNorm(dim, eps=1e-6)
        self.ff = FeedForward(dim, mlp_dim, activation="silu")
        self.norm_out = RefinerGates(dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        gate_attn, gate_mlp = self.norm_out(temb)
        x = x + self.attn(self.norm1(x), mask) * gate_attn
        return x + self.ff(self.norm2(x)) * gate_mlp


class TokenRefinerStack(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, num_layers: int):
        super().__init__()
        self.refiner_blocks = nn.ModuleList([RefinerBlock(dim, heads, mlp_dim) for _ in range(num_layers)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attn_mask = None
        if mask is not None:
            # valid tokens attend to valid tokens; every row may attend to token 0 so no row is empty
            attn_mask = mask[:, None, :, None] & mask[:, None, None, :]
            attn_mask[:, :, :, 0] = True
        for block in self.refiner_blocks:
            x = block(x, temb, attn_mask)
        return x


class TokenRefiner(nn.Module):
    """LLaMA text tokens -> model width, refined by a few self-attention blocks conditioned on the timestep."""

    def __init__(self, text_dim: int, dim: int, heads: int, mlp_dim: int, num_layers: int):
        super().__init__()
        self.time_text_embed = RefinerConditionEmbedding(dim, text_dim)
        self.proj_in = Linear(text_dim, dim)
        self.token_refiner = TokenRefinerStack(dim, heads, mlp_dim, num_layers)

    def forward(self, text: torch.Tensor, timestep: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            pooled = text.mean(dim=1)
        else:
            weights = mask.float()[..., None]
            pooled = ((text * weights).sum(dim=1) / weights.sum(dim=1)).to(text.dtype)
        temb = self.time_text_embed(timestep, pooled)
        return self.token_refiner(self.proj_in(text), temb, mask)


class AdaNormZero(nn.Module):
    """Modulation from temb: `chunks` (shift, scale, gate)-style vectors, and the modulated layer norm of x."""

    def __init__(self, dim: int, chunks: int):
        super().__init__()
        self.linear = Linear(dim, chunks * dim)
        self.chunks = chunks

    def forward(self, x: torch.Tensor, temb: torch.Tensor):
        mods = [m[:, None] for m in self.linear(F.silu(temb)).chunk(self.chunks, dim=-1)]
        shift, scale = mods[0], mods[1]
        return torch.addcmul(shift, layer_norm(x), 1 + scale), mods[2:]


def attend(module: nn.Module, q, k, v, key_mask) -> torch.Tensor:
    """The module's attention over q, k, v: whole, or split across ranks when the transformer has given the module
    a sequence split (parallel/ulysses.py; the image tokens then are this rank's slice)."""
    split = getattr(module, "sequence_parallel", None)
    if split is not None:
        return split.attention(q, k, v, module.backend, key_mask)
    return attention(q, k, v, module.backend, key_mask)


class JointAttention(nn.Module):
    """Dual-stream attention: separate projections for image and text tokens, one attention over both;
    RoPE on image tokens only."""

    def __init__(self, dim: int, heads: int, head_dim: int, backend: str):
        super().__init__()
        self.heads, self.backend = heads, backend
        self.to_q, self.to_k, self.to_v = Linear(dim, dim), Linear(dim, dim), Linear(dim, dim)
        self.norm_q, self.norm_k = RMSNorm(head_dim), RMSNorm(head_dim)
        self.add_q_proj, self.add_k_proj, self.add_v_proj = Linear(dim, dim), Linear(dim, dim), Linear(dim, dim)
        self.norm_added_q, self.norm_added_k = RMSNorm(head_dim), RMSNorm(head_dim)
        self.to_out = nn.ModuleList([Linear(dim, dim), nn.Identity()])
        self.to_add_out = Linear(dim, dim)

    def forward(self, x, context, rope, key_mask):
        split = lambda t: t.unflatten(-1, (self.heads, -1))  # noqa: E731
        q, k, v = (split(t) for t in fused_linear(x, [self.to_q, self.to_k, self.to_v]))
        q, k = rms_norm_rope(q, self.norm_q, rope), rms_norm_rope(k, self.norm_k, rope)
        cq, ck, cv = (split(t) for t in fused_linear(context, [self.add_q_proj, self.add_k_proj, self.add_v_proj]))
        cq, ck = self.norm_added_q(cq), self.norm_added_k(ck)
        out = attend(self, torch.cat([q, cq], 1), torch.cat([k, ck], 1), torch.cat([v, cv], 1), key_mask)
        n = x.shape[1]
        return self.to_out[0](out[:, :n]), self.to_add_out(out[:, n:])


class DualStreamBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int, backend: str):
        super().__init__()
        self.norm1 = AdaNormZero(dim, 6)
        self.norm1_context = AdaNormZero(dim, 6)
        self.attn = JointAttention(dim, heads, head_dim, backend)
        self.ff = FeedForward(dim, mlp_dim)
        self.ff_context = FeedForward(dim, mlp_dim)

    def forward(self, x, context, temb, rope, key_mask):
        nx, (gate, shift_mlp, scale_mlp, gate_mlp) = self.norm1(x, temb)
        nc, (c_gate, c_shift_mlp, c_scale_mlp, c_gate_mlp) = self.norm1_context(context, temb)
        attn_x, attn_c = self.attn(nx, nc, rope, key_mask)
        x = torch.addcmul(x, attn_x, gate)
        context = torch.addcmul(context, attn_c, c_gate)
        x = torch.addcmul(x, gate_mlp, self.ff(torch.addcmul(shift_mlp, layer_norm(x), 1 + scale_mlp)))
        mlp_in = torch.addcmul(c_shift_mlp, layer_norm(context), 1 + c_scale_mlp)
        context = torch.addcmul(context, c_gate_mlp, self.ff_context(mlp_in))
        return x, context


class SingleAttention(nn.Module):
    """Attention of the single-stream block. Its projections are applied by the block (fused with the MLP input
    projection), so this module only holds them under the checkpoint's names."""

    def __init__(self, dim: int, heads: int, head_dim: int, backend: str):
        super().__init__()
        self.heads, self.backend = heads, backend
        self.to_q, self.to_k, self.to_v = Linear(dim, dim), Linear(dim, dim), Linear(dim, dim)
        self.norm_q, self.norm_k = RMSNorm(head_dim), RMSNorm(head_dim)

    def forward(self, q, k, v, rope, key_mask):
        split = lambda t: t.unflatten(-1, (self.heads, -1))  # noqa: E731
        q, k = rms_norm_rope(split(q), self.norm_q, rope), rms_norm_rope(split(k), self.norm_k, rope)
        return attend(self, q, k, split(v), key_mask)


class SingleStreamBlock(nn.Module):
    """Operates on the joint [image | text] sequence; attention and MLP run in parallel from one modulated norm.
    `rope` covers the whole joint sequence (identity rotations on the text tokens)."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int, backend: str):
        super().__init__()
        self.attn = SingleAttention(dim, heads, head_dim, backend)
        self.norm = AdaNormZero(dim, 3)
        self.proj_mlp = Linear(dim, mlp_dim)
        self.proj_out = Linear(dim + mlp_dim, dim)

    def forward(self, h, temb, rope, key_mask):
        nh, (gate,) = self.norm(h, temb)
        layers = [self.attn.to_q, self.attn.to_k, self.attn.to_v, self.proj_mlp]
        mixed_storage = not matmul.fusable([layer.weight for layer in layers])
        if mixed_storage or any(len(layer.lora) for layer in [*layers, self.proj_out]):
            q, k, v, mlp = (layer(nh) for layer in layers)
            nh = None  # (a `del` here breaks torch.compile's graph)
            joint = torch.cat([self.attn(q, k, v, rope, key_mask), F.gelu(mlp, approximate="tanh")], dim=-1)
            return torch.addcmul(h, gate, self.proj_out(joint))
        packed = fused_projection(nh, layers)
        nh = None  # frees the normed input before attention (`del nh` here breaks torch.compile's graph)
        d = self.attn.to_q.out_features
        q, k, v, mlp = packed.split([d, d, d, packed.shape[-1] - 3 * d], dim=-1)
        attn = self.attn(q, k, v, rope, key_mask)
        del q, k, v
        # proj_out reads [attention | gelu(mlp)]. Both are written into the packed projection output, over the
        # consumed v columns and onto the mlp columns, so the concatenation costs no new memory and proj_out is one
        # matmul (one rounding, as in the original) on a strided view.
        joint = packed[..., 2 * d:]
        joint[..., :d] = attn
        del attn
        torch.ops.aten.gelu_(mlp, approximate="tanh")
        return torch.addcmul(h, gate, self.proj_out(joint))


class ClipVisionProjection(nn.Module):
    """SigLIP tokens -> model width: up (x3), SiLU, down."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.up = Linear(in_dim, dim * 3)
        self.down = Linear(dim * 3, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.up(x)))


class PatchConv(nn.Conv3d):
    """A stride == kernel Conv3d, computed as one matmul over patches (same weights and keys as the conv,
    much faster than a strided conv3d on CPU), in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kt, kh, kw = self.kernel_size
        b, c, t, h, w = x.shape
        patches = x.reshape(b, c, t // kt, kt, h // kh, kh, w // kw, kw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        weight = self.weight.to(device=x.device, dtype=x.dtype).flatten(1)
        bias = self.bias.to(device=x.device, dtype=x.dtype)
        return F.linear(patches.flatten(4), weight, bias)  # [B, T', H', W', D]


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, kernel: tuple[int, int, int]):
        super().__init__()
        self.proj = PatchConv(in_channels, dim, kernel_size=kernel, stride=kernel)


class HistoryPatchEmbed(nn.Module):
    """Clean-history embedders: 1x (same patch as the noisy latents), 2x (2x4x4) and 4x (4x8x8) compression."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj = PatchConv(in_channels, dim, kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.proj_2x = PatchConv(in_channels, dim, kernel_size=(2, 4, 4), stride=(2, 4, 4))
        self.proj_4x = PatchConv(in_channels, dim, kernel_size=(4, 8, 8), stride=(4, 8, 8))


class OutputNorm(nn.Module):
    """AdaLayerNormContinuous without affine: note the (scale, shift) chunk order of the checkpoints."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = Linear(dim, 2 * dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb)).to(x.dtype).chunk(2, dim=-1)
        return layer_norm(x) * (1 + scale[:, None]) + shift[:, None]
