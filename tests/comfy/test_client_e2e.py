"""The API client (python -m framepack_client) against the real test server on tiny weights: exact frame counts
at 30 fps and the requested size, the hosted-style JSON result, the seed used, progress, submit/status/result in
separate processes, and a batch with a bad line in the middle.

The helpers at the top are shared with test_reliability.py."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from framepack_client import cli
from framepack_dev.tiny_models import END_IMAGE, START_IMAGE, TINY_F1, TINY_I2V, install_tiny_models, tiny_workflow

REPO = Path(__file__).resolve().parents[2]
TINY_WORKFLOWS = ("framepack_i2v", "framepack_first_last_frame", "framepack_f1")


# -- shared helpers -----------------------------------------------------------------------------------------------

def write_tiny_workflows(folder: Path) -> dict[str, Path]:
    """The shipped API workflows rewritten for the tiny weights and stand-in encoders, as files for --workflow.
    The client still fills model (--model), images, prompts, size and sampler settings itself."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in TINY_WORKFLOWS:
        paths[name] = folder / f"tiny_{name}.json"
        paths[name].write_text(json.dumps(tiny_workflow(name)))
    return paths


def tiny_args(workflow: Path, *, frames: int = 30, width: int = 64, height: int = 64, steps: int = 4,
              seed: int = 1, f1: bool = False) -> list[str]:
    return ["--workflow", str(workflow), "--model", TINY_F1 if f1 else TINY_I2V, "--resolution", "custom",
            "--width", str(width), "--height", str(height), "--num-frames", str(frames), "--steps", str(steps),
            "--seed", str(seed)] + (["--f1"] if f1 else [])


def cli_in_process(*argv: str) -> tuple[int, str, str]:
    """python -m framepack_client in this process (same code path, no interpreter start-up)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def cli_process(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "framepack_client", *argv], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def probe(path: str | Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {"frames": frames, "fps": float(stream.average_rate), "width": stream.codec_context.width,
                "height": stream.codec_context.height}


def decoded_frames(path: str | Path) -> list[bytes]:
    """Each decoded picture's bytes in the file's own pixel format (yuv420p): what the file holds, with no RGB
    conversion of the test's own in between."""
    with av.open(str(path)) as container:
        return [f.to_ndarray().tobytes() for f in container.decode(video=0)]


# -- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(models_dir, input_dir, tmp_path_factory):
    install_tiny_models(models_dir, input_dir)
    folder = tmp_path_factory.mktemp("client")
    return {"workflows": write_tiny_workflows(folder), "start": input_dir / START_IMAGE, "end": input_dir / END_IMAGE,
            "folder": folder}


@pytest.fixture
def dirs(tmp_path):
    return ["--jobs-dir", str(tmp_path / "jobs"), "--output-dir", str(tmp_path / "out")]


# -- tests --------------------------------------------------------------------------------------------------------

def test_run_writes_the_exact_video_and_the_hosted_result(comfy_server, tiny, dirs, tmp_path):
    proc = cli_process("run", "--server", comfy_server.url, *dirs, "--image", str(tiny["start"]),
                       "--prompt", "a cat walks", *tiny_args(tiny["workflows"]["framepack_i2v"], frames=46, width=80,
                                                             height=64, seed=123))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert set(result) >= {"id", "model", "status", "outputs", "seed", "error", "created_at", "timings", "urls"}
    assert (result["status"], result["model"], result["error"], result["seed"]) == \
        ("completed", "framepack/i2v", "", 123)
    assert result["created_at"].endswith("Z")
    assert isinstance(result["timings"]["inference"], int) and result["timings"]["inference"] > 0
    assert result["urls"]["get"] == f"{comfy_server.url}/history/{result['prompt_id']}"
    (video,) = result["outputs"]
    assert Path(video).parent == tmp_path / "out" and Path(video).name == f"{result['id']}.mp4"
    assert probe(video) == {"frames": 46, "fps": 30.0, "width": 80, "height": 64}
    # progress on stderr: 46 frames = 2 sections of 6 latents (the sampler logs the plan), 4 steps each
    assert "sampling section 1/2 step 1/4" in proc.stderr and "sampling section 2/2 step 4/4" in proc.stderr
    assert "100.0% decoding" in proc.stderr
    assert (tmp_path / "jobs" / f"{result['id']}.json").is_file()


