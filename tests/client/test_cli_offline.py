"""Offline: the job store, how server answers become job states (history / queue / lost), the progress display,
and the command line (help, validation before anything is sent, an unreachable server)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from framepack_client import cli, jobs
from framepack_client.errors import ComfyConnectionError
from framepack_client.hosted import HostedParams
from framepack_client.job_states import COMPLETED, FAILED, QUEUED, RUNNING
from framepack_client.jobs import JobError, JobStore, ServerUnreachable, check, new_job, queue_job
from framepack_client.progress import ProgressDisplay, describe_progress
from framepack_client.workflow import build_prompt, find_node, load_workflow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def start_png(tmp_path) -> Path:
    path = tmp_path / "start.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(path)
    return path


def a_job(start_png, seed=-1, server="http://127.0.0.1:1"):
    params = HostedParams.from_mapping({"image": str(start_png), "prompt": "p", "seed": seed})
    job = new_job(server, params)
    job.prompt = build_prompt(params, load_workflow(job.workflow))
    job.prompt_id = job.id
    return job


# -- job store -----------------------------------------------------------------------------------------------------

def test_job_store_round_trip(tmp_path, start_png):
    store = JobStore(tmp_path / "jobs")
    job = a_job(start_png, seed=3)
    store.save(job)
    assert store.path(job.id).is_file()
    assert not list((tmp_path / "jobs").glob("*.tmp")), "writes go through a temp file that is renamed"
    again = store.load(job.id)
    assert again == job
    assert store.load(job.id[:6]) == job  # a unique prefix is enough
    assert [j.id for j in store.list()] == [job.id]
    assert (again.params["image"], again.params["prompt"], again.params["seed"]) == (str(start_png), "p", 3)
    assert "num_frames" not in again.params and "strength" not in again.params  # not given: defaults apply later
    assert again.created_at.endswith("Z") and "T" in again.created_at


def test_job_store_unknown_and_ambiguous_ids(tmp_path, start_png):
    store = JobStore(tmp_path)
    with pytest.raises(JobError, match="no job 'abcd1234'"):
        store.load("abcd1234")
    with pytest.raises(JobError, match="not a job id"):
        store.load("../../etc/passwd")
    one, two = a_job(start_png), a_job(start_png)
    one.id, two.id = "aaaa" + "1" * 28, "aaaa" + "2" * 28
    store.save(one), store.save(two)
    with pytest.raises(JobError, match="matches 2 jobs"):
        store.load("aaaa")


def test_job_files_of_earlier_versions_and_unknown_states(tmp_path, start_png):
    """Earlier versions wrote WaveSpeed's words (created, processing) as a job's state: they are read as the shared
    states; a state no client writes is refused like any other damaged record."""
    store = JobStore(tmp_path)
    job = a_job(start_png)
    record = json.loads(store.save(job).read_text())
    for written, read in (("created", QUEUED), ("processing", RUNNING), ("failed", FAILED)):
        store.path(job.id).write_text(json.dumps({**record, "status": written}))
        assert store.load(job.id).status == read
    store.path(job.id).write_text(json.dumps({**record, "status": "dispatched"}))  # the service's, not a client's
    with pytest.raises(JobError, match="its status 'dispatched' is not one of queued, running, completed, failed"):
        store.load(job.id)


class RecordingServer:
    """What queue_job asks of a ComfyUI server: uploads and a queued prompt."""

    def __init__(self, *args, **kwargs):
        self.uploads, self.prompts = [], []
        self.base_url, self.timeout = "http://127.0.0.1:1", 1.0

    def upload_image(self, data, name, overwrite=False):
        self.uploads.append(name)
        return name

    def queue_prompt(self, prompt, prompt_id=None):
        self.prompts.append(prompt)
        return prompt_id


def test_a_job_is_validated_once_on_its_way_to_the_server(tmp_path, start_png, monkeypatch):
    """from_mapping checks the parameters; queue_job and the workflow (build_prompt) do not check them again, and
    num_frames reaches the sampler as asked (the service's walk: tests/service/test_num_frames_walk.py)."""
    checked = []
    real = HostedParams.problems
    monkeypatch.setattr(HostedParams, "problems", lambda self, *a, **k: checked.append(self.num_frames) or
                        real(self, *a, **k))
    params = HostedParams.from_mapping({"image": str(start_png), "prompt": "p", "num_frames": 61})
    servers = []
    monkeypatch.setattr(jobs, "ComfyClient", lambda *a, **k: servers.append(RecordingServer()) or servers[-1])
    job = queue_job(RecordingServer(), JobStore(tmp_path / "jobs"), params)
    [prompt] = servers[0].prompts
    assert job.status == QUEUED and find_node(prompt, "FramePackSampler")[1]["inputs"]["num_frames"] == 61
    assert len(servers[0].uploads) == 1
    assert checked == [61], "queue_job and build_prompt must not validate the parameters again"


# -- server answers -> job states ------------------------------------------------------------------------------------

class StubServer:
    """Answers /history/<id> and /queue like ComfyUI (shapes from ComfyUI's server.py / execution.py)."""

    def __init__(self, history=None, running=(), pending=(), down=False):
        self.entries, self.running, self.pending, self.down = history or {}, running, pending, down
        self.calls = []

    def history(self, prompt_id):
        self.calls.append("history")
        if self.down:
            raise ComfyConnectionError("GET /history failed: [Errno 111] Connection refused")
        return {prompt_id: self.entries[prompt_id]} if prompt_id in self.entries else {}

    def queue(self):
        self.calls.append("queue")
        return {"queue_running": [[0, p, {}, {}, []] for p in self.running],
                "queue_pending": [[1, p, {}, {}, []] for p in self.pending]}


def history_entry(prompt_id, *, ok=True, sampler_seed=None, video=True, interrupted=False):
    outputs = {}
    if sampler_seed is not None:
        outputs["9"] = {"text": [f"seed: {sampler_seed}\n30 frames"], "framepack": [{"seed": sampler_seed}]}
    if video:
        outputs["10"] = {"images": [{"filename": "clip_00001.mp4", "subfolder": "fp", "type": "output"}],
                         "animated": [True]}
    messages = [["execution_start", {"prompt_id": prompt_id, "timestamp": 1000}]]
    if ok:
        messages.append(["execution_success", {"prompt_id": prompt_id, "timestamp": 3250}])
    elif interrupted:
        messages.append(["execution_interrupted", {"prompt_id": prompt_id, "node_id": "9",
                                                   "node_type": "FramePackSampler", "timestamp": 2000}])
    else:
        messages.append(["execution_error", {
            "prompt_id": prompt_id, "node_id": "1", "node_type": "FramePackModelLoader", "timestamp": 1500,
            "exception_type": "/tmp/x/custom_nodes/comfyui-framepack.framepack_core.errors.CheckpointError",
            "exception_message": "bad.safetensors is truncated; download it again."}])
    return {"outputs": outputs, "status": {"status_str": "success" if ok else "error", "completed": ok,
                                           "messages": messages}}


def test_completed_job_reports_the_samplers_seed_and_timing(start_png):
    job = a_job(start_png, seed=-1)
    check(StubServer({job.id: history_entry(job.id, sampler_seed=1234)}), job)
    assert job.status == COMPLETED and job.error == ""
    assert job.seed == 1234 and job.inference_ms == 2250
    assert job.remote_outputs == [{"filename": "clip_00001.mp4", "subfolder": "fp", "type": "output"}]
    result = job.result()
    assert set(result) >= {"id", "model", "status", "outputs", "seed", "error", "created_at", "timings", "urls"}
    assert result["timings"] == {"inference": 2250} and result["urls"]["get"].endswith(f"/history/{job.id}")


def test_cached_sampler_reports_nothing_so_the_fixed_seed_is_used(start_png):
    job = a_job(start_png, seed=77)
    check(StubServer({job.id: history_entry(job.id, sampler_seed=None)}), job)
    assert job.status == COMPLETED and job.seed == 77
    random_seed = a_job(start_png, seed=-1)
    check(StubServer({random_seed.id: history_entry(random_seed.id, sampler_seed=None)}), random_seed)
    assert random_seed.seed is None  # never invented


def test_execution_error_and_interrupt_become_failed(start_png):
    job = a_job(start_png)
    check(StubServer({job.id: history_entry(job.id, ok=False)}), job)
    assert job.status == FAILED
    assert job.error == ("FramePackModelLoader (node 1) failed: CheckpointError: bad.safetensors is truncated; "
                         "download it again.")
    job = a_job(start_png)
    check(StubServer({job.id: history_entry(job.id, ok=False, interrupted=True)}), job)
    assert job.status == FAILED and job.error.startswith("interrupted in FramePackSampler (node 9)")


def test_finished_without_video_is_failed(start_png):
    job = a_job(start_png)
    check(StubServer({job.id: history_entry(job.id, video=False)}), job)
    assert job.status == FAILED and "FramePackVideoCombine" in job.error


def test_queue_states(start_png):
    job = a_job(start_png)
    check(StubServer(running=[job.id]), job)
    assert job.status == RUNNING and job.result()["status"] == "processing"
    check(StubServer(pending=["other", job.id]), job)
    assert job.status == QUEUED and job.result()["status"] == "created"


def test_prompt_unknown_to_the_server_is_failed_not_waited_for(start_png):
    job = a_job(start_png)
    server = StubServer(running=["someone-else"])
    check(server, job)
    assert job.status == FAILED
    assert "neither in its history nor in its queue" in job.error and "restarted" in job.error
    assert "submit the job again" in job.error
    assert server.calls == ["history", "queue", "history"]  # the history is asked again: no race with the queue


def test_unreachable_server_is_a_clear_error(start_png):
    job = a_job(start_png)
    with pytest.raises(ServerUnreachable, match="cannot reach the ComfyUI server at .*--server"):
        check(StubServer(down=True), job)
    assert job.status == QUEUED  # unknown, not failed: it may still run


def test_finished_jobs_are_not_asked_again(start_png):
    job = a_job(start_png)
    job.status = COMPLETED
    server = StubServer(down=True)
    assert check(server, job) is job and server.calls == []


def test_server_validation_errors_are_named_by_hosted_parameter(start_png):
    from framepack_client.errors import PromptRejected
    from framepack_client.outcome import describe_rejection

    job = a_job(start_png)
    ids = {(n["class_type"], n["_meta"]["title"]): i for i, n in job.prompt.items()}
    sampler, start = ids[("FramePackSampler", "FramePack Sampler")], ids[("FramePackLoadImage", "Start image")]
    # the shape of ComfyUI 0.3.x's 400 answer (execution.validate_inputs)
    node_errors = {
        sampler: {"errors": [{"type": "value_bigger_than_max", "message": "Value 1801 bigger than max of 1800",
                              "details": "num_frames", "extra_info": {"input_name": "num_frames"}},
                             {"type": "value_bigger_than_max", "message": "Value 5.0 bigger than max of 1.0",
                              "details": "cfg_rescale", "extra_info": {"input_name": "cfg_rescale"}}],
                  "dependent_outputs": ["10"], "class_type": "FramePackSampler"},
        start: {"errors": [{"type": "custom_validation_failed", "message": "Invalid image file",
                            "details": "image - Invalid image file: x.png", "extra_info": {"input_name": "image"}}],
                "dependent_outputs": ["10"], "class_type": "FramePackLoadImage"}}
    error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
             "details": "", "extra_info": {}}
    text = describe_rejection(PromptRejected("u", "{}", error, node_errors), job.prompt)
    assert text.startswith("Prompt outputs failed validation; ")
    assert f"num_frames: Value 1801 bigger than max of 1800: num_frames (FramePackSampler node {sampler})" in text
    assert f"FramePackSampler node {sampler}: Value 5.0 bigger than max of 1.0" in text  # not a hosted parameter
    assert f"image: Invalid image file: image - Invalid image file: x.png (FramePackLoadImage node {start})" in text
    missing = {"type": "missing_node_type", "message": "Node 'FramePackSampler' not found", "details": ""}
    assert "is the FramePack node pack installed" in describe_rejection(PromptRejected("u", "{}", missing, {}),
                                                                        job.prompt)


