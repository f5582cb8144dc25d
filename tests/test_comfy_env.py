"""scripts/comfy_env.sh install reads the pinned lock from scripts/requirements.lock, runs pip once per version of
that file, and a re-run with nothing to do calls no pip; start links the pack into the pinned ComfyUI only when the
link is this checkout's (or --relink says so). Run against a stand-in cache folder whose venv python records pip
calls instead of installing, or is this interpreter (the real venv is shared and must not change here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


# -- the pinned ComfyUI's pack link (scripts/comfy_service.py) -------------------------------------------------------

def _pinned_cache(tmp_path: Path) -> Path:
    """A stand-in pinned install: ComfyUI/main.py, and a venv python that is this interpreter (no real install)."""
    (tmp_path / "ComfyUI" / "custom_nodes").mkdir(parents=True)
    (tmp_path / "ComfyUI" / "main.py").write_text("raise SystemExit('the stand-in ComfyUI must not be started')\n")
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return tmp_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_refuses_a_pack_link_to_another_checkout(tmp_path):
    cache = _pinned_cache(tmp_path / "cache")
    other = tmp_path / "other-checkout"
    other.mkdir()
    link = cache / "ComfyUI" / "custom_nodes" / "comfyui-framepack-suite"
    link.symlink_to(other, target_is_directory=True)
    env = {**os.environ, "FRAMEPACK_CACHE": str(cache)}
    env.pop("COMFYUI_DIR", None)
    done = subprocess.run(["bash", str(REPO / "scripts" / "comfy_env.sh"), "start", "--port", str(_free_port())],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"links to another checkout, {other}, not to this one ({REPO})" in done.stderr
    assert "--relink" in done.stderr
    assert link.resolve() == other  # left as it was
    assert not (cache / "comfyui.json").exists() and not (cache / "comfyui.log").exists()  # nothing was started


def test_the_pack_link_follows_only_this_checkout_or_a_relink(tmp_path, capsys):
    from scripts.comfy_service import LinkedElsewhere, link_pack

    comfy = _pinned_cache(tmp_path) / "ComfyUI"
    link = comfy / "custom_nodes" / "comfyui-framepack-suite"
    assert link_pack(comfy) == link and link.resolve() == REPO  # made
    assert link_pack(comfy) == link and link.resolve() == REPO  # kept
    other = tmp_path / "other-checkout"
    other.mkdir()
    link.unlink()
    link.symlink_to(other, target_is_directory=True)
    with pytest.raises(LinkedElsewhere, match="links to another checkout"):
        link_pack(comfy)
    assert link.resolve() == other
    capsys.readouterr()
    link_pack(comfy, relink=True)
    assert link.resolve() == REPO and f"it linked to {other}, now to this checkout" in capsys.readouterr().err
    link.unlink()
    link.symlink_to(tmp_path / "deleted-checkout", target_is_directory=True)  # a checkout that is gone
    link_pack(comfy)
    assert link.resolve() == REPO and "which no longer exists" in capsys.readouterr().err
    link.unlink()
    link.mkdir()  # a copy the user put there
    link_pack(comfy, relink=True)
    assert link.is_dir() and not link.is_symlink()
