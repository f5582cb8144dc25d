"""WaveSpeed's FramePack contract: ``POST /api/v3/wavespeed-ai/framepack`` and
``GET /api/v3/predictions/{id}/result``, both answering ``{code, message, data: {id, model, outputs, urls: {get},
has_nsfw_contents, status, created_at, error, timings: {inference}}}``; status moves created -> processing ->
completed | failed. A flagged video is still delivered, with ``has_nsfw_contents: [true]``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from framepack_client.job_states import COMPLETED, WAVESPEED_STATUS

from .intake import WAVESPEED
from .shapes import base_url, body_schema, error_body, parse_json
from .store import JobRecord

router = APIRouter(tags=["WaveSpeed: wavespeed-ai/framepack"])


def output_url(base: str, output: dict) -> str:
    return f"{base}/outputs/{output['token']}.mp4"


def prediction(job: JobRecord, base: str) -> dict:
    done = job.status == COMPLETED
    outputs = [output_url(base, o) for o in job.outputs] if done else []
    flags = [bool(f) for f in job.nsfw][:len(outputs)]
    return {
        "id": job.id, "model": job.endpoint, "outputs": outputs,
        "urls": {"get": f"{base}/api/v3/predictions/{job.id}/result"},
        "has_nsfw_contents": flags + [False] * (len(outputs) - len(flags)),
        "status": WAVESPEED_STATUS[job.status], "created_at": job.created_at, "error": job.error,
        "timings": {"inference": int(job.inference_ms or 0)},
    }


def envelope(data: dict) -> dict:
    return {"code": 200, "message": "success", "data": data}


@router.post("/api/v3/wavespeed-ai/framepack", openapi_extra=body_schema(WAVESPEED),
             summary="Submit a FramePack image-to-video task")
async def submit(request: Request):
    service = request.app.state.service
    body = parse_json(await request.body())
    job = await run_in_threadpool(service.submit, WAVESPEED, body)
    return envelope(prediction(job, base_url(request, service.config.public_url)))


@router.get("/api/v3/predictions/{prediction_id}/result", summary="Get a task's status and result")
async def result(prediction_id: str, request: Request):
    service = request.app.state.service
    job = await run_in_threadpool(service.job, prediction_id, WAVESPEED.kind)
    if job is None:
        return JSONResponse(error_body(request.url.path, 404, f"prediction {prediction_id!r} not found; use the "
                                                             "id that the submit answered"), status_code=404)
    return envelope(prediction(job, base_url(request, service.config.public_url)))
