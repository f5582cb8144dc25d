"""WaveSpeed's FramePack contract: ``POST /api/v3/wavespeed-ai/framepack`` and
``GET /api/v3/predictions/{id}/result``, both answering ``{code, message, data: {id, model, outputs, urls: {get},
has_nsfw_contents, status, created_at, error, timings: {inference}}}``; status moves created -> processing ->
completed | failed. A flagged video is still delivered, with ``has_nsfw_contents: [true]``.

WaveSpeed's page documents ``has_nsfw_contents`` only as "boolean values indicating NSFW detection for each
output" and says nothing of a video that was not checked (its FramePack request has no safety switch). Here a
video the checker did not score gets no entry: ``[]``, never ``[false]``, which would say "checked, clean"."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from framepack_client.job_states import COMPLETED, WAVESPEED_STATUS

from .intake import WAVESPEED
from .shapes import base_url, body_schema, error_body
from .store import JobRecord

router = APIRouter(tags=["WaveSpeed: wavespeed-ai/framepack"])


def output_url(base: str, output: dict) -> str:
    return f"{base}/outputs/{output['token']}.mp4"


def prediction(job: JobRecord, base: str) -> dict:
    done = job.status == COMPLETED
    outputs = [output_url(base, o) for o in job.outputs] if done else []
    checked = job.nsfw_score is not None  # the checker ran and scored this job's video
    flags = [bool(f) for f in job.nsfw][:len(outputs)] if checked else []
    return {
        "id": job.id, "model": job.endpoint, "outputs": outputs,
        "urls": {"get": f"{base}/api/v3/predictions/{job.id}/result"},
        "has_nsfw_contents": flags,
        "status": WAVESPEED_STATUS[job.status], "created_at": job.created_at, "error": job.error,
        "timings": {"inference": int(job.inference_ms or 0)},
    }


def envelope(data: dict) -> dict:
    return {"code": 200, "message": "success", "data": data}


@router.post("/api/v3/wavespeed-ai/framepack", openapi_extra=body_schema(WAVESPEED),
             summary="Submit a FramePack image-to-video task")
async def submit(request: Request):
    service = request.app.state.service
    job = await service.submit_raw(WAVESPEED, await request.body())
    return envelope(prediction(job, base_url(request, service.config.public_url)))


@router.get("/api/v3/predictions/{prediction_id}/result", summary="Get a task's status and result")
async def result(prediction_id: str, request: Request):
    service = request.app.state.service
    job = await run_in_threadpool(service.job, prediction_id, WAVESPEED.kind)
    if job is None:
        return JSONResponse(error_body(request.url.path, 404, f"prediction {prediction_id!r} not found; use the "
                                                             "id that the submit answered"), status_code=404)
    return envelope(prediction(job, base_url(request, service.config.public_url)))