def test_random_seed_is_reported_as_the_seed_used(comfy, comfy_server, tiny, dirs):
    code, out, err = cli_in_process("run", "--server", comfy_server.url, *dirs, "--quiet", "--image",
                                    str(tiny["start"]), "--prompt", "random seed",
                                    *tiny_args(tiny["workflows"]["framepack_i2v"], seed=-1))
    assert code == 0, out + err
    result = json.loads(out)
    assert isinstance(result["seed"], int) and 0 <= result["seed"] < 2**31
    entry = comfy.history(result["prompt_id"])[result["prompt_id"]]
    sampler = next(i for i, n in entry["prompt"][2].items() if n["class_type"] == "FramePackSampler")
    assert entry["prompt"][2][sampler]["inputs"]["seed"] == -1  # what was sent
    assert entry["outputs"][sampler]["framepack"][0]["seed"] == result["seed"]  # what the sampler used
    assert err == ""  # --quiet


def test_progress_events_reach_the_client(comfy_server, tiny, tmp_path):
    """Library level: the websocket events of a 2-section job arrive in order while it runs."""
    from framepack_client.server_api import ComfyClient
    from framepack_client.hosted import HostedParams
    from framepack_client.jobs import JobStore, fetch_outputs, follow, queue_job

    store, seen, streams = JobStore(tmp_path / "jobs"), [], []
    params = HostedParams.from_mapping({"image": str(tiny["start"]), "prompt": "progress", "num_frames": 61,
                                        "num_inference_steps": 5, "seed": 4, "resolution": "custom",
                                        "width": 64, "height": 64})
    job = queue_job(ComfyClient(comfy_server.url), store, params, workflow=str(tiny["workflows"]["framepack_i2v"]),
                    model_file=TINY_I2V, before_queue=lambda j: streams.append(
                        ComfyClient(j.server, client_id=j.client_id).open_events()))
    assert job.status == "queued" and job.result()["status"] == "created", job.error
    follow(job, store, timeout=300, on_message=seen.append, events=streams[0])
    streams[0].close()
    assert job.status == "completed", job.error
    sampler = next(i for i, n in job.prompt.items() if n["class_type"] == "FramePackSampler")
    values = [m["data"]["value"] for m in seen if m["type"] == "progress" and m["data"]["node"] == sampler]
    sections = comfy_history_sections(job)
    assert sections >= 2
    assert values == list(range(1, sections * 5 + 1))
    assert job.progress_events >= len(values)
    fetch_outputs(ComfyClient(job.server), job, store, tmp_path / "out")
    assert probe(job.outputs[0])["frames"] == 61


def comfy_history_sections(job) -> int:
    """The section count the sampler reported for this job (its plan), read from /history."""
    from framepack_client.server_api import ComfyClient
    entry = ComfyClient(job.server).history(job.prompt_id)[job.prompt_id]
    sampler = next(i for i, n in job.prompt.items() if n["class_type"] == "FramePackSampler")
    return entry["outputs"][sampler]["framepack"][0]["sections"]


def test_first_last_frame_and_f1_through_the_client(comfy_server, tiny, dirs):
    code, out, err = cli_in_process("run", "--server", comfy_server.url, *dirs, "-q", "--image", str(tiny["start"]),
                                    "--end-image", str(tiny["end"]), "--strength", "0.9", "--prompt", "flf",
                                    *tiny_args(tiny["workflows"]["framepack_first_last_frame"], frames=37, seed=5))
    result = json.loads(out)
    assert code == 0 and result["status"] == "completed", result["error"]
    assert result["model"] == "framepack/flf2v" and result["seed"] == 5
    assert probe(result["outputs"][0]) == {"frames": 37, "fps": 30.0, "width": 64, "height": 64}

    code, out, err = cli_in_process("run", "--server", comfy_server.url, *dirs, "-q", "--image", str(tiny["start"]),
                                    "--prompt", "f1", *tiny_args(tiny["workflows"]["framepack_f1"], frames=45,
                                                                 width=96, seed=6, f1=True))
    result = json.loads(out)
    assert code == 0 and result["status"] == "completed", result["error"]
    assert result["model"] == "framepack/f1"
    assert probe(result["outputs"][0]) == {"frames": 45, "fps": 30.0, "width": 96, "height": 64}


