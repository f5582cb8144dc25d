"""The service's ASGI application: both contracts' routes, the outputs, a health check and two operator views,
behind the gate (key, loopback rule, body cap). The scheduler runs for the application's lifetime."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException

from . import fal, wavespeed
from .core import QueueFull, Service
from .fal import withheld
from .gate import Gate
from .intake import BadRequest
from .shapes import bad_request_body, error_body

DESCRIPTION = """\
FramePack image-to-video over one or more ComfyUI servers (with the FramePack node pack), speaking the hosted
APIs' contracts: WaveSpeed's `wavespeed-ai/framepack` and fal's queue for `fal-ai/framepack` and
`fal-ai/framepack/flf2v`. Send the key as `Authorization: Bearer KEY` or `Authorization: Key KEY`."""
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def swagger_folder() -> Path | None:
    """Swagger UI's files from the swagger-ui-bundle package (the service extra), or None without it."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return Path(swagger_ui_path)


def _add_docs(app: FastAPI, folder: Path) -> None:
    """/docs with Swagger UI's script and style served here (FastAPI's default loads them from a CDN)."""
    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="FramePack service",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str):
        if name not in DOCS_ASSETS:
            return JSONResponse({"detail": "no such file"}, status_code=404)
        return FileResponse(folder / name)


def create_app(service: Service):
    @asynccontextmanager
    async def lifespan(_app):
        service.start()
        try:
            yield
        finally:
            service.stop()

    docs_folder = swagger_folder() if service.config.docs else None
    app = FastAPI(title="FramePack service", description=DESCRIPTION, version="0.1.0", lifespan=lifespan,
                  redoc_url=None, docs_url=None, openapi_url="/openapi.json" if docs_folder else None)
    app.state.service = service
    app.include_router(wavespeed.router)
    app.include_router(fal.router)
    if docs_folder is not None:
        _add_docs(app, docs_folder)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, err: BadRequest):
        status, body = bad_request_body(request.url.path, err)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, err: QueueFull):
        return JSONResponse(error_body(request.url.path, 429, str(err)), status_code=429,
                            headers={"Retry-After": str(err.retry_after)})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        """Unknown paths and methods in the contract's shape (WaveSpeed's {code, message, data} under /api/v3/)."""
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(err.status_code, str(err.detail))
        return JSONResponse(error_body(request.url.path, err.status_code, message), status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.get("/health", tags=["service"], summary="Liveness (no key needed)")
    async def health():
        return {"status": "ok"}

    @app.get("/outputs/{name}", tags=["service"], summary="A finished job's video (its URL is the capability: no key)")
    async def output(name: str, request: Request):
        token = name[:-4] if name.endswith(".mp4") else ""
        found = await run_in_threadpool(service.output, token)
        if found is None or withheld(found[0]):
            return JSONResponse(error_body(request.url.path, 404, "no such output (or its URL has expired)"),
                                status_code=404)
        job, entry, path = found
        return FileResponse(path, media_type=entry["content_type"], filename=f"{job.id}.mp4")  # streamed

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
