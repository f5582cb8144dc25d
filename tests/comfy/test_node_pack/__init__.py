"""Test-only ComfyUI node pack ("framepack_test_nodes" in the test server's custom_nodes/).

Stand-ins, in category "FramePack/testing", for what is too big to run in tests:
FramePackTestTextEncode, FramePackTestClipVisionLoader, and helpers: FramePackTestSlowPassthrough
(progress + interruption), FramePackTestDescribe (JSON summary of any value, as UI text) and
FramePackTestOutOfMemoryOnce (a CUDA out-of-memory error injected into a FramePack model, once).
Registered through the V3 ``comfy_entrypoint``. ComfyUI modules are imported only inside it, so tests
can import ``tests.comfy.test_node_pack.stand_ins`` without a ComfyUI on the path.
"""


async def comfy_entrypoint():
    from .nodes import FramePackTestExtension

    return FramePackTestExtension()