def test_submit_status_result_in_separate_processes(comfy_server, tiny, dirs, tmp_path):
    started = time.monotonic()
    submit = cli_process("submit", "--server", comfy_server.url, *dirs, "--image", str(tiny["start"]),
                         "--prompt", "later", *tiny_args(tiny["workflows"]["framepack_i2v"], frames=240, seed=77))
    submit_seconds = time.monotonic() - started
    assert submit.returncode == 0, submit.stderr
    created = json.loads(submit.stdout)
    assert created["status"] == "created" and created["outputs"] == [] and created["error"] == ""
    job_id = created["id"]

    status = cli_process("status", job_id, "--jobs-dir", dirs[1])
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] in ("created", "processing", "completed")

    result = cli_process("result", job_id, "--wait", "240", "--jobs-dir", dirs[1], "--quiet")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert final["status"] == "completed" and final["seed"] == 77 and final["id"] == job_id
    assert Path(final["outputs"][0]).parent == tmp_path / "out"  # submit's --output-dir is remembered
    assert probe(final["outputs"][0])["frames"] == 240
    assert submit_seconds * 1000 < final["timings"]["inference"] + 5000  # submit did not wait for the job
    again = cli_process("status", job_id[:8], "--jobs-dir", dirs[1])
    assert json.loads(again.stdout)["status"] == "completed"


def test_batch_runs_every_line_and_reports_the_bad_one(comfy_server, tiny, dirs, tmp_path):
    common = {"image": START_IMAGE, "prompt": "batch", "resolution": "custom", "width": 64, "height": 64,
              "num_inference_steps": 4}
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(line) for line in (
        {**common, "num_frames": 30, "seed": 1},
        {**common, "num_frames": 29, "seed": 2},  # invalid: below the hosted minimum
        {**common, "num_frames": 33, "seed": 3},
    )) + "\n")
    # images are named relative to the batch file's folder
    (tmp_path / START_IMAGE).write_bytes(tiny["start"].read_bytes())
    proc = cli_process("batch", str(jobs), "--server", comfy_server.url, *dirs, "--workflow",
                       str(tiny["workflows"]["framepack_i2v"]), "--model", TINY_I2V)
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 4
    first, bad, third, summary = lines
    assert [first["line"], bad["line"], third["line"]] == [1, 2, 3]
    assert first["status"] == third["status"] == "completed"
    assert bad["status"] == "failed" and "num_frames 29" in bad["error"] and "line 2" in bad["error"]
    assert probe(first["outputs"][0])["frames"] == 30 and probe(third["outputs"][0])["frames"] == 33
    assert (first["seed"], third["seed"]) == (1, 3)
    assert summary == {"summary": {**summary["summary"], "total": 3, "completed": 2, "failed": 1, "unfinished": 0}}
    assert "[1/3]" in proc.stderr and "[3/3]" in proc.stderr


def test_uploading_an_image_again_leaves_the_stored_file_alone(comfy_server, input_dir, tmp_path):
    """A queued or running job may be reading the uploaded file: a second upload of the same image must not
    rewrite it (rewriting truncates it first, and LoadImage then fails on a half-written PNG)."""
    from PIL import Image

    from framepack_client.server_api import ComfyClient
    from framepack_client.uploads import upload_image

    source = tmp_path / "again.png"
    Image.new("RGB", (16, 8), (10, 200, 30)).save(source)
    client = ComfyClient(comfy_server.url)
    name = upload_image(client, str(source))
    stored = input_dir / name
    before = stored.stat()
    assert upload_image(client, str(source)) == name
    after = stored.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)

    # a different file under that name is kept; the new image gets a name of its own, and LoadImage gets that one
    stored.write_bytes(b"not the same picture")
    renamed = upload_image(client, str(source))
    assert renamed != name and (input_dir / renamed).read_bytes() == source.read_bytes()
    assert stored.read_bytes() == b"not the same picture"


