"""Deterministic stand-ins for encoders too big to run in tests (torch only; no comfy imports).

Tests may import this module directly to compute exactly what the test nodes give ComfyUI:
``framepack_dev.stand_in_nodes.stand_ins`` (the package's ``__init__`` imports nothing from ComfyUI).

* :func:`text_conditioning` mimics CLIPTextEncode with the ``hunyuan_video`` DualCLIPLoader, whose
  CONDITIONING is ``[[llama hidden states [1, N<=256, 4096], {"pooled_output": CLIP-L pooled [1, 768]}]]``.
* :class:`StandInClipVision` mimics CLIPVisionLoader with the SigLIP-384 checkpoint used by FramePack,
  whose ``encode_image`` gives ``last_hidden_state [B, 729, 1152]``.
Sizes are parameters so tests can run the same code paths tiny.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

MAX_TEXT_TOKENS = 256
_VISION_SEED = 20250417  # fixed, so the projection is the same in every process


def text_token_count(text: str) -> int:
    """Tokens the stand-in text encoder emits: words + 2 (think BOS/EOS), at least 1, at most 256."""
    return min(MAX_TEXT_TOKENS, max(1, len(text.split()) + 2))


def text_seed(text: str) -> int:
    """A 63-bit seed that depends only on the text (sha256, so stable across processes and platforms)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def text_conditioning(text: str, token_dim: int = 32, pooled_dim: int = 16) -> list:
    """ComfyUI CONDITIONING for ``text``: ``[[tokens [1, n, token_dim], {"pooled_output": [1, pooled_dim]}]]``.

    Values are standard-normal draws seeded by :func:`text_seed`: equal texts give equal tensors,
    different texts give different ones.
    """
    generator = torch.Generator().manual_seed(text_seed(text))
    tokens = torch.randn(1, text_token_count(text), token_dim, generator=generator)
    pooled = torch.randn(1, pooled_dim, generator=generator)
    return [[tokens, {"pooled_output": pooled}]]


def token_grid(tokens: int) -> tuple[int, int]:
    """The most square (rows, cols) grid with rows * cols == tokens (729 -> 27x27, 16 -> 4x4, 6 -> 2x3)."""
    rows = int(math.isqrt(tokens))
    while tokens % rows:
        rows -= 1
    return rows, tokens // rows


def vision_features(image: torch.Tensor, embed_dim: int = 24, tokens: int = 16, crop: bool = True) -> torch.Tensor:
    """Patch features ``[B, tokens, embed_dim]`` for a ComfyUI IMAGE ``[B, H, W, C]`` in [0, 1].

    Like a vision transformer, each token sees one cell of a grid over the (center-cropped to a square
    when ``crop``) image: the cell's mean colour, mapped through a fixed random projection, plus a fixed
    per-token position embedding. So the output is a deterministic function of the image content.
    """
    if image.ndim != 4:
        raise ValueError(f"expected an IMAGE [B, H, W, C], got shape {tuple(image.shape)}")
    pixels = image[..., :3].float().movedim(-1, 1)  # [B, 3, H, W]
    if crop:
        height, width = pixels.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        pixels = pixels[..., top : top + side, left : left + side]
    rows, cols = token_grid(tokens)
    cells = F.adaptive_avg_pool2d(pixels, (rows, cols)).flatten(2).transpose(1, 2)  # [B, tokens, 3]
    generator = torch.Generator().manual_seed(_VISION_SEED)
    projection = torch.randn(3, embed_dim, generator=generator)
    positions = 0.1 * torch.randn(tokens, embed_dim, generator=generator)
    return (cells * 2 - 1) @ projection + positions


class StandInVisionOutput:
    """What ``encode_image`` returns: readable as ``out["last_hidden_state"]`` and ``out.last_hidden_state``,
    like ComfyUI's ``comfy.clip_vision.Output``."""

    def __init__(self, last_hidden_state: torch.Tensor):
        self.last_hidden_state = last_hidden_state
        self.penultimate_hidden_states = last_hidden_state
        self.image_embeds = last_hidden_state.mean(dim=1)

    def __getitem__(self, key: str) -> torch.Tensor:
        return getattr(self, key)

    def __setitem__(self, key: str, value: torch.Tensor) -> None:
        setattr(self, key, value)

    def __contains__(self, key: str) -> bool:
        return hasattr(self, key)


class StandInClipVision:
    """A CLIP_VISION object: ``encode_image(image, crop=True)`` -> :class:`StandInVisionOutput`."""

    def __init__(self, embed_dim: int = 24, tokens: int = 16):
        self.embed_dim = embed_dim
        self.tokens = tokens

    def encode_image(self, image: torch.Tensor, crop: bool = True) -> StandInVisionOutput:
        return StandInVisionOutput(vision_features(image, self.embed_dim, self.tokens, crop))


class StandInClip:
    """A CLIP object for the native CLIPTextEncode node: `tokenize` + `encode_from_tokens_scheduled`, giving
    exactly `text_conditioning(text)`. Lets the shipped workflows run with CLIPTextEncode unchanged and only the
    DualCLIPLoader replaced."""

    def __init__(self, token_dim: int = 32, pooled_dim: int = 16):
        self.token_dim, self.pooled_dim = token_dim, pooled_dim

    def tokenize(self, text: str, **_):
        return {"text": text}

    def encode_from_tokens_scheduled(self, tokens, **_):
        return text_conditioning(tokens["text"], self.token_dim, self.pooled_dim)
