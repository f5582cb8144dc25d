"""`pip install .` into a fresh, plain venv (no system site-packages, no torch): the framepack-video command and
`python -m framepack_client` work from another folder, find the shipped API workflows in the installed package
(not in the checkout), refuse bad parameters offline, and run a real job against the test server.

The checkout's files are copied first, so the build's build/ and *.egg-info folders never land in the checkout.
pip fetches setuptools (the build backend) and websocket-client from the package index the machine is set up with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from framepack_dev.tiny_models import START_IMAGE, install_tiny_models, tiny_workflow

REPO = Path(__file__).resolve().parents[2]
NOT_COPIED = shutil.ignore_patterns(".git", "__pycache__", "build", "*.egg-info", "artifacts", "outputs", "bench_out")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pip_install")
    shutil.copytree(REPO, root / "checkout", ignore=NOT_COPIED)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    python = root / "venv" / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                           str(root / "checkout")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    # an environment that cannot see the checkout: no PYTHONPATH, and the current folder is elsewhere
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {"python": python, "bin": root / "venv" / "bin", "cwd": elsewhere, "env": env}


def _run(installed: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=installed["cwd"], env=installed["env"], capture_output=True,
                          text=True, timeout=timeout)


def test_installs_the_client_with_its_workflows_and_without_torch(installed):
    probe = ("import json, framepack_client, framepack_core.limits, websocket\n"
             "from framepack_client.workflow import API_WORKFLOWS_DIR, load_workflow\n"
             "try:\n    import torch\nexcept ImportError:\n    torch = None\n"
             "print(json.dumps({'package': framepack_client.__file__, 'workflows': str(API_WORKFLOWS_DIR),\n"
             "    'torch': torch is not None, 'graphs': {n: load_workflow(n) for n in\n"
             "    ('framepack_i2v', 'framepack_first_last_frame', 'framepack_f1')}}))\n")
    done = _run(installed, installed["python"], "-c", probe)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    venv = installed["python"].parents[1]
    assert Path(found["package"]).is_relative_to(venv) and Path(found["workflows"]).is_relative_to(venv)
    assert found["torch"] is False  # the node pack's dependencies are not pulled in
    for name, graph in found["graphs"].items():  # the package data is the checkout's workflows/api
        assert graph == json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())


def test_help_and_offline_validation_from_another_folder(installed):
    for command, prog in (([installed["bin"] / "framepack-video", "--help"], "framepack-video"),
                          ([installed["python"], "-m", "framepack_client", "--help"], "python -m framepack_client")):
        done = _run(installed, *command)
        assert done.returncode == 0, done.stderr
        assert "run" in done.stdout and "submit" in done.stdout and "--help" in done.stdout
        assert done.stdout.startswith(f"usage: {prog} ") and "{run,submit,status,result,batch,serve}" in done.stdout
    bad = _run(installed, installed["bin"] / "framepack-video", "run", "--server", "http://127.0.0.1:9",
               "--image", "missing.png", "--prompt", "x", "--num-frames", "10")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    result = json.loads(bad.stdout)
    assert result["status"] == "failed"
    assert "image file 'missing.png' does not exist" in result["error"]
    assert "num_frames 10 is out of range; use a value from 30 to 1800" in result["error"]


def test_a_real_job_against_the_test_server(installed, comfy_server, models_dir, input_dir):
    install_tiny_models(models_dir, input_dir)
    workflow = installed["cwd"] / "tiny.json"
    workflow.write_text(json.dumps(tiny_workflow("framepack_i2v", num_frames=30)))
    done = _run(installed, installed["bin"] / "framepack-video", "run", "--server", comfy_server.url,
                "--workflow", workflow, "--image", input_dir / START_IMAGE, "--prompt", "installed with pip",
                "--num-frames", "30", "--resolution", "custom", "--width", "64", "--height", "64",
                "--num-inference-steps", "4", "--seed", "3", "--output-dir", "videos", "--quiet", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["seed"] == 3
    video = Path(result["outputs"][0])
    assert video.parent == installed["cwd"] / "videos" and video.stat().st_size > 0
