"""The hosted FramePack APIs (WaveSpeed's and fal's contracts) served locally over one or more ComfyUI servers:
``framepack-video serve``, ``python -m framepack_client serve`` or ``python -m framepack_service``.

A server, not a client: it depends on the API client (framepack_client) for the hosted parameters, the API
workflows, uploads, reading a prompt's outcome and the URL fetcher, and nothing there depends on it (the client's
command line only hands ``serve`` over to :mod:`framepack_service.cli`).

Modules: cli (``serve``), app (routes + gate), wavespeed / fal (the contracts), shapes (error bodies, the body
schema), intake (body -> job), store (SQLite), scheduler (dispatch, follow, failover), servers (health, load,
models), backend (the only module talking to ComfyUI), core (the service without its HTTP layer). Needs the
``service`` extra (FastAPI, uvicorn, Pillow)."""
