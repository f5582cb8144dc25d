"""Clients that talk to a running ComfyUI server (the standard library and websocket-client; no torch, no comfy
imports)."""
