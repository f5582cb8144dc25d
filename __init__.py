"""FramePack for ComfyUI: image-to-video and first+last-frame video with FramePackI2V_HY and F1.

ComfyUI loads this file; outside ComfyUI (tests, tools) importing the package does not pull ComfyUI in.
"""

try:
    import comfy_api.latest  # noqa: F401  (present only inside ComfyUI)
except ImportError:
    pass
else:
    from .nodes import comfy_entrypoint  # noqa: F401
