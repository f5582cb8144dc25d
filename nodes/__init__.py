"""ComfyUI nodes of the FramePack pack (V3 schema). Thin: they translate ComfyUI types and call framepack_core."""

from comfy_api.latest import ComfyExtension, io

from .conditioning import FramePackImageConditioning, FramePackKeyframe, FramePackTimestampedPrompt
from .load_files import FramePackLoadImage, FramePackLoadVideo
from .loader import FramePackLoraSelect, FramePackModelLoader
from .parallel import FramePackParallelNode
from .safety import FramePackSafetyChecker
from .sampler import FramePackSampler
from .video import FramePackVideoCombine
from .video_conditioning import FramePackVideoConditioning

NODES: list[type[io.ComfyNode]] = [
    FramePackModelLoader, FramePackLoraSelect, FramePackImageConditioning, FramePackKeyframe,
    FramePackTimestampedPrompt, FramePackSampler, FramePackVideoCombine, FramePackSafetyChecker,
    FramePackVideoConditioning, FramePackLoadImage, FramePackLoadVideo, FramePackParallelNode,
]


class FramePackExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> FramePackExtension:
    return FramePackExtension()
