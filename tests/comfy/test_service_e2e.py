"""The local service end to end over three real ComfyUI servers on tiny weights (started with --cache-none, so
every job computes its video): both contracts' fields and shapes as the hosted APIs' pages give them, jobs spread
over every server, a server killed mid-job, the service killed and restarted mid-job, and keys.

The expected field names below are copied from the hosted pages (WaveSpeed's wavespeed-ai/framepack page, fal's
fal-ai/framepack/flf2v page and fal's queue documentation), not from the service's code."""

from __future__ import annotations

import base64
import io
import re
import threading
import time
import urllib.request
from pathlib import Path

import av
import pytest

pytest.importorskip("fastapi", reason="the service extra (fastapi, uvicorn) is not installed")

from framepack_client.server_api import ComfyClient  # noqa: E402
from framepack_dev.comfy_server import ComfyServer, ComfyStartError  # noqa: E402
from tests.comfy.tiny_classifier import install_tiny_classifiers  # noqa: E402
from framepack_dev.tiny_models import END_IMAGE, START_IMAGE, install_tiny_models, tiny_workflow  # noqa: E402
from tests.service.harness import LiveService, ServiceProcess  # noqa: E402

KEY = "e2e-test-key"
TINY = {"resolution": "custom", "width": 64, "height": 64, "num_frames": 30, "num_inference_steps": 4}
LONGER = {**TINY, "num_inference_steps": 8}  # long enough to be caught running

