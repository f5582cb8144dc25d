"""Transformer configuration. Every size in the model comes from here; the released checkpoints are
one named preset. Field names follow the checkpoints' own `config.json` (diffusers naming)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# HunyuanVideo VAE latent scale: ComfyUI's VAE returns unscaled latents, the transformer works on scaled ones.
VAE_SCALING_FACTOR = 0.476986
LATENT_CHANNELS = 16
VAE_SPATIAL_FACTOR = 8
VAE_TEMPORAL_FACTOR = 4
# The original FramePack crops prompts to 256 LLaMA tokens; the model never saw longer ones.
MAX_TEXT_TOKENS = 256


@dataclass(frozen=True)
class FramePackConfig:
    in_channels: int = 16
    out_channels: int = 16
    num_attention_heads: int = 24
    attention_head_dim: int = 128
    num_layers: int = 20
    num_single_layers: int = 40
    num_refiner_layers: int = 2
    mlp_ratio: float = 4.0
    patch_size: int = 2
    patch_size_t: int = 1
    guidance_embeds: bool = True
    text_embed_dim: int = 4096
    pooled_projection_dim: int = 768
    image_proj_dim: int = 1152
    rope_theta: float = 256.0
    rope_axes_dim: tuple[int, int, int] = (16, 56, 56)

    def __post_init__(self):
        object.__setattr__(self, "rope_axes_dim", tuple(int(d) for d in self.rope_axes_dim))
        if sum(self.rope_axes_dim) != self.attention_head_dim:
            raise ValueError(f"rope_axes_dim {self.rope_axes_dim} must sum to attention_head_dim {self.attention_head_dim}")
        if any(d % 2 for d in self.rope_axes_dim):
            raise ValueError(f"every rope axis dim must be even, got {self.rope_axes_dim}")

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def mlp_dim(self) -> int:
        return int(self.inner_dim * self.mlp_ratio)

    def to_diffusers_kwargs(self) -> dict:
        """Constructor kwargs for diffusers' HunyuanVideoFramepackTransformer3DModel (the test reference)."""
        kw = dataclasses.asdict(self)
        kw["rope_axes_dim"] = tuple(self.rope_axes_dim)
        kw.update(qk_norm="rms_norm", image_condition_type=None, has_image_proj=True, has_clean_x_embedder=True)
        return kw

    @classmethod
    def from_json_dict(cls, data: dict) -> "FramePackConfig":
        """Reads a checkpoint's config.json, ignoring keys that do not size the model."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if k == "rope_axes_dim" else v) for k, v in data.items() if k in names})


# lllyasviel/FramePackI2V_HY and lllyasviel/FramePack_F1_I2V_HY_20250503 share this architecture.
RELEASED = FramePackConfig()

# Small configs with the real structure, for tests and CPU experiments.
TINY = FramePackConfig(
    num_attention_heads=2, attention_head_dim=16, num_layers=2, num_single_layers=2, num_refiner_layers=1,
    text_embed_dim=32, pooled_projection_dim=16, image_proj_dim=24, rope_axes_dim=(4, 6, 6),
)
