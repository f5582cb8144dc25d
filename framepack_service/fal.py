"""fal's queue contract for ``fal-ai/framepack`` (image to video) and ``fal-ai/framepack/flf2v`` (first + last
frame):

    POST /fal-ai/framepack[/flf2v]                        -> {request_id, response_url, status_url, cancel_url, ...}
    GET  /fal-ai/framepack/requests/{id}/status[?logs=1]  -> {status: IN_QUEUE (queue_position) | IN_PROGRESS |
                                                              COMPLETED, ...}
    GET  /fal-ai/framepack/requests/{id}                  -> {video: {url, content_type, file_name, file_size}, seed}
    PUT  /fal-ai/framepack/requests/{id}/cancel           -> 202 CANCELLATION_REQUESTED | 400 ALREADY_COMPLETED

As on fal, the request paths leave out the endpoint's subpath (/flf2v); they are also answered with it. A request
that failed or was cancelled is COMPLETED with an ``error``; its result answers in fal's error shape: 422
``{detail: [{loc, msg, type}]}`` for a failed one (never 500: the service did not fail, the job did), 400 for a
cancelled one. A video the safety checker flagged (``enable_safety_checker: true``) is withheld: the result answers
422 with ``type: content_policy_violation`` and the video's URL is not served.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from framepack_client.job_states import CANCELLED, COMPLETED, DISPATCHED, FAILED, QUEUED

from .intake import FAL_FLF2V, FAL_I2V, Contract
from .shapes import base_url, body_schema
from .store import JobRecord

APP = "fal-ai/framepack"
router = APIRouter(tags=["fal: fal-ai/framepack and fal-ai/framepack/flf2v (queue)"])
REQUEST_PATHS = (f"/{APP}/requests/{{request_id}}", f"/{APP}/flf2v/requests/{{request_id}}")


def withheld(job: JobRecord) -> bool:
    """A flagged video of a fal request that asked for the safety checker is not delivered (WaveSpeed's contract
    delivers it and says so in has_nsfw_contents)."""
    return job.contract == "fal" and bool(job.params.get("enable_safety_checker")) and any(job.nsfw)


def request_urls(base: str, job: JobRecord) -> dict:
    root = f"{base}/{APP}/requests/{job.id}"
    return {"request_id": job.id, "response_url": root, "status_url": f"{root}/status",
            "cancel_url": f"{root}/cancel"}


def failure(job: JobRecord) -> str:
    if job.status == CANCELLED:
        return "the request was cancelled"
    if job.status == FAILED:
        return job.error or "the request failed"
    if job.status == COMPLETED and withheld(job):
        return (f"the safety checker flagged the video (NSFW score {job.nsfw_score or 0.0:.3f}); it is withheld. "
                "Change the prompt or the image")
    return ""


def status_body(job: JobRecord, base: str, position: int, logs: bool) -> dict:
    body = request_urls(base, job)
    if job.status in (QUEUED, DISPATCHED):
        body.update(status="IN_QUEUE", queue_position=position)
    elif not job.final:
        body.update(status="IN_PROGRESS")
    else:
        body.update(status="COMPLETED", metrics={"inference_time": (job.inference_ms or 0) / 1000.0})
        if failure(job):
            body["error"] = failure(job)
    if logs:
        stamp = datetime.fromtimestamp(job.finished_at or job.started_at or 0, timezone.utc).isoformat()
        body["logs"] = [{"message": note, "level": "WARN", "source": "service", "timestamp": stamp}
                        for note in job.notes]
    return body


async def _submit(contract: Contract, request: Request) -> dict:
    service = request.app.state.service
    job = await service.submit_raw(contract, await request.body())
    position = await run_in_threadpool(service.queue_position, job)
    return {**request_urls(base_url(request, service.config.public_url), job), "status": "IN_QUEUE",
            "queue_position": position}


@router.post(f"/{APP}", openapi_extra=body_schema(FAL_I2V), summary="Queue an image-to-video request")
async def submit_i2v(request: Request):
    return await _submit(FAL_I2V, request)


@router.post(f"/{APP}/flf2v", openapi_extra=body_schema(FAL_FLF2V), summary="Queue a first+last frame request")
async def submit_flf2v(request: Request):
    return await _submit(FAL_FLF2V, request)


async def _job(request: Request, request_id: str) -> JobRecord | None:
    return await run_in_threadpool(request.app.state.service.job, request_id, "fal")


def _not_found(request_id: str) -> JSONResponse:
    return JSONResponse({"status": "NOT_FOUND", "detail": f"request {request_id!r} not found; use the request_id "
                                                          "that the submit answered"}, status_code=404)


@router.get(REQUEST_PATHS[0] + "/status", summary="A request's status")
@router.get(REQUEST_PATHS[1] + "/status", include_in_schema=False)
async def status(request_id: str, request: Request, logs: int = 0):
    job = await _job(request, request_id)
    if job is None:
        return _not_found(request_id)
    service = request.app.state.service
    position = await run_in_threadpool(service.queue_position, job)
    return status_body(job, base_url(request, service.config.public_url), position, bool(logs))


@router.get(REQUEST_PATHS[0], summary="A request's result")
@router.get(REQUEST_PATHS[1], include_in_schema=False)
async def response(request_id: str, request: Request):
    job = await _job(request, request_id)
    if job is None:
        return _not_found(request_id)
    if not job.final:
        return JSONResponse({"detail": "the request is still in progress; ask its status_url until it is "
                                       "COMPLETED"}, status_code=400)
    if job.status == COMPLETED and withheld(job):
        return JSONResponse({"detail": [{"loc": ["body", "video"], "msg": failure(job),
                                         "type": "content_policy_violation"}]}, status_code=422)
    if job.status == CANCELLED:
        return JSONResponse({"detail": failure(job)}, status_code=400)
    if job.status == FAILED or not job.outputs:
        return JSONResponse({"detail": [{"loc": ["body"], "msg": failure(job) or "the request produced no video",
                                         "type": "generation_failed"}]}, status_code=422)
    base = base_url(request, request.app.state.service.config.public_url)
    output = job.outputs[0]
    return {"video": {"url": f"{base}/outputs/{output['token']}.mp4", "content_type": output["content_type"],
                      "file_name": f"{job.id}.mp4", "file_size": output["size"]},
            "seed": job.seed}


@router.put(REQUEST_PATHS[0] + "/cancel", summary="Cancel a queued or running request")
@router.put(REQUEST_PATHS[1] + "/cancel", include_in_schema=False)
async def cancel(request_id: str, request: Request):
    job = await _job(request, request_id)
    if job is None:
        return _not_found(request_id)
    if not await run_in_threadpool(request.app.state.service.cancel, job):
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
    return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)
