"""V3 node classes of the stand-in pack (imported by ComfyUI only, through ``comfy_entrypoint``)."""

from __future__ import annotations

import json
import time

import torch
from comfy_api.latest import ComfyExtension, io, ui

import comfy.model_management
import comfy.utils

from .describe import describe
from .faults import FramePackTestOutOfMemoryOnce
from .stand_ins import MAX_TEXT_TOKENS, StandInClip, StandInClipVision, text_conditioning

CATEGORY = "FramePack/testing"


class FramePackTestTextEncode(io.ComfyNode):
    """CONDITIONING shaped like the hunyuan_video text encoder's, deterministic in the text."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FramePackTestTextEncode",
            display_name="FramePack Test Text Encode",
            category=CATEGORY,
            description="Test stand-in for CLIPTextEncode with the hunyuan_video DualCLIPLoader: "
                        f"[[tokens [1, n, token_dim], {{pooled_output: [1, pooled_dim]}}]], n = words + 2 <= {MAX_TEXT_TOKENS}.",
            inputs=[
                io.String.Input("text", multiline=True, default=""),
                io.Int.Input("token_dim", default=32, min=1, max=8192),
                io.Int.Input("pooled_dim", default=16, min=1, max=8192),
            ],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, text: str, token_dim: int, pooled_dim: int) -> io.NodeOutput:
        return io.NodeOutput(text_conditioning(text, token_dim, pooled_dim))


class FramePackTestCLIPLoader(io.ComfyNode):
    """A CLIP for the native CLIPTextEncode: stands in for DualCLIPLoader type hunyuan_video."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FramePackTestCLIPLoader",
            display_name="FramePack Test CLIP Loader",
            category=CATEGORY,
            description="Test stand-in for DualCLIPLoader (hunyuan_video): CLIPTextEncode with this CLIP gives "
                        "the same CONDITIONING as FramePack Test Text Encode.",
            inputs=[
                io.Int.Input("token_dim", default=32, min=1, max=8192),
                io.Int.Input("pooled_dim", default=16, min=1, max=8192),
            ],
            outputs=[io.Clip.Output()],
        )

    @classmethod
    def execute(cls, token_dim: int, pooled_dim: int) -> io.NodeOutput:
        return io.NodeOutput(StandInClip(token_dim, pooled_dim))


class FramePackTestClipVisionLoader(io.ComfyNode):
    """A CLIP_VISION whose encode_image gives last_hidden_state [B, tokens, embed_dim]."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FramePackTestClipVisionLoader",
            display_name="FramePack Test CLIP Vision Loader",
            category=CATEGORY,
            description="Test stand-in for CLIPVisionLoader (SigLIP): encode_image(image, crop) gives "
                        "last_hidden_state [B, tokens, embed_dim], a fixed function of the image content.",
            inputs=[
                io.Int.Input("embed_dim", default=24, min=1, max=8192),
                io.Int.Input("tokens", default=16, min=1, max=4096),
            ],
            outputs=[io.ClipVision.Output()],
        )

    @classmethod
    def execute(cls, embed_dim: int, tokens: int) -> io.NodeOutput:
        return io.NodeOutput(StandInClipVision(embed_dim, tokens))


class FramePackTestSlowPassthrough(io.ComfyNode):
    """Passes an image through after ``steps`` sleeps, reporting progress (an interruption point) each step."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FramePackTestSlowPassthrough",
            display_name="FramePack Test Slow Passthrough",
            category=CATEGORY,
            description="Sleeps steps x seconds_per_step with a progress bar, then returns the image unchanged. "
                        "For testing progress messages and interruption.",
            inputs=[
                io.Image.Input("image"),
                io.Int.Input("steps", default=10, min=1, max=10000),
                io.Float.Input("seconds_per_step", default=0.1, min=0.0, max=10.0, step=0.01),
            ],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, image: torch.Tensor, steps: int, seconds_per_step: float) -> io.NodeOutput:
        progress = comfy.utils.ProgressBar(steps)
        for _ in range(steps):
            time.sleep(seconds_per_step)
            comfy.model_management.throw_exception_if_processing_interrupted()
            progress.update(1)
        return io.NodeOutput(image)