# -- progress ------------------------------------------------------------------------------------------------------

def test_describe_progress_splits_sections_and_steps():
    assert describe_progress(1, 50, 25) == "section 1/2 step 1/25"
    assert describe_progress(25, 50, 25) == "section 1/2 step 25/25"
    assert describe_progress(26, 50, 25) == "section 2/2 step 1/25"
    assert describe_progress(3, 7, None) == "3/7"
    assert describe_progress(3, 7, 4) == "3/7"  # not a multiple: not the sampler's bar


def test_progress_display_lines(start_png):
    job = a_job(start_png)
    graph = job.prompt
    sampler = next(i for i, n in graph.items() if n["class_type"] == "FramePackSampler")
    graph[sampler]["inputs"]["num_inference_steps"] = 4
    out = io.StringIO()
    display = ProgressDisplay(job.id, graph, out, tty=False, min_interval=3600)
    display({"type": "executing", "data": {"node": sampler, "prompt_id": job.id}})
    for value in range(1, 9):
        display({"type": "progress", "data": {"value": value, "max": 8, "node": sampler, "prompt_id": job.id}})
    display({"type": "progress", "data": {"value": 1, "max": 8, "node": sampler, "prompt_id": "another"}})
    lines = out.getvalue().splitlines()
    assert lines[0] == "running FramePackSampler"
    assert display.events == 8
    # non-terminal output: a line when a section starts and when the bar is full, not every step
    assert [ln.split("% ")[1] for ln in lines[1:]] == ["sampling section 1/2 step 1/4",
                                                       "sampling section 2/2 step 1/4",
                                                       "sampling section 2/2 step 4/4"]
    assert lines[-1].startswith("[" + "#" * 24 + "] 100.0%")
    quiet = io.StringIO()
    ProgressDisplay(job.id, graph, quiet, enabled=False)({"type": "executing", "data": {"node": "1",
                                                                                       "prompt_id": job.id}})
    assert quiet.getvalue() == ""


