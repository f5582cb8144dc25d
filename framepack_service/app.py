"""The service's ASGI application: both contracts' routes, the outputs, a health check and two operator views,
behind the gate (key, loopback rule, body cap). The scheduler runs for the application's lifetime."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from . import fal, wavespeed
from .core import Service
from .fal import withheld
from .gate import Gate
from .intake import BadRequest
from .shapes import bad_request_body, error_body

DESCRIPTION = """\
FramePack image-to-video over one or more ComfyUI servers (with the FramePack node pack), speaking the hosted
APIs' contracts: WaveSpeed's `wavespeed-ai/framepack` and fal's queue for `fal-ai/framepack` and
`fal-ai/framepack/flf2v`. Send the key as `Authorization: Bearer KEY` or `Authorization: Key KEY`."""


def create_app(service: Service):
    @asynccontextmanager
    async def lifespan(_app):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="FramePack service", description=DESCRIPTION, version="0.1.0", lifespan=lifespan,
                  redoc_url=None)
    app.state.service = service
    app.include_router(wavespeed.router)
    app.include_router(fal.router)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, err: BadRequest):
        status, body = bad_request_body(request.url.path, err)
        return JSONResponse(body, status_code=status)

    @app.get("/health", tags=["service"], summary="Liveness (no key needed)")
    async def health():
        return {"status": "ok"}

    @app.get("/outputs/{name}", tags=["service"], summary="A finished job's video")
    async def output(name: str, request: Request):
        token = name[:-4] if name.endswith(".mp4") else ""
        found = await run_in_threadpool(service.output, token)
        if found is None or withheld(found[0]):
            return JSONResponse(error_body(request.url.path, 404, "no such output"), status_code=404)
        job, entry, path = found
        return FileResponse(path, media_type=entry["content_type"], filename=f"{job.id}.mp4")

    @app.get("/service/servers", tags=["service"], summary="The ComfyUI servers: answering, load, models")
    async def servers():
        return {"servers": service.pool.describe()}

    @app.get("/service/jobs/{job_id}", tags=["service"], summary="Where a job runs, its attempts and notes")
    async def job_details(job_id: str, request: Request):
        job = None
        for kind in ("wavespeed", "fal"):
            job = job or await run_in_threadpool(service.job, job_id, kind)
        if job is None:
            return JSONResponse(error_body(request.url.path, 404, f"job {job_id!r} not found"), status_code=404)
        return await run_in_threadpool(service.describe, job)

    return Gate(app, api_key=service.config.api_key, max_body_bytes=service.config.max_body_bytes)
