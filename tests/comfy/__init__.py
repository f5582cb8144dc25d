"""Tests against a real ComfyUI server (see harness.py) and its frontend (see frontend.py)."""
