"""Start and stop a REAL ComfyUI server (for the tests and scripts/demo.py) in a throw-away base directory.

The server runs ``main.py`` (with ``--cpu`` unless told otherwise) on a free loopback port with ``--base-directory`` pointing at a temp
folder laid out like a ComfyUI install (models/..., input/, output/, temp/, user/, custom_nodes/).
custom_nodes/ holds symlinks to this repository (as "comfyui-framepack", the pack under test) and to
framepack_dev/stand_in_nodes (as "framepack_stand_in_nodes"), and nothing else, so a user's own packs never
interfere.

Which ComfyUI: ``COMFYUI_DIR`` + ``COMFYUI_PYTHON`` when set (the user's own install), otherwise the
pinned copy that ``scripts/comfy_env.sh install`` made under ``$FRAMEPACK_CACHE`` (default
``~/.cache/framepack-comfy``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when used, so that finding out whether a ComfyUI is installed needs nothing else
    from framepack_client.server_api import ComfyClient

REPO_ROOT = Path(__file__).resolve().parents[1]
# The stand-in encoders (and the tests' probe nodes) for runs on tiny weights: the tests and the demo's smoke run.
STAND_IN_PACK = REPO_ROOT / "framepack_dev" / "stand_in_nodes"
PACK_LINK_NAME = "comfyui-framepack"
STAND_IN_LINK_NAME = "framepack_stand_in_nodes"
MODEL_FOLDERS = ("diffusion_models", "vae", "loras", "clip_vision", "text_encoders")
BASE_ARGS = ("--disable-auto-launch", "--disable-api-nodes")
CPU_ARGS = ("--cpu",)

# ComfyUI logs "  0.1 seconds (IMPORT FAILED): /path/custom_nodes/<name>" for every pack that failed.
_IMPORT_FAILED = re.compile(r"\(IMPORT FAILED\):\s*(?P<path>.+?)\s*$", re.MULTILINE)


class ComfyNotInstalled(RuntimeError):
    """Neither COMFYUI_DIR/COMFYUI_PYTHON nor the pinned install from scripts/comfy_env.sh is usable."""


class ComfyStartError(RuntimeError):
    """The server died or did not answer in time; the message ends with the log tail."""


@dataclass(frozen=True)
class ComfyInstall:
    comfy_dir: Path
    python: Path
    source: str  # "COMFYUI_DIR" or "pinned"


def cache_dir() -> Path:
    return Path(os.environ.get("FRAMEPACK_CACHE", Path.home() / ".cache" / "framepack-comfy"))


def locate_comfyui() -> ComfyInstall:
    """The ComfyUI the tests use: the user's (COMFYUI_DIR + COMFYUI_PYTHON) or the pinned one."""
    if os.environ.get("COMFYUI_DIR"):
        comfy_dir = Path(os.environ["COMFYUI_DIR"]).expanduser()
        python = os.environ.get("COMFYUI_PYTHON")
        if not python:
            raise ComfyNotInstalled("COMFYUI_DIR is set but COMFYUI_PYTHON is not: set it to the interpreter "
                                    "that runs that ComfyUI")
        install = ComfyInstall(comfy_dir, Path(python).expanduser(), "COMFYUI_DIR")
    else:
        install = ComfyInstall(cache_dir() / "ComfyUI", cache_dir() / "venv" / "bin" / "python", "pinned")
    if not (install.comfy_dir / "main.py").is_file():
        raise ComfyNotInstalled(f"no ComfyUI at {install.comfy_dir} (main.py missing): run "
                                "`bash scripts/comfy_env.sh install`, or set COMFYUI_DIR and COMFYUI_PYTHON")
    if not (shutil.which(str(install.python)) or install.python.is_file()):
        raise ComfyNotInstalled(f"ComfyUI interpreter {install.python} not found: run "
                                "`bash scripts/comfy_env.sh install`, or set COMFYUI_PYTHON")
    return install