# -- command line --------------------------------------------------------------------------------------------------

def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "framepack_client", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env={**os.environ, **(env or {})}, timeout=60)


def test_help_texts():
    main = run_cli("--help")
    assert main.returncode == 0
    for text in ("run", "submit", "status", "result", "batch", "created|processing|completed|failed",
                 "exit status", "examples"):
        assert text in main.stdout
    run = run_cli("run", "--help")
    assert run.returncode == 0
    for flag in ("--image", "--end-image", "--strength", "--prompt", "--negative-prompt", "--aspect-ratio",
                 "--resolution", "--width", "--height", "--num-frames", "--num-inference-steps", "--steps",
                 "--guidance-scale", "--cfg-scale", "--seed", "--params", "--f1", "--model", "--workflow",
                 "--server", "--output-dir", "--timeout", "--quiet", "--jobs-dir"):
        assert flag in run.stdout, flag
    assert "from 30 to 1800" in run.stdout and "from -1 to 2147483647" in run.stdout
    for command in ("submit", "status", "result", "batch"):
        assert run_cli(command, "--help").returncode == 0
    assert "--wait" in run_cli("result", "--help").stdout
    assert '"summary"' in run_cli("batch", "--help").stdout


def test_invalid_parameters_exit_2_before_contacting_anything(start_png, tmp_path):
    # the server address is a closed port: validation must fail first, with every problem listed
    proc = run_cli("run", "--image", str(start_png), "--prompt", "x" * 600, "--num-frames", "30.5", "--steps", "0",
                   "--strength", "0.5", "--seed", str(2**31), "--server", "http://127.0.0.1:9",
                   "--jobs-dir", str(tmp_path / "jobs"))
    assert proc.returncode == 2, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "failed" and result["id"] is None
    for fragment in ("prompt has 600 characters", "num_inference_steps 0",
                     "num_frames must be a whole number from 30 to 1800, got 30.5; drop the fraction",
                     "strength is only used with end_image", "seed 2147483648"):
        assert fragment in result["error"], fragment
    assert not (tmp_path / "jobs").exists(), "no job is created for invalid parameters"