class FramePackTestInterruptAtProgress(io.ComfyNode):
    """Passes a value through and arms a one-shot interrupt: the first progress report of this prompt, from any
    other node, that reaches ``at_value`` requests an interrupt right after that report is sent, exactly as the
    Cancel button would, but at a known step instead of whenever a client's HTTP request happens to land."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FramePackTestInterruptAtProgress",
            display_name="FramePack Test Interrupt At Progress",
            category=CATEGORY,
            description="Pass-through; requests an interrupt once a later node of the same prompt reports "
                        "progress value >= at_value. Place it upstream of the node to interrupt.",
            inputs=[io.AnyType.Input("value"), io.Int.Input("at_value", default=1, min=1, max=1_000_000)],
            outputs=[io.AnyType.Output()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def fingerprint_inputs(cls, **_):
        return float("nan")  # arm it on every run, never serve a cached pass-through

    @classmethod
    def execute(cls, value, at_value: int) -> io.NodeOutput:
        from comfy_execution.utils import get_executing_context

        armed_for = get_executing_context().prompt_id
        own_node = str(cls.hidden.unique_id)
        original = comfy.utils.PROGRESS_BAR_HOOK
        fired = []

        def hook(value_, total, preview, prompt_id=None, node_id=None):
            context = get_executing_context()
            if context is None or context.prompt_id != armed_for:  # a later prompt: disarm, behave as before
                comfy.utils.set_progress_bar_global_hook(original)
                return original(value_, total, preview, prompt_id, node_id)
            result = original(value_, total, preview, prompt_id, node_id)
            if not fired and str(context.node_id) != own_node and value_ >= at_value:
                fired.append(value_)
                comfy.utils.set_progress_bar_global_hook(original)
                comfy.model_management.interrupt_current_processing()
            return result

        comfy.utils.set_progress_bar_global_hook(hook)
        return io.NodeOutput(value)


class FramePackTestDescribe(io.ComfyNode):
    """Output node: shows a JSON summary of any value (tensor shapes and statistics, nested structure)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FramePackTestDescribe",
            display_name="FramePack Test Describe",
            category=CATEGORY,
            description="Shows a JSON summary of its input as UI text (outputs[node]['text'][0]): tensors become "
                        "shape, dtype, mean, std, min, max; lists, dicts and objects are walked.",
            inputs=[io.AnyType.Input("value")],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, value) -> io.NodeOutput:
        return io.NodeOutput(ui=ui.PreviewText(json.dumps(describe(value))))


class _PrepareSpy:
    """Stands in for a FramePack transformer: every call goes to the real one; prepare() also saves its tensor
    arguments (the packed context of each section) to a safetensors file, call after call."""

    def __init__(self, transformer, path: str):
        self._inner, self._path, self._saved = transformer, path, {}

    def prepare(self, *args, **kwargs):
        index = len({k.split(".")[0] for k in self._saved})
        for key, value in kwargs.items():
            if isinstance(value, torch.Tensor):
                self._saved[f"call{index}.{key}"] = value.detach().float().cpu().contiguous()
        from safetensors.torch import save_file

        save_file(self._saved, self._path)
        return self._inner.prepare(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        return self._inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class FramePackTestModelSpy(io.ComfyNode):
    """Passes a FRAMEPACK_MODEL on with its transformer behind _PrepareSpy (the loader's cached model is not
    touched, so later prompts see the plain model)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FramePackTestModelSpy", display_name="FramePack Test Model Spy", category=CATEGORY,
            description="Saves what the sampler hands the model's prepare() (each section's packed context) to "
                        "output/<file_name> as safetensors: call<i>.<argument>.",
            inputs=[io.Custom("FRAMEPACK_MODEL").Input("model"), io.String.Input("file_name", default="spy.safetensors")],
            outputs=[io.Custom("FRAMEPACK_MODEL").Output()],
        )

    @classmethod
    def fingerprint_inputs(cls, **_):
        return float("nan")  # record on every run: the sampler behind it runs again too

    @classmethod
    def execute(cls, model, file_name: str) -> io.NodeOutput:
        import dataclasses
        import os

        import folder_paths

        path = os.path.join(folder_paths.get_output_directory(), os.path.basename(file_name))
        return io.NodeOutput(dataclasses.replace(model, transformer=_PrepareSpy(model.transformer, path)))


class FramePackTestSaveTensor(io.ComfyNode):
    """Output node: saves a tensor (or a LATENT's samples) to output/<file_name> as safetensors."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FramePackTestSaveTensor", display_name="FramePack Test Save Tensor", category=CATEGORY,
            description="Saves a tensor, or a LATENT's samples, to output/<file_name> (key 'value').",
            inputs=[io.AnyType.Input("value"), io.String.Input("file_name", default="tensor.safetensors")],
            outputs=[], is_output_node=True,
        )

    @classmethod
    def execute(cls, value, file_name: str) -> io.NodeOutput:
        import os

        import folder_paths
        from safetensors.torch import save_file

        tensor = value["samples"] if isinstance(value, dict) else value
        save_file({"value": tensor.detach().float().cpu().contiguous()},
                  os.path.join(folder_paths.get_output_directory(), os.path.basename(file_name)))
        return io.NodeOutput(ui=ui.PreviewText(json.dumps(describe(tensor))))


class FramePackTestExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [FramePackTestTextEncode, FramePackTestCLIPLoader, FramePackTestClipVisionLoader, FramePackTestSlowPassthrough,
                FramePackTestInterruptAtProgress, FramePackTestDescribe, FramePackTestOutOfMemoryOnce,
                FramePackTestModelSpy, FramePackTestSaveTensor]
