"""Socket types of the pack and the objects that travel through them."""

from __future__ import annotations

from dataclasses import dataclass, field

from comfy_api.latest import io

from ..framepack_core.conditioning import ImageConditioning, Keyframe, TextConditioning
from ..framepack_core.limits import DEFAULT_END_STRENGTH, VARIANT_MODES, Mode
from ..framepack_core.starts import Continuation
from ..framepack_core.video_input import FrameSource

FramePackModel = io.Custom("FRAMEPACK_MODEL")
FramePackLora = io.Custom("FRAMEPACK_LORA")
FramePackConditioning = io.Custom("FRAMEPACK_CONDITIONING")
FramePackPrompts = io.Custom("FRAMEPACK_PROMPTS")
FramePackParallel = io.Custom("FRAMEPACK_PARALLEL")

CATEGORY = "FramePack"


@dataclass
class ModelHandle:
    """A loaded transformer plus how to run it. Its weights live in CPU memory; the sampler places what fits on the
    GPU through ComfyUI's model management (`patcher`), and the placement stays between runs until ComfyUI needs
    the memory."""
    transformer: object  # framepack_core.FramePackTransformer
    variant: str  # one of limits.VARIANTS
    name: str
    vram_reserve_gb: float  # 0 = derived from each job's resolution and window
    loras: list = field(default_factory=list)
    patcher: object = None  # nodes.placement.FramePackPatcher
    spec: object = None  # framepack_core.parallel.ModelSpec: how parallel workers load the same model

    @property
    def default_mode(self) -> Mode:
        return VARIANT_MODES[self.variant]


@dataclass
class LoraEntry:
    path: str
    name: str
    strength: float


@dataclass
class VideoInputs:
    """A video to continue: the core's Continuation (history latents), the input fitted to the video size (read
    again when the MP4 is written) and whether the output keeps it."""
    continuation: Continuation
    source: FrameSource
    keep_input: bool = True


@dataclass
class ImageInputs:
    """What the conditioning nodes hand to the sampler: start (and end, keyframes) in model space, and the pixel
    size of the video. A blank text-to-video start and a continued video's last frame are not output frames."""
    start: ImageConditioning
    width: int
    height: int
    end: ImageConditioning | None = None
    strength: float = DEFAULT_END_STRENGTH
    keyframes: list[Keyframe] = field(default_factory=list)
    start_in_output: bool = True
    continuation: VideoInputs | None = None


@dataclass
class PromptSchedule:
    """Prompts by start time (seconds), encoded with the native text encoder."""
    entries: list[tuple[float, TextConditioning]]


def check_choices(**choices: tuple[object, tuple | list]) -> bool | str:
    """For a node's validate_inputs: ComfyUI 0.3.x does not check V3 combo values when a prompt is queued, so an
    API call with a wrong option would only fail when the node runs. This turns it into a node error at once."""
    for name, (value, options) in choices.items():
        if value not in options:
            return f"{name} {value!r} is not one of: {', '.join(map(str, options))}"
    return True
