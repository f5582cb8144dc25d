"""Stand-in ComfyUI node pack ("framepack_stand_in_nodes" in custom_nodes/ of the test servers and of the demo's
smoke run).

Stand-ins, in category "FramePack/testing", for what is too big to run on tiny weights:
FramePackTestTextEncode, FramePackTestCLIPLoader, FramePackTestClipVisionLoader; and the tests' probes:
FramePackTestSlowPassthrough (progress + interruption), FramePackTestInterruptAtProgress (an interrupt at a known
step), FramePackTestDescribe (JSON summary of any value, as UI text) and FramePackTestOutOfMemoryOnce (a CUDA
out-of-memory error injected into a FramePack model, once).
Registered through the V3 ``comfy_entrypoint``. ComfyUI modules are imported only inside it, so tests
can import ``framepack_dev.stand_in_nodes.stand_ins`` without a ComfyUI on the path.
"""


async def comfy_entrypoint():
    from .nodes import FramePackTestExtension

    return FramePackTestExtension()
