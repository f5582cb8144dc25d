"""The operator's rules and the hosted contracts as their users meet them (issue 21 items 3, 6, 7, 8, 10-13),
without ComfyUI: the service points at a closed port, and what its servers would say is set on the pool.
tests/comfy/test_service_e2e.py runs real jobs."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image

from framepack_client.hosted import HostedParams, ValidationError
from framepack_client.job_states import COMPLETED, FAILED
from framepack_core.limits import MAX_NEGATIVE_PROMPT_CHARS
from framepack_service import backend
from framepack_service.cli import build_parser, config_from_args
from framepack_service.intake import FAL_I2V, WAVESPEED, BadRequest, check_body
from framepack_service.store import JobRecord
from framepack_service.wavespeed import prediction
from tests.service.harness import LiveService
from tests.service.test_service_offline import data_uri, png_bytes

URL = "https://images.example/a.png"


def finished_job(svc, status=COMPLETED, error="", finished_at=None, **fields) -> JobRecord:
    """A job stored as finished, with a video file in the outputs folder when completed."""
    job = JobRecord(id=secrets.token_hex(16), contract=fields.pop("contract", "fal"),
                    endpoint=fields.pop("endpoint", "fal-ai/framepack"), params={"prompt": "p"}, seed=5,
                    workflow="w.json", model_file="m.safetensors", created_at="2026-01-01T00:00:00.000Z")
    job.status, job.error, job.finished_at = status, error, finished_at or time.time()
    for name, value in fields.items():
        setattr(job, name, value)
    if status == COMPLETED:
        token = secrets.token_urlsafe(24)
        folder = svc.service.outputs_dir / job.id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{token}.mp4").write_bytes(b"\0\0\0\x18ftypmp42 a video")
        job.outputs = [{"token": token, "file": f"{job.id}/{token}.mp4", "size": 23, "content_type": "video/mp4"}]
    svc.service.store.add(job)
    svc.service.store.save(job)
    return job


# -- item 3: the operator's safety checker rule -------------------------------------------------------------------

def test_safety_checker_always_cannot_be_turned_off_and_off_refuses_a_request_for_it(live):
    assert check_body(WAVESPEED, {"image": URL, "prompt": "p"}, "always")["enable_safety_checker"] is True
    assert check_body(FAL_I2V, {"image_url": URL, "prompt": "p", "enable_safety_checker": False},
                      "always")["enable_safety_checker"] is True
    assert check_body(FAL_I2V, {"image_url": URL, "prompt": "p"}, "request")["enable_safety_checker"] is False
    assert check_body(FAL_I2V, {"image_url": URL, "prompt": "p", "enable_safety_checker": False},
                      "off")["enable_safety_checker"] is False
    with pytest.raises(BadRequest, match="does not run the safety checker") as err:
        check_body(FAL_I2V, {"image_url": URL, "prompt": "p", "enable_safety_checker": True}, "off")
    assert err.value.problems[0][0] == "enable_safety_checker"
    args = build_parser().parse_args(["--safety-checker", "always"])
    assert config_from_args(args).safety_checker == "always"
    assert config_from_args(build_parser().parse_args([])).safety_checker == "request"
    svc = live(safety_checker="always")
    status, answer = svc.call("POST", "/fal-ai/framepack", {"image_url": data_uri(png_bytes()), "prompt": "p",
                                                            "enable_safety_checker": False})
    assert status == 200 and svc.service.store.get(answer["request_id"]).params["enable_safety_checker"] is True


# -- item 6: the negative prompt's length ----------------------------------------------------------------------------

def test_negative_prompt_is_capped_like_the_prompt():
    long = "n" * (MAX_NEGATIVE_PROMPT_CHARS + 1)
    with pytest.raises(ValidationError, match=f"negative_prompt has {len(long)} characters; the limit is "
                                              f"{MAX_NEGATIVE_PROMPT_CHARS}"):
        HostedParams.from_mapping({"image": URL, "prompt": "p", "negative_prompt": long})
    with pytest.raises(BadRequest, match="negative_prompt has"):
        check_body(WAVESPEED, {"image": URL, "prompt": "p", "negative_prompt": long})
    HostedParams.from_mapping({"image": URL, "prompt": "p", "negative_prompt": long[:-1]})
    with pytest.raises(BadRequest) as err:  # a huge value is not echoed back whole
        check_body(WAVESPEED, {"image": URL, "prompt": "p", "aspect_ratio": "x" * 100_000})
    assert len(str(err.value)) < 1000


# -- item 7: queue cap, retention, re-encoded inputs -------------------------------------------------------------

def test_a_full_queue_is_refused_with_429_and_retry_after(live):
    svc = live(max_queued=2)
    body = {"image": data_uri(png_bytes()), "prompt": "p"}
    for _ in range(2):
        assert svc.call("POST", "/api/v3/wavespeed-ai/framepack", body)[0] == 200
    request = urllib.request.Request(svc.url + "/api/v3/wavespeed-ai/framepack", method="POST",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 429 and int(err.value.headers["Retry-After"]) > 0
    answer = json.loads(err.value.read())
    assert answer["code"] == 429 and answer["data"] is None and "try again" in answer["message"]
    status, answer = svc.call("POST", "/fal-ai/framepack", {"image_url": body["image"], "prompt": "p"})
    assert status == 429 and "unfinished jobs" in answer["detail"]
    assert svc.service.store.count() == 2


def test_finished_jobs_their_videos_and_inputs_are_deleted_after_the_retention(live):
    svc = live(retention_hours=1.0)
    status, answer = svc.call("POST", "/fal-ai/framepack", {"image_url": data_uri(png_bytes()), "prompt": "p"})
    kept_input = svc.service.store.get(answer["request_id"]).params["image"]
    old = finished_job(svc, finished_at=time.time() - 2 * 3600)
    recent = finished_job(svc, finished_at=time.time() - 600)
    stale_input = svc.service.inputs_dir / ("0" * 64 + ".png")
    stale_input.write_bytes(png_bytes((3, 3)))
    os.utime(stale_input, (time.time() - 7200, time.time() - 7200))
    os.utime(kept_input, (time.time() - 7200, time.time() - 7200))
    svc.service.scheduler._swept_at = 0.0  # due now
    svc.service.scheduler.wake()
    svc.wait_for(lambda: svc.service.store.get(old.id) is None, "the old job to be deleted", timeout=30)
    assert not (svc.service.outputs_dir / old.id).exists() and not stale_input.exists()
    assert svc.service.store.get(recent.id) is not None and (svc.service.outputs_dir / recent.id).is_dir()
    assert os.path.exists(kept_input)  # a job that still exists keeps its input
    args = build_parser().parse_args([])
    assert config_from_args(args).retention_hours == 7 * 24


def test_inputs_are_stored_re_encoded_without_what_follows_the_image(live):
    svc = live()
    junk = b"JUNK" * 25_000
    original = png_bytes((20, 12), (9, 99, 199))
    status, answer = svc.call("POST", "/fal-ai/framepack", {"image_url": data_uri(original + junk), "prompt": "p"})
    assert status == 200
    stored = open(svc.service.store.get(answer["request_id"]).params["image"], "rb").read()
    assert b"JUNK" not in stored and len(stored) < len(original) + 200
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == "PNG" and image.size == (20, 12) and image.getpixel((5, 5)) == (9, 99, 199)


# -- item 10: output URLs are capabilities -------------------------------------------------------------------------

def test_an_output_url_opens_without_the_key_until_it_expires_and_nothing_else_does(live):
    svc = live(api_key="k", output_url_hours=1.0)
    fresh = finished_job(svc)
    old = finished_job(svc, finished_at=time.time() - 2 * 3600)
    with urllib.request.urlopen(f"{svc.url}/outputs/{fresh.outputs[0]['token']}.mp4", timeout=30) as response:
        assert response.status == 200 and response.read() == b"\0\0\0\x18ftypmp42 a video"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{svc.url}/outputs/{old.outputs[0]['token']}.mp4", timeout=30)
    assert err.value.code == 404
    for path in (f"/fal-ai/framepack/requests/{fresh.id}", f"/fal-ai/framepack/requests/{fresh.id}/status",
                 "/service/servers", f"/service/jobs/{fresh.id}", "/outputs/../service/servers"):
        assert svc.call("GET", path, auth=False)[0] in (401, 404), path
    assert svc.call("GET", f"/fal-ai/framepack/requests/{fresh.id}", auth=False)[0] == 401


# -- item 11: what cannot run is refused up front; a failed job is never a 500 ---------------------------------------

def test_a_job_no_server_can_run_is_refused_naming_every_missing_file(live):
    svc = live()
    server = svc.service.pool.servers[0]
    server.answering, server.models = True, {"other.safetensors"}
    server.files = {key: set() for key in backend.LOADER_FILES}
    status, answer = svc.call("POST", "/api/v3/wavespeed-ai/framepack", {"image": data_uri(png_bytes()),
                                                                         "prompt": "p"})
    assert status == 400 and answer["code"] == 400
    for name in ("FramePackI2V_HY_bf16.safetensors (models/diffusion_models)", "clip_l.safetensors",
                 "llava_llama3_fp16.safetensors (models/text_encoders)", "hunyuan_video_vae_bf16.safetensors",
                 "sigclip_vision_patch14_384.safetensors (models/clip_vision)"):
        assert name in answer["message"]
    server.models = {"FramePackI2V_HY_bf16.safetensors"}
    server.files = {key: {"clip_l.safetensors", "llava_llama3_fp16.safetensors",
                          "hunyuan_video_vae_bf16.safetensors", "sigclip_vision_patch14_384.safetensors"}
                    for key in backend.LOADER_FILES}
    server.files[(backend.SAFETY_NODE, "classifier")] = set()
    status, answer = svc.call("POST", "/fal-ai/framepack", {"image_url": data_uri(png_bytes()), "prompt": "p",
                                                            "enable_safety_checker": True})
    assert status == 422 and "nsfw_image_detection (models/nsfw_detector)" in answer["detail"][0]["msg"]
    assert "clip_l" not in answer["detail"][0]["msg"]
    status, _ = svc.call("POST", "/fal-ai/framepack", {"image_url": data_uri(png_bytes()), "prompt": "p"})
    assert status == 200  # without the checker every file is there
    assert svc.service.store.count() == 1


def test_a_failed_fal_request_answers_in_the_contract_shape_not_500(live):
    svc = live()
    job = finished_job(svc, status=FAILED, error="the job failed on the server")
    status, answer = svc.call("GET", f"/fal-ai/framepack/requests/{job.id}")
    assert status == 422 and answer["detail"][0]["msg"] == "the job failed on the server"


# -- item 12: errors for API callers ---------------------------------------------------------------------------------

def test_unknown_api_paths_answer_in_wavespeeds_shape_and_refusals_name_no_option(live):
    svc = live(max_body_bytes=2048)
    status, answer = svc.call("GET", "/api/v3/wavespeed-ai/nothing-here")
    assert status == 404 and answer == {"code": 404, "message": answer["message"], "data": None}
    assert "/api/v3/wavespeed-ai/nothing-here" in answer["message"]
    status, answer = svc.call("DELETE", "/api/v3/wavespeed-ai/framepack")
    assert status == 405 and answer["code"] == 405 and answer["data"] is None
    status, answer = svc.call("POST", "/api/v3/wavespeed-ai/framepack", {"image": "x" * 4000, "prompt": "p"})
    assert status == 413 and "--" not in answer["message"] and "data: URIs of at most 8 MiB" in answer["message"]


# -- item 13: "not checked" is not "clean" -------------------------------------------------------------------------

def test_has_nsfw_contents_is_empty_when_the_checker_did_not_run(live):
    svc = live()
    unchecked = finished_job(svc, contract="wavespeed", endpoint="wavespeed-ai/framepack", nsfw=[False])
    checked = finished_job(svc, contract="wavespeed", endpoint="wavespeed-ai/framepack", nsfw=[False],
                           nsfw_score=0.01)
    flagged = finished_job(svc, contract="wavespeed", endpoint="wavespeed-ai/framepack", nsfw=[True],
                           nsfw_score=0.97)
    assert prediction(unchecked, "http://x")["has_nsfw_contents"] == []
    assert prediction(checked, "http://x")["has_nsfw_contents"] == [False]
    assert prediction(flagged, "http://x")["has_nsfw_contents"] == [True]
    status, answer = svc.call("GET", f"/api/v3/predictions/{unchecked.id}/result")
    assert status == 200 and answer["data"]["has_nsfw_contents"] == [] and len(answer["data"]["outputs"]) == 1


# -- item 8: keys in URLs, the docs' scripts, videos streamed ----------------------------------------------------

def test_a_key_in_the_query_is_refused_and_never_logged(tmp_path):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    svc = LiveService(["http://127.0.0.1:9"], tmp_path, api_key="s3cret-key", log_level="info")
    handler = Keep()  # after uvicorn set up its loggers
    logging.getLogger("uvicorn.access").addHandler(handler)
    try:
        for query in ("?key=s3cret-key", "?api_key=anything", "?x=1&token=abc", "?q=s3cret-key"):
            status, answer = svc.call("GET", "/service/servers" + query)
            assert status == 400 and "Authorization" in answer["detail"], query
        assert svc.call("GET", "/service/servers?verbose=1")[0] == 200
    finally:
        svc.close()
        logging.getLogger("uvicorn.access").removeHandler(handler)
    assert len(records) >= 5 and any("query-withheld" in r for r in records)
    assert not any("s3cret" in r or "anything" in r or "abc" in r for r in records), records


def test_docs_load_their_scripts_from_the_service(live):
    svc = live(api_key="k")
    with urllib.request.urlopen(svc.url + "/docs", timeout=30) as response:
        page = response.read().decode()
    assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    with urllib.request.urlopen(svc.url + "/docs/assets/swagger-ui-bundle.js", timeout=30) as response:
        assert response.status == 200 and len(response.read()) > 100_000
    assert svc.call("GET", "/docs/assets/..%2F..%2Fetc%2Fpasswd", auth=False)[0] in (401, 404)
    off = live(docs=False)
    assert off.call("GET", "/docs")[0] == 404 and off.call("GET", "/openapi.json")[0] == 404


def test_finished_videos_are_streamed_to_a_file_not_read_into_memory(tmp_path, monkeypatch):
    calls = []

    class Client:
        def view(self, *args, **kwargs):
            raise AssertionError("the whole video was read into memory")

        def download(self, filename, subfolder, kind, path, timeout):
            calls.append((filename, subfolder, kind))
            open(path, "wb").write(b"video")
            return 5

    monkeypatch.setattr(backend, "_client", lambda url, timeout: Client())
    size = backend.save_video("http://127.0.0.1:9", {"filename": "v.mp4", "subfolder": "s"}, tmp_path / "o.mp4", 5)
    assert size == 5 and calls == [("v.mp4", "s", "output")] and (tmp_path / "o.mp4").read_bytes() == b"video"


def test_a_failed_send_names_the_services_files_without_their_folders(tmp_path, monkeypatch):
    class Client:
        def upload_image(self, *args, **kwargs):
            return {"name": "uploaded.png", "subfolder": "", "type": "input"}

    monkeypatch.setattr(backend, "_client", lambda url, timeout: Client())
    gone = tmp_path / "inputs" / ("ab" * 32 + ".png")
    params = HostedParams.from_record({"image": str(gone), "prompt": "p", "seed": 1})
    with pytest.raises(backend.Rejected) as err:
        backend.submit("http://127.0.0.1:9", params, str(tmp_path / "w.json"), None, "p1", 5)
    assert gone.name in str(err.value) and str(tmp_path) not in str(err.value)
    with pytest.raises(backend.Rejected) as err:  # a workflow file that is missing: named, not located
        backend.submit("http://127.0.0.1:9", HostedParams.from_record({"image": str(png_path(tmp_path)),
                                                                       "prompt": "p", "seed": 1}),
                       str(tmp_path / "nowhere" / "w.json"), None, "p1", 5)
    assert "w.json" in str(err.value) and str(tmp_path) not in str(err.value)


def png_path(folder) -> str:
    path = folder / "start.png"
    path.write_bytes(png_bytes())
    return str(path)