def database_args(user_dir: Path) -> tuple[str, ...]:
    """ComfyUI's SQLite database as a file in this server's own user/ folder. ComfyUI's default is a file inside
    the ComfyUI folder, which servers sharing that folder would share; an in-memory database instead fails in
    ComfyUI's other threads (sqlite3.ProgrammingError tracebacks in the log)."""
    return ("--database-url", f"sqlite:///{Path(user_dir).resolve() / 'comfyui.db'}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies, so no server outlives a killed pytest."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # non-Linux: the atexit/fixture teardown still stops it
        pass


class ComfyServer:
    """One ComfyUI server process over one base directory.

    ``base_dir``: where models/, input/, output/... live (a new temp dir, removed by :meth:`cleanup`,
    if None). ``extra_args``: appended to main.py's arguments (e.g. ``["--cache-none"]``).
    ``node_packs``: custom_nodes/ entries as {link name: target folder}; defaults to this repo and the
    stand-in pack. ``device_args``: main.py's device arguments, ``--cpu`` by default (the tests); the demo passes
    framepack_dev.device's choice. Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, base_dir: str | Path | None = None, extra_args: list[str] | tuple[str, ...] = (),
                 node_packs: dict[str, Path] | None = None, install: ComfyInstall | None = None,
                 start_timeout: float = 180.0, device_args: tuple[str, ...] | list[str] = CPU_ARGS):
        self.install = install or locate_comfyui()
        self._owns_base_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="framepack-comfy-"))
        self.extra_args = list(extra_args)
        self.device_args = list(device_args)
        self.node_packs = dict(node_packs) if node_packs is not None else {
            PACK_LINK_NAME: REPO_ROOT, STAND_IN_LINK_NAME: STAND_IN_PACK}
        self.start_timeout = start_timeout
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = self.base_dir / "comfyui.log"
        self._log_offset = 0
        self.startup_seconds: float | None = None
        self._prepare_base_dir()

    # -- layout

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def temp_dir(self) -> Path:
        return self.base_dir / "temp"

    @property
    def user_dir(self) -> Path:
        return self.base_dir / "user"

    @property
    def custom_nodes_dir(self) -> Path:
        return self.base_dir / "custom_nodes"

    def _prepare_base_dir(self) -> None:
        for folder in MODEL_FOLDERS:
            (self.models_dir / folder).mkdir(parents=True, exist_ok=True)
        # user/default/workflows: the frontend lists it on load (a 404 in the browser console otherwise)
        for folder in (self.input_dir, self.output_dir, self.temp_dir, self.user_dir / "default" / "workflows",
                       self.custom_nodes_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for name, target in self.node_packs.items():
            link = self.custom_nodes_dir / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(Path(target).resolve(), target_is_directory=True)

    # -- process

    def command(self) -> list[str]:
        return [str(self.install.python), "main.py", "--listen", "127.0.0.1", "--port", str(self.port),
                "--base-directory", str(self.base_dir), *database_args(self.user_dir), *BASE_ARGS,
                *self.device_args, *self.extra_args]

    def start(self) -> "ComfyServer":
        """Start the server and wait until ``/system_stats`` answers; raise ComfyStartError otherwise."""
        if self.is_running():
            return self
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", DO_NOT_TRACK="1")
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.install.comfy_dir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        deadline = started + self.start_timeout
        while not self._answers():
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise ComfyStartError(f"ComfyUI exited with code {code} during start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ComfyStartError(f"ComfyUI did not answer within {self.start_timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - started
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_seconds: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if still alive after ``grace_seconds``. Safe to call when stopped."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)

    def restart(self) -> "ComfyServer":
        """Stop and start again on the same port and base directory (models and outputs are kept)."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop, and remove the base directory if this object created it."""
        self.stop()
        if self._owns_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.cleanup()

    # -- observation

    def client(self, client_id: str | None = None) -> "ComfyClient":
        from framepack_client.server_api import ComfyClient

        return ComfyClient(self.url, client_id=client_id)

    def log_text(self, whole: bool = False) -> str:
        """The server's log (stdout + stderr) since the latest start, or of all starts if ``whole``."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            if not whole:
                log.seek(self._log_offset)
            return log.read().decode("utf-8", "replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def import_failures(self) -> list[str]:
        """Names of custom_nodes entries that ComfyUI reported as IMPORT FAILED since the latest start."""
        return [Path(m.group("path")).name for m in _IMPORT_FAILED.finditer(self.log_text())]
