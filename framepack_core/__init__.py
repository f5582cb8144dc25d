"""framepack_core: a standalone PyTorch implementation of FramePack (packed-context image-to-video).

Imports only torch, safetensors, einops and numpy; no ComfyUI.
"""

from .config import MAX_TEXT_TOKENS, RELEASED, TINY, VAE_SCALING_FACTOR, FramePackConfig
from .errors import CheckpointError, FramePackError, InputError, Interrupted
from .transformer import FramePackTransformer, SectionContext
from .teacache import TeaCache

__all__ = [
    "FramePackConfig", "RELEASED", "TINY", "VAE_SCALING_FACTOR", "MAX_TEXT_TOKENS",
    "FramePackError", "CheckpointError", "InputError", "Interrupted",
    "FramePackTransformer", "SectionContext", "TeaCache",
]
