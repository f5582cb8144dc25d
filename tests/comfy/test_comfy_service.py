"""`bash scripts/comfy_env.sh start|stop` through real server starts: the kept ComfyUI starts with the pack linked
into its custom_nodes/, uses --models-dir, answers a client job run from another folder, refuses a port that is
taken, and stops.

The pinned ComfyUI is shared, so each test runs on a copy of it in a cache folder of its own (FRAMEPACK_CACHE),
whose venv is a link to the pinned venv; the servers run with --cpu on free ports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from framepack_dev.comfy_server import STAND_IN_LINK_NAME, STAND_IN_PACK, cache_dir, free_port
from framepack_dev.tiny_models import START_IMAGE, install_tiny_models, tiny_workflow

REPO = Path(__file__).resolve().parents[2]


def _fake_cache(root: Path, comfy: Path | None = None) -> Path:
    """A FRAMEPACK_CACHE with the pinned venv (linked) and a ComfyUI (a copy of the pinned one, or ``comfy``)."""
    pinned = cache_dir()
    if not (pinned / "ComfyUI" / "main.py").is_file() or not (pinned / "venv" / "pyvenv.cfg").is_file():
        pytest.skip(f"start/stop run the pinned ComfyUI and there is none at {pinned}; "
                    "`bash scripts/test.sh` installs it")
    root.mkdir(parents=True)
    (root / "venv").symlink_to(pinned / "venv", target_is_directory=True)
    if comfy is None:
        shutil.copytree(pinned / "ComfyUI", root / "ComfyUI", symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "user", "output", "temp"))
    else:
        (root / "ComfyUI").symlink_to(comfy, target_is_directory=True)
    return root


def _comfy_env(cache: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "FRAMEPACK_CACHE": str(cache)}
    env.pop("COMFYUI_DIR", None)
    return subprocess.run(["bash", str(REPO / "scripts" / "comfy_env.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _answers(url: str) -> dict:
    with urllib.request.urlopen(url + "/system_stats", timeout=10) as response:
        return json.loads(response.read())


def _kill_leftover(cache: Path) -> None:
    """If a test failed between start and stop, the detached server must not outlive it."""
    try:
        pid = json.loads((cache / "comfyui.json").read_text())["pid"]
        os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError, KeyError):
        pass


def test_start_runs_a_job_refuses_a_taken_port_and_stop_stops(tmp_path):
    cache = _fake_cache(tmp_path / "cache")
    comfy = cache / "ComfyUI"
    # tiny weights in a models folder of their own (--models-dir); the stand-in encoders they need as a second pack
    install_tiny_models(tmp_path / "models", comfy / "input")
    (comfy / "custom_nodes" / STAND_IN_LINK_NAME).symlink_to(STAND_IN_PACK, target_is_directory=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        started = _comfy_env(cache, "start", "--port", str(port), "--models-dir", str(tmp_path / "models"), "--cpu")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "Device: cpu (--cpu given)" in started.stdout
        assert f"is running at {url}" in started.stdout
        assert f"log: {cache / 'comfyui.log'}" in started.stdout
        # start returned, so the server already answers; the pack is linked and loaded
        assert _answers(url)["devices"][0]["type"] == "cpu"
        assert (comfy / "custom_nodes" / "comfyui-framepack-suite").resolve() == REPO
        with urllib.request.urlopen(url + "/object_info/FramePackSampler", timeout=30) as response:
            assert "FramePackSampler" in json.loads(response.read())

        # a second start: this cache's own server is named; another cache's start finds the port taken
        again = _comfy_env(cache, "start", "--port", str(port), "--cpu")
        assert again.returncode == 1 and "already running at" in again.stderr, again.stderr
        other = _comfy_env(_fake_cache(tmp_path / "other", comfy), "start", "--port", str(port), "--cpu")
        assert other.returncode == 1, other.stdout + other.stderr
        assert f"port {port} on 127.0.0.1 is already in use by another program" in other.stderr
        assert "Device:" not in other.stdout  # refused before anything started
        assert not (tmp_path / "other" / "comfyui.json").exists()

        # the client from another folder, against the kept server, with the tiny models from --models-dir
        workflow = tmp_path / "tiny.json"
        workflow.write_text(json.dumps(tiny_workflow("framepack_i2v", num_frames=30)))
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        job = subprocess.run(
            [sys.executable, "-m", "framepack_client", "run", "--server", url, "--workflow", str(workflow),
             "--image", str(comfy / "input" / START_IMAGE), "--prompt", "a kept server", "--num-frames", "30",
             "--resolution", "custom", "--width", "64", "--height", "64", "--num-inference-steps", "4",
             "--output-dir", str(elsewhere / "videos")],
            cwd=elsewhere, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
        assert job.returncode == 0, job.stdout + job.stderr
        result = json.loads(job.stdout)
        assert result["status"] == "completed" and Path(result["outputs"][0]).is_file()
        assert Path(result["outputs"][0]).parent == elsewhere / "videos"
    finally:
        stopped = _comfy_env(cache, "stop")
        _kill_leftover(cache)
    assert stopped.returncode == 0 and f"stopped ComfyUI at {url}" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not (cache / "comfyui.json").exists()
    with pytest.raises(OSError):
        _answers(url)
    assert "is running" in _comfy_env(cache, "stop").stdout  # "no ComfyUI started by ... is running"


def test_start_refuses_to_touch_the_users_own_comfyui(tmp_path):
    own = tmp_path / "MyComfyUI"
    (own / "custom_nodes").mkdir(parents=True)
    (own / "main.py").write_text("raise SystemExit('must not run')\n")
    env = {**os.environ, "FRAMEPACK_CACHE": str(tmp_path / "cache"), "COMFYUI_DIR": str(own),
           "COMFYUI_PYTHON": sys.executable}
    (tmp_path / "cache" / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "cache" / "venv" / "bin" / "python").symlink_to(sys.executable)
    done = subprocess.run(["bash", str(REPO / "scripts" / "comfy_env.sh"), "start", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "COMFYUI_DIR is set" in done.stderr and "never touch yours" in done.stderr
    assert list((own / "custom_nodes").iterdir()) == []
