"""Offline: continuing a video (``video``, ``new_only``) and text-to-video (``text_to_video``) from the client: the
checks before anything is sent, the graphs filled from the shipped framepack_extend / framepack_t2v workflows, and
what queue_job sends to a server (a stub on loopback that records the uploads and the queued prompt)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from framepack_client.hosted import HostedParams, ValidationError
from framepack_client.job_states import FAILED, QUEUED
from framepack_client.jobs import JobStore, queue_job
from framepack_client.server_api import ComfyClient
from framepack_client.workflow import (IMAGE_LOADERS, VIDEO_LOADERS, build_prompt, find_node, find_nodes,
                                      load_workflow, model_id, workflow_name)
from framepack_dev.videos import moving_frames, write_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mp4", moving_frames(9, 64, 96), 96, 64, lossless=False)


@pytest.fixture
def start_png(tmp_path) -> Path:
    path = tmp_path / "start.png"
    Image.new("RGB", (48, 32), (200, 30, 30)).save(path)
    return path


def problems(**data) -> list[str]:
    with pytest.raises(ValidationError) as err:
        HostedParams.from_mapping({"prompt": "p", **data})
    return err.value.problems


def shipped_model(name: str) -> str:
    return find_node(load_workflow(name), "FramePackModelLoader")[1]["inputs"]["model"]


# -- the graphs ----------------------------------------------------------------------------------------------------

def test_a_video_fills_the_extend_workflow(clip):
    params = HostedParams.from_mapping({"video": str(clip), "prompt": "she keeps dancing", "num_frames": 60})
    assert workflow_name(params) == workflow_name(params, f1=True) == "framepack_extend"
    assert (model_id(params), model_id(params, True)) == ("framepack/extend", "framepack/f1-extend")
    graph = build_prompt(params, load_workflow("framepack_extend"), video_name="stored.mp4")
    assert find_node(graph, "FramePackLoadVideo", "Input video")[1]["inputs"]["file"] == "stored.mp4"
    cond_id, cond = find_node(graph, "FramePackVideoConditioning")
    loader_id = find_node(graph, "FramePackLoadVideo")[0]
    assert cond["inputs"]["keep_input"] is True and cond["inputs"]["video"] == [loader_id, 0]
    assert cond["inputs"]["aspect_ratio"] == "auto", "a continuation keeps the input's shape by default"
    assert "end_image" not in cond["inputs"] and not find_nodes(graph, IMAGE_LOADERS)
    sampler = find_node(graph, "FramePackSampler")[1]["inputs"]
    assert sampler["num_frames"] == 60 and sampler["conditioning"] == [cond_id, 0]
    assert find_node(graph, "CLIPTextEncode", "Positive prompt")[1]["inputs"]["text"] == "she keeps dancing"


def test_a_users_workflow_with_core_loaders_is_filled_too(clip, start_png):
    """The shipped workflows read their files with the pack's loaders; a user's own workflow with ComfyUI's
    LoadVideo / LoadImage (same titles) is still filled."""
    extend = load_workflow("framepack_extend")
    find_node(extend, "FramePackLoadVideo")[1]["class_type"] = "LoadVideo"
    params = HostedParams.from_mapping({"video": str(clip), "prompt": "p"})
    assert find_node(build_prompt(params, extend, video_name="v.mp4"), "LoadVideo", "Input video")[1]["inputs"] == {
        "file": "v.mp4"}
    i2v = load_workflow("framepack_i2v")
    find_node(i2v, "FramePackLoadImage")[1]["class_type"] = "LoadImage"
    graph = build_prompt(HostedParams.from_mapping({"image": str(start_png), "prompt": "p"}), i2v,
                         start_image_name="s.png")
    assert find_node(graph, "LoadImage", "Start image")[1]["inputs"] == {"image": "s.png"}


def test_new_only_aspect_and_end_image_with_a_video(clip, start_png):
    params = HostedParams.from_mapping({"video": str(clip), "prompt": "p", "new_only": True, "aspect_ratio": "9:16",
                                        "end_image": str(start_png), "strength": 0.5})
    graph = build_prompt(params, load_workflow("framepack_extend"), video_name="v.mp4", end_image_name="e.png")
    _, cond = find_node(graph, "FramePackVideoConditioning")
    assert cond["inputs"]["keep_input"] is False and cond["inputs"]["aspect_ratio"] == "9:16"
    end_id, end = find_node(graph, "FramePackLoadImage", "End image")
    assert end["inputs"]["image"] == "e.png" and cond["inputs"]["end_image"] == [end_id, 0]
    assert cond["inputs"]["strength"] == 0.5
    assert params.frames == 240  # an end image's hosted default, as with a start image


def test_text_to_video_fills_the_t2v_workflow():
    params = HostedParams.from_mapping({"text_to_video": True, "prompt": "waves at dusk", "num_frames": 45})
    assert params.image is None and workflow_name(params) == workflow_name(params, True) == "framepack_t2v"
    assert (model_id(params), model_id(params, True)) == ("framepack/t2v", "framepack/f1-t2v")
    graph = build_prompt(params, load_workflow("framepack_t2v"))
    assert not find_nodes(graph, IMAGE_LOADERS) and not find_nodes(graph, VIDEO_LOADERS)
    _, cond = find_node(graph, "FramePackImageConditioning")
    assert cond["inputs"]["start_kind"] in ("black", "white", "grey", "noise") and "start_image" not in cond["inputs"]
    assert find_node(graph, "FramePackSampler")[1]["inputs"]["num_frames"] == 45


def test_text_to_video_through_an_image_workflow_drops_its_start_image():
    # --workflow framepack_i2v --text-to-video: the start image node goes (with its link) and a blank start is set
    params = HostedParams.from_mapping({"text_to_video": True, "prompt": "p"})
    i2v = load_workflow("framepack_i2v")
    assert find_nodes(i2v, "FramePackLoadImage", "Start image")
    graph = build_prompt(params, i2v)
    assert not find_nodes(graph, IMAGE_LOADERS)
    _, cond = find_node(graph, "FramePackImageConditioning")
    assert cond["inputs"]["start_kind"] == "black" and "start_image" not in cond["inputs"]


# -- checks before anything is sent ----------------------------------------------------------------------------------

def test_image_is_required_unless_video_or_text_to_video(clip):
    assert any(p.startswith("image is required") for p in problems())
    assert any(p.startswith("image is required") for p in problems(text_to_video=False))
    HostedParams.from_mapping({"prompt": "p", "video": str(clip)})
    HostedParams.from_mapping({"prompt": "p", "text_to_video": True})


@pytest.mark.parametrize("data, says", [
    ({"image": "START", "video": "CLIP"}, "image and video are both given"),
    ({"text_to_video": True, "video": "CLIP"}, "text_to_video starts from no picture, but video is given"),
    ({"text_to_video": True, "image": "START"}, "text_to_video starts from no picture, but image is given"),
    ({"text_to_video": True, "new_only": True}, "new_only is only used with video"),
    ({"image": "START", "new_only": True}, "new_only is only used with video"),
    ({"text_to_video": "yes please"}, "text_to_video must be true or false"),
    ({"video": "START"}, "is a PNG image, not a video: to start from it give it as image (--image)"),
    ({"image": "CLIP"}, "is a video (mp4), not an image: to continue it give it as video (--video)"),
    ({"video": "MISSING"}, "does not exist"),
    ({"video": "EMPTY"}, "is empty; give a MP4, MOV, WebM, MKV or AVI video"),
    ({"video": "TEXT"}, "is not a MP4, MOV, WebM, MKV or AVI video; convert it to MP4"),
    ({"video": ""}, "video must be a file path, an http(s) URL or a data: URI of a video"),
])
def test_bad_starts_are_named_with_the_fix(tmp_path, clip, start_png, data, says):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("not a video at all, just text")
    files = {"CLIP": str(clip), "START": str(start_png), "MISSING": str(tmp_path / "gone.mp4"),
             "EMPTY": str(tmp_path / "empty.mp4"), "TEXT": str(tmp_path / "notes.mp4")}
    found = problems(**{k: files.get(v, v) if isinstance(v, str) else v for k, v in data.items()})
    assert any(says in p for p in found), found


def test_video_urls_and_relative_paths(clip, tmp_path, monkeypatch):
    p = HostedParams.from_mapping({"video": "https://example.com/clip.mp4", "prompt": "p"})
    assert p.video == "https://example.com/clip.mp4"
    monkeypatch.chdir(tmp_path.parent)
    p = HostedParams.from_mapping({"video": clip.name, "prompt": "p"}, base_dir=tmp_path)  # a batch line's folder
    assert Path(p.video) == clip


# -- what queue_job sends ------------------------------------------------------------------------------------------

class StubComfy(BaseHTTPRequestHandler):
    """POST /upload/image and /prompt as ComfyUI answers them; records what it got."""
    uploads: list = []
    prompts: list = []
    upload_status = 200

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/upload/image":
            name = re.search(rb'name="image"; filename="([^"]+)"', body).group(1).decode()
            type(self).uploads.append((name, len(body)))
            if self.upload_status != 200:
                return self._reply(self.upload_status, {"error": "too large"})
            return self._reply(200, {"name": "stored_" + name, "subfolder": "", "type": "input"})
        if self.path == "/prompt":
            payload = json.loads(body)
            type(self).prompts.append(payload["prompt"])
            return self._reply(200, {"prompt_id": payload["prompt_id"], "number": 0, "node_errors": {}})
        self._reply(404, {})

    def _reply(self, status, data):
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    StubComfy.uploads, StubComfy.prompts, StubComfy.upload_status = [], [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubComfy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("f1, shipped", [(False, "framepack_i2v"), (True, "framepack_f1")])
def test_queue_job_uploads_the_video_and_queues_the_extension(stub, tmp_path, clip, f1, shipped):
    params = HostedParams.from_mapping({"video": str(clip), "prompt": "p", "new_only": True})
    job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), params, f1=f1)
    assert job.status == QUEUED, job.error
    [(uploaded, _)] = StubComfy.uploads
    assert re.fullmatch(r"framepack_client_[0-9a-f]{16}\.mp4", uploaded), uploaded  # content-named, real suffix
    [graph] = StubComfy.prompts
    assert find_node(graph, "FramePackLoadVideo", "Input video")[1]["inputs"]["file"] == "stored_" + uploaded
    assert find_node(graph, "FramePackVideoConditioning")[1]["inputs"]["keep_input"] is False
    # the extend workflow runs the model of the I2V or F1 workflow, as --f1 says
    assert find_node(graph, "FramePackModelLoader")[1]["inputs"]["model"] == shipped_model(shipped)
    assert job.model == model_id(params, f1)


def test_queue_job_text_to_video_uploads_nothing(stub, tmp_path):
    params = HostedParams.from_mapping({"text_to_video": True, "prompt": "p"})
    job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), params, f1=True)
    assert job.status == QUEUED, job.error
    assert StubComfy.uploads == []
    [graph] = StubComfy.prompts
    assert not find_nodes(graph, IMAGE_LOADERS)
    assert find_node(graph, "FramePackModelLoader")[1]["inputs"]["model"] == shipped_model("framepack_f1")


def test_a_video_the_server_finds_too_large_is_a_clear_failure(stub, tmp_path, clip):
    StubComfy.upload_status = 413
    params = HostedParams.from_mapping({"video": str(clip), "prompt": "p"})
    job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), params)
    assert job.status == FAILED and "--max-upload-size" in job.error
    assert StubComfy.prompts == [], "nothing is queued"


# -- the command line ----------------------------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "framepack_client", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_switches_and_errors(tmp_path, clip, start_png):
    from framepack_client import cli

    args = cli.build_parser().parse_args(["run", "--video", str(clip), "--new-only", "--prompt", "p"])
    params = cli.params_from_args(args)
    assert params.video == str(clip) and params.new_only is True
    args = cli.build_parser().parse_args(["run", "--text-to-video", "--prompt", "p"])
    assert cli.params_from_args(args).text_to_video is True
    assert "--video" in run_cli("run", "--help").stdout and "--text-to-video" in run_cli("run", "--help").stdout

    # the server is a closed port: the checks fail first and no job is created
    for bad, says in ((["--prompt", "p"], "image is required"),
                      (["--video", str(start_png), "--prompt", "p"], "is a PNG image, not a video"),
                      (["--text-to-video", "--image", str(start_png), "--prompt", "p"], "but image is given")):
        proc = run_cli("run", *bad, "--server", "http://127.0.0.1:9", "--jobs-dir", str(tmp_path / "jobs"))
        assert proc.returncode == 2, proc.stderr
        assert says in json.loads(proc.stdout)["error"]
    assert not (tmp_path / "jobs").exists()


# -- a video's source: the image URLs' rules, the video's byte cap ----------------------------------------------------

@pytest.fixture
def web():
    """Loopback GET servers (tests.client.test_client_security.Server), closed after the test."""
    from tests.client.test_client_security import Server

    servers = []
    yield lambda handler: servers.append(Server(handler)) or servers[-1]
    for server in servers:
        server.close()


def serving(data: bytes, seen: list):
    def handle(req):
        seen.append(req.headers.get("Accept"))
        req.send_response(200)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)
    return handle


def uploaded_name(data: bytes, suffix: str) -> str:
    import hashlib

    return f"framepack_client_{hashlib.sha256(data).hexdigest()[:16]}.{suffix}"


def test_a_video_url_is_fetched_under_the_url_policy(stub, web, tmp_path, clip):
    from tests.client.test_client_security import redirect

    from framepack_client.uploads import CLIENT_URL_POLICY, UNTRUSTED_URL_POLICY

    data, seen = clip.read_bytes(), []
    server = web(serving(data, seen))
    params = HostedParams.from_mapping({"video": server.url + "/clip.mp4", "prompt": "p"})
    job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), params, url_policy=CLIENT_URL_POLICY)
    assert job.status == QUEUED, job.error
    assert [name for name, _ in StubComfy.uploads] == [uploaded_name(data, "mp4")] and seen == ["video/*"]

    # the untrusted policy refuses a loopback address before connecting; nothing is uploaded or queued
    StubComfy.uploads, StubComfy.prompts, seen[:] = [], [], []
    job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), params, url_policy=UNTRUSTED_URL_POLICY)
    assert job.status == FAILED and "loopback address" in job.error, job.error
    assert seen == [] and StubComfy.uploads == [] and StubComfy.prompts == []

    # redirects follow the image URLs' rules
    params = HostedParams.from_mapping({"video": web(redirect("ftp://127.0.0.1/c.mp4")).url + "/c.mp4", "prompt": "p"})
    job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), params)
    assert job.status == FAILED and "redirects to a ftp URL" in job.error, job.error
    assert StubComfy.uploads == [] and StubComfy.prompts == []


def test_a_video_over_the_byte_cap_is_refused_before_upload(stub, web, tmp_path, clip, monkeypatch):
    from framepack_client import media, uploads

    data = clip.read_bytes()
    cap = len(data) - 1
    local = HostedParams.from_mapping({"video": str(clip), "prompt": "p"})
    remote = HostedParams.from_mapping({"video": web(serving(data, [])).url + "/clip.mp4", "prompt": "p"})
    inline = HostedParams.from_mapping({"video": "data:video/mp4;base64," + base64.b64encode(data).decode(),
                                        "prompt": "p"})
    with monkeypatch.context() as patch:  # the check before anything is sent
        patch.setitem(media.MAX_BYTES, "video", cap)
        found = problems(video=str(clip))
        assert any(f"the limit is {cap} bytes" in p for p in found), found

    monkeypatch.setattr(uploads, "MAX_VIDEO_BYTES", cap)  # and when it is read for the upload (or fetched)
    for params in (local, remote, inline):
        job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), params)
        assert job.status == FAILED and re.search(f"the limit (is|of) {cap} bytes", job.error), job.error
    assert StubComfy.uploads == [] and StubComfy.prompts == []


def test_a_video_data_uri_is_uploaded_and_an_image_in_one_is_refused(stub, tmp_path, clip, start_png):
    data = clip.read_bytes()
    params = HostedParams.from_mapping({"video": "data:video/mp4;base64," + base64.b64encode(data).decode(),
                                        "prompt": "p"})
    job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), params)
    assert job.status == QUEUED, job.error
    assert [name for name, _ in StubComfy.uploads] == [uploaded_name(data, "mp4")]
    png = "data:image/png;base64," + base64.b64encode(start_png.read_bytes()).decode()
    job = queue_job(ComfyClient(stub), JobStore(tmp_path / "jobs"), HostedParams.from_mapping({"video": png,
                                                                                               "prompt": "p"}))
    assert job.status == FAILED and "is a PNG image, not a video" in job.error, job.error
    assert len(StubComfy.uploads) == 1 and len(StubComfy.prompts) == 1


def test_untrusted_input_may_not_name_a_local_video(tmp_path, clip):
    from framepack_client import cli

    with pytest.raises(ValidationError, match="local file paths are not accepted"):
        HostedParams.from_mapping({"video": str(clip), "prompt": "p"}, local_files=False)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"video": str(clip), "prompt": "p"}))
    code = cli.main(["submit", "--params", str(params), "--untrusted-input", "--jobs-dir", str(tmp_path / "jobs"),
                     "--server", "http://127.0.0.1:9"])
    assert code == cli.EXIT_INVALID and not (tmp_path / "jobs").exists()
    code = cli.main(["submit", "--params", str(params), "--jobs-dir", str(tmp_path / "jobs"),
                     "--server", "http://127.0.0.1:9"])  # the user's own file may: the closed port fails later
    assert code != cli.EXIT_INVALID