def test_a_server_without_the_weights_gets_one_list_of_the_missing_files(comfy_server, models_dir, tmp_path, dirs):
    """The shipped workflow names the real weights, which the test server does not have: one list of the five
    files, each with the server's own folder for it and where to download it, instead of ComfyUI's raw errors."""
    from PIL import Image

    from framepack_client.model_files import MODEL_SOURCES

    Image.new("RGB", (32, 32), (9, 9, 9)).save(tmp_path / "start.png")
    code, out, err = cli_in_process("run", "--server", comfy_server.url, *dirs, "--quiet", "--image",
                                    str(tmp_path / "start.png"), "--prompt", "no weights")
    assert code == 1, out + err
    error = json.loads(out)["error"]
    lines = error.splitlines()
    assert lines[0].startswith("the ComfyUI server lacks 5 model files"), error
    for folder, name in (("diffusion_models", "FramePackI2V_HY_bf16.safetensors"),
                         ("text_encoders", "llava_llama3_fp16.safetensors"), ("text_encoders", "clip_l.safetensors"),
                         ("vae", "hunyuan_video_vae_bf16.safetensors"),
                         ("clip_vision", "sigclip_vision_patch14_384.safetensors")):
        assert f"  - {name} -> {models_dir / folder}/" in lines, error
        assert f"  {folder}/: {MODEL_SOURCES[folder]}" in lines
    assert error.count(" -> ") == 5 and "also:" not in error
    assert "Value not in list" not in error and "not in [" not in error and "Custom validation" not in error


def test_bad_videos_are_refused_before_anything_reaches_the_server(comfy, comfy_server, input_dir, tmp_path, dirs):
    """A video cut short, a single frame and an audio-only file: exit 2, named as the user gave them, and the server
    gets no upload and no prompt."""
    from tests.client.test_video_probe import audio_only
    from framepack_dev.videos import moving_frames, write_video

    good = write_video(tmp_path / "good.mp4", moving_frames(12, 32, 32), 32, 32, lossless=False)
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    bad = {"cut.mp4": "is not a readable video", "voice.m4a": "has no video stream",
           "one.mp4": "has 1 frame; a video to continue needs at least 5"}
    audio_only(tmp_path / "voice.m4a")
    write_video(tmp_path / "one.mp4", moving_frames(1, 32, 32), 32, 32, lossless=False)
    uploads_before, history_before = sorted(p.name for p in input_dir.iterdir()), comfy.history()
    for name, says in bad.items():
        code, out, err = cli_in_process("run", "--server", comfy_server.url, *dirs, "--quiet", "--video",
                                        str(tmp_path / name), "--prompt", "bad video")
        error = json.loads(out)["error"]
        assert code == 2 and f"video file {str(tmp_path / name)!r} {says}" in error, out + err
    assert sorted(p.name for p in input_dir.iterdir()) == uploads_before
    assert comfy.history() == history_before and comfy.queue()["queue_pending"] == []


def test_one_seed_twice_gives_the_same_mp4_bytes(comfy, comfy_server, tiny, dirs):
    """The MP4 carries the prompt (ComfyUI's "prompt" tag, to restore the graph from the file): nothing per job may
    be in it, so two runs of one seed give identical files. The server's caches are emptied between the runs, so the
    second video is really decoded and written again (a different file on the server), not the first one reused."""
    from framepack_dev.tiny_models import START_IMAGE

    # ComfyUI resets its caches when its worker next looks at its flags: after the prompt it is running or, idle,
    # at once. A small prompt run to its end after /free makes sure that happened before the job is queued.
    flush = {"1": {"class_type": "LoadImage", "inputs": {"image": START_IMAGE}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    results = []
    for _ in range(2):
        comfy.free(unload_models=False, free_memory=True)
        assert comfy.run(flush, timeout=120).ok
        code, out, err = cli_in_process("run", "--server", comfy_server.url, *dirs, "--quiet", "--image",
                                        str(tiny["start"]), "--prompt", "same seed",
                                        *tiny_args(tiny["workflows"]["framepack_i2v"], seed=77))
        assert code == 0, out + err
        results.append(json.loads(out))
    entries = [comfy.history(r["prompt_id"])[r["prompt_id"]] for r in results]
    combine = next(i for i, n in entries[1]["prompt"][2].items() if n["class_type"] == "FramePackVideoCombine")
    for entry in entries:
        cached = [set(d.get("nodes", [])) for kind, d in entry["status"]["messages"] if kind == "execution_cached"]
        assert not any(combine in nodes for nodes in cached), "the video must be written again, not reused"
    served = [entry["outputs"][combine]["images"][0]["filename"] for entry in entries]
    assert served[0] != served[1]
    first, second = (Path(r["outputs"][0]).read_bytes() for r in results)
    assert first == second
    with av.open(results[0]["outputs"][0]) as container:  # the prompt is in the file, with no job's name in it
        embedded = container.metadata["prompt"]
    assert '"FramePackVideoCombine"' in embedded and results[0]["id"][:12] not in embedded