def test_run_is_the_default_command(tmp_path):
    proc = run_cli("--image", str(tmp_path / "missing.png"), "--prompt", "p", "--server", "http://127.0.0.1:9")
    assert proc.returncode == 2
    assert "does not exist" in json.loads(proc.stdout)["error"]


def test_params_file_and_flag_override(start_png, tmp_path):
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"image_url": "start.png", "prompt": "p", "num_frames": 29}))
    proc = run_cli("run", "--params", str(body), "--server", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "num_frames 29" in json.loads(proc.stdout)["error"]
    args = cli.build_parser().parse_args(["run", "--params", str(body), "--num-frames", "45"])
    params = cli.params_from_args(args)
    assert params.num_frames == 45 and Path(params.image) == start_png  # relative to the params file


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server(start_png, tmp_path):
    url = f"http://127.0.0.1:{free_closed_port()}"
    proc = run_cli("run", "--image", str(start_png), "--prompt", "p", "--server", url, "--jobs-dir",
                   str(tmp_path / "jobs"), "--timeout", "20")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["status"] == "failed"
    assert f"cannot reach the ComfyUI server at {url}" in result["error"] and "--server" in result["error"]


def test_status_of_a_job_whose_server_is_gone(start_png, tmp_path):
    store = JobStore(tmp_path / "jobs")
    job = a_job(start_png, server=f"http://127.0.0.1:{free_closed_port()}")
    store.save(job)
    for command in (["status", job.id], ["result", job.id, "--wait", "2"]):
        proc = run_cli(*command, "--jobs-dir", str(store.root))
        assert proc.returncode == 1, proc.stderr
        result = json.loads(proc.stdout)
        assert result["id"] == job.id and "cannot reach the ComfyUI server" in result["error"]
    unknown = run_cli("status", "0123456789abcdef", "--jobs-dir", str(store.root))
    assert unknown.returncode == 2 and "no job '0123456789abcdef'" in json.loads(unknown.stdout)["error"]


def test_batch_reports_each_line(start_png, tmp_path):
    url = f"http://127.0.0.1:{free_closed_port()}"
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("\n".join([
        "# comment",
        json.dumps({"image": "start.png", "prompt": "p", "num_frames": 1801}),
        "",
        "not json",
        json.dumps({"image": "start.png", "prompt": "p", "f1": "yes"}),
    ]) + "\n")
    proc = run_cli("batch", str(lines), "--server", url, "--jobs-dir", str(tmp_path / "store"), "-q")
    assert proc.returncode == 1
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("line") for r in out[:-1]] == [2, 4, 5]
    assert "num_frames 1801" in out[0]["error"] and "line 2" in out[0]["error"]
    assert "not valid JSON" in out[1]["error"]
    assert "f1 must be true or false" in out[2]["error"]
    assert out[-1]["summary"]["total"] == 3 and out[-1]["summary"]["failed"] == 3


def test_help_names_the_command_as_it_was_called_and_lists_serve(tmp_path):
    """An installed `framepack-video` (pip's script: import main and call it) says `usage: framepack-video` and lists
    serve among its commands; `python -m framepack_client` says that."""
    script = tmp_path / "framepack-video"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom framepack_client.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command, prog in (([str(script), "--help"], "framepack-video"),
                          ([sys.executable, "-m", "framepack_client", "--help"], "python -m framepack_client")):
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: {prog} [-h]"), done.stdout[:200]
        assert "{run,submit,status,result,batch,serve}" in done.stdout
        assert "    serve " in done.stdout and f"{prog} run --image start.png" in done.stdout
        other = "python -m framepack_client" if prog == "framepack-video" else "framepack-video"
        assert other not in done.stdout
