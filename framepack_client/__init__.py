"""Clients that talk to a running ComfyUI server (standard library only; no torch, no comfy imports)."""
