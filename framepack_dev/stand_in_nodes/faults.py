"""Fault injection for the pack's recovery paths (imported by nodes.py, inside ComfyUI only)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

FRAMEPACK_MODEL = io.Custom("FRAMEPACK_MODEL")


class FramePackTestOutOfMemoryOnce(io.ComfyNode):
    """Passes a FramePack model through after arming its first single-stream block to raise CUDA's out-of-memory
    error the next time it runs (once), as a GPU that ran out of memory mid-sampling would."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FramePackTestOutOfMemoryOnce",
            display_name="FramePack Test Out Of Memory Once",
            category="FramePack/testing",
            description="The next forward through the model's first single-stream block raises "
                        "torch.cuda.OutOfMemoryError, once; everything else is unchanged.",
            inputs=[FRAMEPACK_MODEL.Input("model")],
            outputs=[FRAMEPACK_MODEL.Output()],
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        block = model.transformer.single_transformer_blocks[0]
        normal = block.forward

        def fail_once(*args, **kwargs):
            del block.forward  # back to the class's forward
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the "
                                              "test pack)")
        block.forward = fail_once
        assert block.forward is not normal
        return io.NodeOutput(model)
