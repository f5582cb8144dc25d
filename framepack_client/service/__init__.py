"""The hosted FramePack APIs (WaveSpeed's and fal's contracts) served locally over one or more ComfyUI servers.

Modules: cli (``serve``), app (routes + gate), wavespeed / fal (the contracts), intake (body -> job), fetch (image
URLs and data: URIs), store (SQLite), scheduler (dispatch, follow, failover), servers (health, load, models),
backend (the only module talking to ComfyUI). Needs the ``service`` extra (FastAPI, uvicorn)."""
