"""The packed HunyuanVideo transformer of FramePack (FramePackI2V_HY and F1 share it).

One forward denoises a window of latent frames given a packed context: the start frame and the nearest history
frame at full resolution (1x), older history compressed 2x and 4x, SigLIP tokens of the input image and LLaMA
tokens of the prompt. Token order is [4x | 2x | 1x | noisy] then [image | text]; only the noisy tokens come out,
through a float32 output head. Argument names follow the original FramePack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .compile import mark_token_dims
from .config import FramePackConfig
from .easycache import EasyCache
from .errors import InputError
from .limits import DEFAULT_ATTENTION
from .layers import (ClipVisionProjection, ConditionEmbedding, DualStreamBlock, HistoryPatchEmbed, Linear,
                     OutputNorm, PatchEmbed, SingleStreamBlock, TokenRefiner)
from .magcache import MagCache
from .rope import pad_to_multiple, pooled_rope_grid, rope_grid, to_complex
from .teacache import TeaCache


@dataclass
class SectionContext:
    """Everything of one forward that does not change between the denoising steps of a section: the embedded
    history tokens, the RoPE of the whole image-token sequence and the projected SigLIP tokens. Building it once
    per section instead of once per step is what `FramePackTransformer.prepare` is for."""

    history_tokens: torch.Tensor | None  # [B, N_history, D]
    rope: torch.Tensor  # complex rotations [N_history + N_noisy, head_dim / 2]
    image_tokens: torch.Tensor  # [B, N_siglip, D]
    grid: tuple[int, int, int]  # noisy latent (T, H, W) this context was built for


class FramePackTransformer(nn.Module):
    def __init__(self, config: FramePackConfig, attention_backend: str = DEFAULT_ATTENTION):
        super().__init__()
        self.config = config
        self.compute_dtype = torch.float32
        dim, heads, head_dim, mlp = config.inner_dim, config.num_attention_heads, config.attention_head_dim, config.mlp_dim
        p, pt = config.patch_size, config.patch_size_t
        self.x_embedder = PatchEmbed(config.in_channels, dim, (pt, p, p))
        self.clean_x_embedder = HistoryPatchEmbed(config.in_channels, dim)
        # the refiner's MLP ratio is fixed at 4 in both the original and the checkpoints, whatever mlp_ratio says
        self.context_embedder = TokenRefiner(config.text_embed_dim, dim, heads, 4 * dim, config.num_refiner_layers)
        self.image_projection = ClipVisionProjection(config.image_proj_dim, dim)
        self.time_text_embed = ConditionEmbedding(dim, config.pooled_projection_dim, config.guidance_embeds)
        self.transformer_blocks = nn.ModuleList(
            [DualStreamBlock(dim, heads, head_dim, mlp, attention_backend) for _ in range(config.num_layers)])
        self.single_transformer_blocks = nn.ModuleList(
            [SingleStreamBlock(dim, heads, head_dim, mlp, attention_backend) for _ in range(config.num_single_layers)])
        self.norm_out = OutputNorm(dim)
        self.proj_out = Linear(dim, pt * p * p * config.out_channels)
        # Optional hook set by offload.BlockStreamer: called around every block so weights can be streamed.
        self.block_runner = None
        self.compile_mode: str | None = None  # set by compile.compile_blocks
        # set by set_sequence_parallel: this rank's share of each forward's image tokens (parallel/ulysses.py)
        self.sequence_parallel = None

    def set_sequence_parallel(self, split) -> None:
        """Runs every later forward with its image tokens split across the ranks of `split` (a
        parallel.SequenceParallel; None: whole sequence on this process)."""
        self.sequence_parallel = split
        for block in self.blocks:
            block.attn.sequence_parallel = split

    @property
    def blocks(self) -> list[nn.Module]:
        return [*self.transformer_blocks, *self.single_transformer_blocks]

    # -- packing -------------------------------------------------------------------------------------------

    def _rope(self, indices: torch.Tensor, h: int, w: int, pool: tuple[int, int, int] | None = None):
        c = self.config
        if pool is None:
            return rope_grid(indices, h, w, c.rope_axes_dim, c.rope_theta)
        return pooled_rope_grid(indices, h, w, c.rope_axes_dim, c.rope_theta, pool)

    @torch.no_grad()
    def prepare(self, latent_shape: tuple[int, ...], latent_indices: torch.Tensor, image_embeddings: torch.Tensor,
                clean_latents=None, clean_latent_indices=None, clean_latents_2x=None, clean_latent_2x_indices=None,
                clean_latents_4x=None, clean_latent_4x_indices=None) -> SectionContext:
        """Embeds the step-invariant inputs for noisy latents of shape `latent_shape` ([B, C, T, H, W])."""
        if image_embeddings is None:
            raise InputError("FramePack needs SigLIP image embeddings of the start image (image_embeddings)")
        dtype, device = self.compute_dtype, self.x_embedder.proj.weight.device
        device = image_embeddings.device if device.type == "meta" else device
        _, _, t, hh, ww = latent_shape
        p = self.config.patch_size
        h, w = hh // p, ww // p
        indices = latent_indices if latent_indices is not None else torch.arange(t)
        cos, sin = self._rope(indices.flatten().to(device), h, w)
        tokens, coss, sins = [], [cos], [sin]
        slots = [(clean_latents, clean_latent_indices, self.clean_x_embedder.proj, (1, 2, 2), None),
                 (clean_latents_2x, clean_latent_2x_indices, self.clean_x_embedder.proj_2x, (2, 4, 4), (2, 2, 2)),
                 (clean_latents_4x, clean_latent_4x_indices, self.clean_x_embedder.proj_4x, (4, 8, 8), (4, 4, 4))]
        for latents, slot_indices, proj, kernel, pool in slots:
            if latents is None or slot_indices is None:
                continue
            embedded = proj(pad_to_multiple(latents.to(device=device, dtype=dtype), kernel)).flatten(1, 3)
            c, s = self._rope(slot_indices.flatten().to(device), h, w, pool)
            tokens.insert(0, embedded)  # each slot goes in front: final order [4x | 2x | 1x]
            coss.insert(0, c)
            sins.insert(0, s)
        history = torch.cat(tokens, dim=1) if tokens else None
        image_tokens = self.image_projection(image_embeddings.to(device=device, dtype=dtype))
        return SectionContext(history, to_complex(torch.cat(coss), torch.cat(sins)), image_tokens, (t, hh, ww))

    # -- forward -------------------------------------------------------------------------------------------

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor | None, pooled_projections: torch.Tensor,
                guidance: torch.Tensor | None = None, latent_indices: torch.Tensor | None = None,
                clean_latents=None, clean_latent_indices=None, clean_latents_2x=None, clean_latent_2x_indices=None,
                clean_latents_4x=None, clean_latent_4x_indices=None, image_embeddings: torch.Tensor | None = None,
                context: SectionContext | None = None,
                cache: TeaCache | MagCache | EasyCache | None = None) -> torch.Tensor:
        """Predicts the flow velocity of `hidden_states` [B, C, T, H, W]; returns float32 [B, C_out, T, H, W].

        timestep and guidance are [B] (sigma*1000 and distilled guidance*1000). encoder_attention_mask is an
        optional bool [B, L] over the LLaMA tokens. Pass `context` from `prepare` to skip re-embedding the
        step-invariant inputs; otherwise they are embedded here. `cache` is a step cache: TeaCache, MagCache or
        MagCacheCalibration decide whether the block stack runs this step, EasyCache whether the whole model does.
        """
        b, _, t, hh, ww = hidden_states.shape
        if context is None:
            context = self.prepare(hidden_states.shape, latent_indices, image_embeddings, clean_latents,
                                   clean_latent_indices, clean_latents_2x, clean_latent_2x_indices, clean_latents_4x,
                                   clean_latent_4x_indices)
        elif context.grid != (t, hh, ww):
            raise InputError(f"section context was prepared for latents {context.grid}, got {(t, hh, ww)}")
        dtype = self.compute_dtype
        device = context.rope.device
        model_cache = cache if isinstance(cache, EasyCache) else None
        if model_cache is not None:
            # EasyCache decides on the model's own input and reuses the whole model's transformation (easycache.py)
            cache = None
            hidden_states = hidden_states.to(device=device, dtype=torch.float32)
            if not model_cache.should_compute(hidden_states):
                return model_cache.reuse(hidden_states)
        noisy = self.x_embedder.proj(hidden_states.to(device=device, dtype=dtype)).flatten(1, 3)
        n_noisy = noisy.shape[1]
        tokens = noisy if context.history_tokens is None else torch.cat([context.history_tokens, noisy], dim=1)
        del noisy

        # Rounded to the compute dtype as the original does (bf16: guidance 10 reaches the model as 9984).
        timestep = timestep.to(device=device, dtype=dtype)
        guidance = None if guidance is None else guidance.to(device=device, dtype=dtype)
        temb = self.time_text_embed(timestep, pooled_projections.to(device=device, dtype=dtype), guidance)

        text = encoder_hidden_states.to(device=device, dtype=dtype)
        mask = None if encoder_attention_mask is None else encoder_attention_mask.to(device=device, dtype=torch.bool)
        if mask is not None and (b == 1 or bool(mask.all())):
            # batch 1: drop the padding instead of masking it (identical result, and the fast kernels need no mask)
            text = text[:, mask[0]] if b == 1 else text
            mask = None
        text = self.context_embedder(text, timestep, mask)
        image_tokens = context.image_tokens.expand(b, -1, -1) if context.image_tokens.shape[0] != b else context.image_tokens
        encoder = torch.cat([image_tokens, text], dim=1)
        key_mask = None
        if mask is not None:
            ones = torch.ones(b, tokens.shape[1] + image_tokens.shape[1], dtype=torch.bool, device=device)
            key_mask = torch.cat([ones, mask], dim=1)

        rope, split = context.rope, self.sequence_parallel
        if split is not None:
            tokens, rope = split.shard(tokens, rope)
        tokens = self._run_blocks(tokens, encoder, temb, rope, key_mask, cache)

        # float32 head, as the original's high_quality_fp32_output_for_inference. It works token by token, so a
        # split runs it on its slice and gathers the narrow output (out_channels x patch per token) instead of the
        # wide tokens.
        if split is None:
            out = self.proj_out(self.norm_out(tokens[:, -n_noisy:], temb).float())
        else:
            out = split.gather(self.proj_out(self.norm_out(tokens, temb).float()))[:, -n_noisy:]
        p, pt = self.config.patch_size, self.config.patch_size_t
        out = rearrange(out, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)",
                        t=t // pt, h=hh // p, w=ww // p, pt=pt, ph=p, pw=p)
        if model_cache is not None:
            model_cache.store(hidden_states, out)
        return out

    def _run_blocks(self, tokens, encoder, temb, rope, key_mask, cache):
        run = self.block_runner or (lambda block, fn: fn())
        split = self.sequence_parallel
        if cache is not None:
            # through the runner: a streamed first block is then fetched once for both uses
            first = self.transformer_blocks[0]
            probe = run(first, lambda: first.norm1(tokens, temb)[0]) if cache.needs_probe else None
            if split is not None and probe is not None:
                probe = split.gather(probe)  # every rank decides from the whole sequence, so all decide alike
            if not cache.should_compute(probe):
                return tokens + (cache.residual if split is None else split.local_slice(cache.residual))
            before = tokens
        block_rope = torch.view_as_real(rope) if self.compile_mode else rope  # compiled blocks take real RoPE
        if self.compile_mode:
            mark_token_dims((tokens, 1), (encoder, 1), (block_rope, 0), (key_mask, 1))
        for block in self.transformer_blocks:
            tokens, encoder = run(block, lambda blk=block, x=tokens, e=encoder: blk(x, e, temb, block_rope, key_mask))
        n = tokens.shape[1]
        joint = torch.cat([tokens, encoder], dim=1)
        # text tokens get no RoPE: identity rotations let the single blocks rotate the joint sequence in one go
        joint_rope = torch.cat([rope, torch.ones(encoder.shape[1], rope.shape[1], dtype=rope.dtype, device=rope.device)])
        del tokens, encoder  # the joint sequence holds them; keeping them alive would add to the peak
        if self.compile_mode:
            joint_rope = torch.view_as_real(joint_rope)
            mark_token_dims((joint, 1), (joint_rope, 0))
        for block in self.single_transformer_blocks:
            joint = run(block, lambda blk=block: blk(joint, temb, joint_rope, key_mask))
        tokens = joint[:, :n]
        if cache is not None:
            # split: the whole residual, so that a calibration's norms are the whole sequence's
            cache.store_residual(tokens - before if split is None else split.gather(tokens - before))
        return tokens
