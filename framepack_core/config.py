"""Transformer configuration. Every size in the model comes from here; the released checkpoints are
one named preset. Field names follow the checkpoints' own `config.json` (diffusers naming)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .limits import MAX_MODEL_INNER_DIM, MODEL_CONFIG_BOUNDS

# HunyuanVideo VAE latent scale: ComfyUI's VAE returns unscaled latents, the transformer works on scaled ones
# (to_model_space / to_vae_space below).
VAE_SCALING_FACTOR = 0.476986
LATENT_CHANNELS = 16
VAE_SPATIAL_FACTOR = 8
VAE_TEMPORAL_FACTOR = 4
# The original FramePack crops prompts to 256 LLaMA tokens; the model never saw longer ones.
MAX_TEXT_TOKENS = 256


def to_model_space(vae_latents):
    """Latents as the VAE encodes them (ComfyUI's VAE.encode, its LATENT type) -> the space the transformer samples
    in. HunyuanVideo's VAE has a scaling factor and no shift; this pair is the one place that knows."""
    return vae_latents * VAE_SCALING_FACTOR


def to_vae_space(model_latents):
    """The transformer's latents -> the VAE's space (what VAE.decode and ComfyUI's LATENT take); to_model_space's
    inverse."""
    return model_latents / VAE_SCALING_FACTOR


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
        if isinstance(self.rope_axes_dim, list):
            object.__setattr__(self, "rope_axes_dim", tuple(self.rope_axes_dim))
        _check_bounds(self)
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
        """Reads a checkpoint's config.json, ignoring keys that do not size the model. ValueError names the first
        field that is of the wrong type or outside limits.MODEL_CONFIG_BOUNDS."""
        if not isinstance(data, dict):
            raise ValueError(f"the config is not a JSON object (got {type(data).__name__})")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if k == "rope_axes_dim" and isinstance(v, list) else v)
                      for k, v in data.items() if k in names})


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bounds(config: FramePackConfig) -> None:
    """Types and ranges of every field (a config may come from a file anyone made): ValueError naming the field."""
    for name, (low, high) in MODEL_CONFIG_BOUNDS.items():
        value = getattr(config, name)
        if isinstance(low, int) and not _is_int(value):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        if isinstance(low, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not low <= value <= high:  # also false for nan
            raise ValueError(f"{name} {value!r} is out of range ({low} to {high})")
    if not isinstance(config.guidance_embeds, bool):
        raise ValueError(f"guidance_embeds must be true or false, got {config.guidance_embeds!r}")
    rope = config.rope_axes_dim
    if not (isinstance(rope, tuple) and len(rope) == 3 and all(_is_int(d) and d >= 0 for d in rope)):
        raise ValueError(f"rope_axes_dim must be three whole numbers, got {rope!r}")
    if config.inner_dim > MAX_MODEL_INNER_DIM:
        raise ValueError(f"num_attention_heads x attention_head_dim = {config.inner_dim} is out of range (at most "
                         f"{MAX_MODEL_INNER_DIM})")


# lllyasviel/FramePackI2V_HY and lllyasviel/FramePack_F1_I2V_HY_20250503 share this architecture.
RELEASED = FramePackConfig()

# Small configs with the real structure, for tests and CPU experiments.
TINY = FramePackConfig(
    num_attention_heads=2, attention_head_dim=16, num_layers=2, num_single_layers=2, num_refiner_layers=1,
    text_embed_dim=32, pooled_projection_dim=16, image_proj_dim=24, rope_axes_dim=(4, 6, 6),
)
