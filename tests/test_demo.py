"""scripts/demo.py's closing hints: the client command it prints works when pasted into a shell (this environment's
python, from any folder: a plain `python` lacks websocket-client), quoted; its list of missing weights is the client's
(framepack_client.model_files: one table of folders and downloads)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from framepack_client.model_files import MODEL_SOURCES, MissingModel
from scripts import demo


def test_the_printed_client_command_runs_when_pasted_from_another_folder(tmp_path):
    """In the user's own folder, so a relative --image stays theirs."""
    command = demo.client_command("--help")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, command + "\n" + done.stderr
    assert "usage: python -m framepack_client" in done.stdout and "serve" in done.stdout


def test_every_part_of_the_command_is_quoted():
    python = "/opt/my envs/bin/python's"
    words = shlex.split(demo.client_command("run", "--prompt", "a cat; rm -rf ~", python=python))
    assert words == [f"PYTHONPATH={demo.REPO}", python, "-m", "framepack_client", "run", "--prompt",
                     "a cat; rm -rf ~"]
    assert demo.client_command(python=sys.executable).split(" ", 1)[1].startswith(shlex.quote(sys.executable))


def test_missing_weights_are_named_with_the_clients_table(tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "hunyuan_video_vae_bf16.safetensors").write_bytes(b"x")
    chosen, missing = demo.find_models(tmp_path, f1=False)
    assert chosen == {} and MissingModel("vae", "hunyuan_video_vae_bf16.safetensors") not in missing
    assert {m.folder for m in missing} == {"diffusion_models", "text_encoders", "clip_vision"}
    assert all(m.folder in MODEL_SOURCES for m in missing)
    assert "huggingface.co" not in Path(demo.__file__).read_text()  # the table is written once, in the client
