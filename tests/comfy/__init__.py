"""Tests against a real ComfyUI server (see framepack_dev/comfy_server.py) and its frontend (see frontend.py)."""