# WaveSpeed page, "Response Parameters": code, message, data.id, data.model, data.outputs, data.urls, data.urls.get,
# data.has_nsfw_contents, data.status, data.created_at, data.error, data.timings, data.timings.inference
WAVESPEED_TOP = {"code", "message", "data"}
WAVESPEED_DATA = {"id", "model", "outputs", "urls", "has_nsfw_contents", "status", "created_at", "error", "timings"}
WAVESPEED_STATUSES = {"created", "processing", "completed", "failed"}
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")  # "2023-04-01T12:34:56.789Z"
# fal queue: submit answers request_id, response_url, status_url, cancel_url; status IN_QUEUE (queue_position),
# IN_PROGRESS, COMPLETED; fal flf2v page, "Output Schema": video (File: url, content_type, file_name, file_size), seed
FAL_SUBMIT = {"request_id", "response_url", "status_url", "cancel_url"}
FAL_STATUSES = {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
FAL_FILE = {"url", "content_type", "file_name", "file_size"}


def image_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def probe(data: bytes) -> tuple[int, int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), stream.codec_context.width, stream.codec_context.height


# -- fixtures ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_thread_servers():
    """Three servers share the machine's cores: one compute thread each (also for the restarted one)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def servers(tmp_path_factory, one_thread_servers):
    made = [ComfyServer(base_dir=tmp_path_factory.mktemp(f"service_comfy{i}"), extra_args=["--cache-none"])
            for i in range(3)]
    for server in made:  # here, not in the threads: transformers' lazy imports are not thread-safe
        install_tiny_models(server.models_dir, server.input_dir)
        install_tiny_classifiers(server.models_dir)
    errors, started, release = [], threading.Semaphore(0), threading.Event()

    def boot(server):
        try:
            server.start()
        except ComfyStartError as err:
            errors.append(str(err))
        started.release()
        # The harness asks the kernel to stop a server when the thread that started it ends (PR_SET_PDEATHSIG
        # follows the thread): this thread lives until the servers are stopped.
        release.wait()

    threads = [threading.Thread(target=boot, args=(s,), daemon=True) for s in made]
    for t in threads:
        t.start()
    for _ in threads:
        started.acquire()
    try:
        if errors:
            pytest.fail(errors[0], pytrace=False)
        yield made
    finally:
        for s in made:
            s.stop()
        release.set()


@pytest.fixture(scope="module")
def images(servers) -> dict[str, str]:
    folder = servers[0].input_dir
    return {"start": image_uri(folder / START_IMAGE), "end": image_uri(folder / END_IMAGE)}


@pytest.fixture(scope="module")
def workflow_dir(tmp_path_factory) -> Path:
    """The shipped workflows rewritten for the tiny weights (the service fills everything else)."""
    import json

    folder = tmp_path_factory.mktemp("service_workflows")
    for name in ("framepack_i2v", "framepack_first_last_frame"):
        (folder / f"{name}.json").write_text(json.dumps(tiny_workflow(name)))
    return folder


@pytest.fixture(scope="module")
def service(servers, workflow_dir, tmp_path_factory):
    from framepack_service.scheduler import SchedulerSettings

    live = LiveService([s.url for s in servers], tmp_path_factory.mktemp("service_data"), api_key=KEY,
                       workflow_dir=workflow_dir, server_grace=3.0,
                       scheduler=SchedulerSettings(poll_interval=0.25, jobs_per_server=2, max_attempts=3))
    yield live
    live.close()


def details(service, job_id: str) -> dict:
    status, answer = service.call("GET", f"/service/jobs/{job_id}")
    assert status == 200, answer
    return answer


def all_answering(service) -> bool:
    return all(s["answering"] for s in service.call("GET", "/service/servers")[1]["servers"])


# -- tests (in file order: the killed server comes back before the twelve jobs need it) ------------------------------

def test_wrong_or_missing_key_queues_nothing(service, servers, images):
    before = [len(ComfyClient(s.url).history()) for s in servers]
    for headers in ({}, {"Authorization": "Bearer not-the-key"}, {"Authorization": f"Basic {KEY}"}):
        status, _ = service.call("POST", "/api/v3/wavespeed-ai/framepack", {"image": images["start"], "prompt": "p"},
                                 headers, auth=False)
        assert status == 401
        status, _ = service.call("POST", "/fal-ai/framepack/flf2v", {"image_url": images["start"], "prompt": "p",
                                                                     "end_image_url": images["end"]},
                                 headers, auth=False)
        assert status == 401
    time.sleep(1.0)  # several scheduler ticks: had anything been stored, it would have been sent by now
    assert service.service.store.count() == 0
    assert [len(ComfyClient(s.url).history()) for s in servers] == before
    assert all(ComfyClient(s.url).queue() == {"queue_running": [], "queue_pending": []} for s in servers)


def test_killed_server_job_completes_elsewhere_with_the_same_video(service, servers, images):
    service.wait_for(lambda: all_answering(service), "all servers to answer")
    body = {"image": images["start"], "prompt": "failover", "seed": 4242, **LONGER}
    status, answer = service.call("POST", "/api/v3/wavespeed-ai/framepack", body)
    assert status == 200
    reference = service.wait_for(lambda: done_prediction(service, answer["data"]["id"]), "the reference video")
    assert reference["status"] == "completed", reference["error"]
    reference_bytes = service.download(reference["outputs"][0])

    status, answer = service.call("POST", "/api/v3/wavespeed-ai/framepack", body)
    job_id = answer["data"]["id"]
    where = service.wait_for(lambda: (lambda d: d["server"] and d["prompt_id"] and d)(details(service, job_id)),
                             "the job to be sent", interval=0.05)
    victim = next(s for s in servers if s.url == where["server"])
    comfy = ComfyClient(victim.url)
    service.wait_for(lambda: any(item[1] == where["prompt_id"] for item in comfy.queue()["queue_running"]),
                     "the job to run on its server", interval=0.05)
    victim.process.kill()  # SIGKILL mid-job
    victim.process.wait(timeout=30)

    final = service.wait_for(lambda: done_prediction(service, job_id), "the job to finish elsewhere")
    assert final["status"] == "completed", final["error"]
    info = details(service, job_id)
    assert info["tried"][0] == victim.url and info["server"] != victim.url and info["attempts"] == 2
    assert "stopped answering" in info["notes"][0]
    assert service.download(final["outputs"][0]) == reference_bytes  # same seed, same video, byte for byte

    victim.start()  # back on its port: the service uses it again (the next test needs every server)
    service.wait_for(lambda: all_answering(service), "the restarted server to answer the service")


def done_prediction(service, job_id: str, seen: set | None = None) -> dict | None:
    status, answer = service.call("GET", f"/api/v3/predictions/{job_id}/result")
    assert status == 200 and set(answer) == WAVESPEED_TOP and answer["code"] == 200, answer
    data = answer["data"]
    assert set(data) == WAVESPEED_DATA and data["status"] in WAVESPEED_STATUSES
    if seen is not None:
        seen.add(data["status"])
    return data if data["status"] in ("completed", "failed") else None


def fal_done(service, request_id: str, seen: set) -> dict | None:
    status, answer = service.call("GET", f"/fal-ai/framepack/requests/{request_id}/status")
    assert status == 200 and answer["status"] in FAL_STATUSES, answer
    seen.add(answer["status"])
    if answer["status"] == "IN_QUEUE":
        assert isinstance(answer["queue_position"], int) and answer["queue_position"] >= 0
    return answer if answer["status"] == "COMPLETED" else None


def test_twelve_jobs_over_three_servers_through_both_contracts(service, servers, images):
    service.wait_for(lambda: all_answering(service), "all servers to answer")
    submitted = []  # (contract, id, body)
    for i in range(12):
        seed = 100 + i
        if i % 3 == 0:
            body = {"image": images["start"], "prompt": f"job {i}", "seed": seed, **TINY,
                    "enable_safety_checker": i == 3}
            status, answer = service.call("POST", "/api/v3/wavespeed-ai/framepack", body)
            assert status == 200 and set(answer) == WAVESPEED_TOP and set(answer["data"]) == WAVESPEED_DATA
            data = answer["data"]
            assert (answer["code"], answer["message"]) == (200, "success")
            assert data["status"] == "created" and data["outputs"] == [] and data["error"] == ""
            assert data["model"] == "wavespeed-ai/framepack" and ISO_MS_Z.match(data["created_at"])
            assert set(data["urls"]) == {"get"} and data["urls"]["get"].endswith(f"/api/v3/predictions/"
                                                                                  f"{data['id']}/result")
            assert set(data["timings"]) == {"inference"} and isinstance(data["timings"]["inference"], int)
            submitted.append(("wavespeed", data["id"], body))
        else:
            flf = i % 3 == 2
            body = {"image_url": images["start"], "prompt": f"job {i}", "seed": seed, **TINY,
                    "enable_safety_checker": i == 4}
            if flf:
                body.update(end_image_url=images["end"], strength=0.9)
            status, answer = service.call("POST", "/fal-ai/framepack/flf2v" if flf else "/fal-ai/framepack", body,
                                          {"Authorization": f"Key {KEY}"})
            assert status == 200 and FAL_SUBMIT <= set(answer), answer
            rid = answer["request_id"]
            for name in ("response_url", "status_url", "cancel_url"):
                assert answer[name].startswith(service.url) and rid in answer[name]
            submitted.append(("fal", rid, body))

    seen_ws, seen_fal = set(), set()
    for contract, job_id, body in submitted:
        if contract == "wavespeed":
            data = service.wait_for(lambda: done_prediction(service, job_id, seen_ws), f"job {job_id}")
            assert data["status"] == "completed", data["error"]
            (url,) = data["outputs"]
            # the tiny classifier flags all; a video it did not check has no entry (never "clean")
            assert data["has_nsfw_contents"] == ([True] if body["enable_safety_checker"] else [])
            assert data["timings"]["inference"] > 0
            assert probe(service.download(url)) == (30, 64, 64)  # a flagged WaveSpeed video is still delivered
        else:
            state = service.wait_for(lambda: fal_done(service, job_id, seen_fal), f"request {job_id}")
            status, result = service.call("GET", f"/fal-ai/framepack/requests/{job_id}")
            if body["enable_safety_checker"]:
                assert "safety checker flagged" in state["error"]
                assert status == 422 and result["detail"][0]["type"] == "content_policy_violation"
                continue
            assert "error" not in state and status == 200, result
            assert set(result) == {"video", "seed"} and set(result["video"]) == FAL_FILE
            assert result["seed"] == body["seed"] and result["video"]["content_type"] == "video/mp4"
            with urllib.request.urlopen(result["video"]["url"], timeout=60) as plain:  # no key: the URL suffices
                video = plain.read()
            assert len(video) == result["video"]["file_size"] and probe(video) == (30, 64, 64)
    assert "completed" in seen_ws and "COMPLETED" in seen_fal
    assert seen_ws <= {"created", "processing", "completed"} and seen_fal <= FAL_STATUSES
    used = {details(service, job_id)["server"] for _, job_id, _ in submitted}
    assert used == {s.url for s in servers}, "every server takes jobs (the restarted one too)"


def test_cancel_a_queued_request(service, images):
    """With every server busy the last request waits in the queue; cancelling it finishes it at once."""
    ids = []
    for i in range(7):  # 3 servers x 2 jobs each are busy; the 7th waits
        status, answer = service.call("POST", "/fal-ai/framepack", {"image_url": images["start"], "prompt": "c",
                                                                    "seed": 900 + i, **TINY})
        ids.append(answer["request_id"])
    status, answer = service.call("PUT", f"/fal-ai/framepack/requests/{ids[-1]}/cancel")
    assert (status, answer) == (202, {"status": "CANCELLATION_REQUESTED"})
    state = service.wait_for(lambda: fal_done(service, ids[-1], set()), "the cancel")
    assert state["error"] == "the request was cancelled"
    assert service.call("PUT", f"/fal-ai/framepack/requests/{ids[-1]}/cancel") == (400, {"status":
                                                                                        "ALREADY_COMPLETED"})
    for rid in ids[:-1]:
        service.call("PUT", f"/fal-ai/framepack/requests/{rid}/cancel")
    for rid in ids[:-1]:
        service.wait_for(lambda: fal_done(service, rid, set()), "the other cancels")


def test_a_job_whose_model_no_server_has_is_refused_at_submission(servers, workflow_dir, tmp_path, images):
    live = LiveService([servers[0].url], tmp_path / "data", api_key=KEY, workflow_dir=workflow_dir,
                       model_file="absent_model.safetensors")
    try:
        live.wait_for(lambda: all_answering(live), "the server to answer the service")
        from framepack_service import backend

        listed = live.service.pool.servers[0]  # what a real ComfyUI lists: every file of the tiny workflow is found
        needed = backend.needed_files(str(workflow_dir / "framepack_i2v.json"), None, True)
        # the tiny workflow has test loaders for the text encoders and SigLIP (no files); a real VAE and classifier
        assert {item[0] for item in needed} == {"FramePackModelLoader", "VAELoader", backend.SAFETY_NODE}
        assert all(item[2] in listed.files[item[:2]] for item in needed[1:]) and needed[0][2] in listed.models
        status, answer = live.call("POST", "/fal-ai/framepack", {"image_url": images["start"], "prompt": "p", **TINY})
        assert status == 422 and "absent_model.safetensors (models/diffusion_models)" in answer["detail"][0]["msg"]
        status, answer = live.call("POST", "/api/v3/wavespeed-ai/framepack",
                                   {"image": images["start"], "prompt": "p", **TINY})
        assert status == 400 and "absent_model.safetensors" in answer["message"]
        assert live.service.store.count() == 0 and ComfyClient(servers[0].url).queue()["queue_pending"] == []
    finally:
        live.close()


def test_service_killed_and_restarted_mid_job(servers, workflow_dir, tmp_path, images):
    server = servers[1]
    proc = ServiceProcess(["--comfy", server.url, "--data-dir", str(tmp_path / "data"), "--api-key", KEY,
                           "--workflow-dir", str(workflow_dir), "--jobs-per-server", "1", "--poll-interval", "0.25",
                           "--server-grace", "3"], tmp_path / "service.log", key=KEY).start()
    try:
        status, first = proc.call("POST", "/api/v3/wavespeed-ai/framepack",
                                  {"image": images["start"], "prompt": "restart", "seed": 31, **LONGER})
        assert status == 200, first
        status, second = proc.call("POST", "/api/v3/wavespeed-ai/framepack",
                                   {"image": images["start"], "prompt": "waits", "seed": 32, **TINY})
        first_id, second_id = first["data"]["id"], second["data"]["id"]
        where = proc.wait_for(lambda: (lambda d: d["prompt_id"] and d)(details(proc, first_id)), "the first send",
                              interval=0.05)
        comfy = ComfyClient(server.url)
        proc.wait_for(lambda: any(i[1] == where["prompt_id"] for i in comfy.queue()["queue_running"]),
                      "the first job to run", interval=0.05)
        assert details(proc, second_id)["waiting"]  # one job per server: the second is in the service's queue
        proc.kill()
        proc.start()
        for job_id in (first_id, second_id):
            data = proc.wait_for(lambda: done_prediction(proc, job_id), f"job {job_id} after the restart")
            assert data["status"] == "completed", data["error"] + proc.log_tail()
            assert probe(proc.download(data["outputs"][0]))[0] == 30
        info = details(proc, first_id)
        assert info["attempts"] == 1 and info["prompt_id"] == where["prompt_id"]  # followed, not sent again
        proc.kill()
        proc.start()  # finished results are still served after another restart
        data = done_prediction(proc, first_id)
        assert data["status"] == "completed" and probe(proc.download(data["outputs"][0]))[0] == 30
    finally:
        proc.stop()
