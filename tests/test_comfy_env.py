"""scripts/comfy_env.sh install reads the pinned lock from scripts/requirements.lock, runs pip once per version of
that file, and a re-run with nothing to do calls no pip. Run against a stand-in cache folder whose venv python
records pip calls instead of installing (the real venv is shared and must not change here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _install(cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FRAMEPACK_CACHE": str(cache)}
    env.pop("COMFYUI_DIR", None)
    return subprocess.run(["bash", str(REPO / "scripts" / "comfy_env.sh"), "install"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_install_runs_pip_on_the_lock_file_once(tmp_path):
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    pip_calls = tmp_path / "pip_calls.txt"
    # records pip calls; anything else (the check that the venv imports its packages) succeeds
    python.write_text(f'#!/bin/sh\nif [ "$1 $2" = "-m pip" ]; then echo "$@" >> "{pip_calls}"; fi\nexit 0\n')
    python.chmod(0o755)
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "comfyui_version.py").write_text('__version__ = "0.3.75"\n')

    first = _install(tmp_path)
    assert first.returncode == 0, first.stderr
    pins = sum(1 for line in (REPO / "scripts" / "requirements.lock").read_text().splitlines() if "==" in line)
    assert f"pip install of {pins} pinned packages" in first.stderr
    assert pip_calls.read_text().split() == ["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r",
                                             str(REPO / "scripts" / "requirements.lock")]

    again = _install(tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"venv up to date ({pins} pinned packages)" in again.stderr
    assert len(pip_calls.read_text().splitlines()) == 1  # no second pip run
