"""The ComfyUI the user keeps: the pinned ComfyUI that scripts/comfy_env.sh installed, with this pack linked into
its custom_nodes/, started in the background and stopped again.

    bash scripts/comfy_env.sh start [--port 8188] [--listen 127.0.0.1] [--models-dir DIR] [--cpu] [--relink]
    bash scripts/comfy_env.sh stop

``start`` links the pack, picks the device (framepack_dev.device: the GPU when ComfyUI's torch sees one), starts
ComfyUI detached from this shell, waits until it answers, prints its URL and log, and records it in
``$FRAMEPACK_CACHE/comfyui.json`` for ``stop``. A port that another program listens on is refused before anything
starts, and so is a pack link that points at another checkout (the ComfyUI would serve that checkout's code):
``--relink`` points it at this one. ``--models-dir`` adds a models folder through an extra_model_paths file
(searched before ComfyUI's own ``models/``). A user's own ComfyUI (``COMFYUI_DIR``) is never started or changed
here.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framepack_dev.device import choose_device, probe_torch_cuda  # noqa: E402

PACK_DIR_NAME = "comfyui-framepack-suite"  # the folder name the README's `git clone` uses
DEFAULT_PORT = 8188
# every models/ subfolder the shipped workflows and the pack read
MODEL_FOLDERS = ("diffusion_models", "text_encoders", "vae", "clip_vision", "loras", "nsfw_detector")


class ServiceError(RuntimeError):
    """Something the user must fix; the message says what."""


def cache_dir() -> Path:
    return Path(os.environ.get("FRAMEPACK_CACHE", Path.home() / ".cache" / "framepack-comfy"))


def state_file() -> Path:
    return cache_dir() / "comfyui.json"


def pinned_comfy() -> tuple[Path, Path]:
    """(ComfyUI folder, its python) of the pinned install; refuses when the user's own ComfyUI is configured."""
    if os.environ.get("COMFYUI_DIR"):
        raise ServiceError("COMFYUI_DIR is set: comfy_env.sh start/stop run only the pinned ComfyUI under "
                           f"{cache_dir()} and never touch yours. Start your ComfyUI as you usually do with this "
                           f"pack in its custom_nodes/ (ln -s {REPO} $COMFYUI_DIR/custom_nodes/{PACK_DIR_NAME}), "
                           "or unset COMFYUI_DIR")
    comfy, python = cache_dir() / "ComfyUI", cache_dir() / "venv" / "bin" / "python"
    if not (comfy / "main.py").is_file() or not python.exists():
        raise ServiceError(f"no pinned ComfyUI at {comfy}: run `bash scripts/demo.sh` (or "
                           "`bash scripts/comfy_env.sh install`) first")
    return comfy, python


class LinkedElsewhere(ServiceError):
    """The pinned ComfyUI's pack link points at another checkout; it is left as it is."""


def link_pack(comfy_dir: Path, relink: bool = False) -> Path:
    """custom_nodes/comfyui-framepack-suite -> this checkout. A link to another checkout that exists is refused
    (LinkedElsewhere, naming both and the way out), so the pinned ComfyUI never silently serves whichever checkout
    ran last; ``relink`` points it here and says so. A link whose checkout is gone is pointed here with a note. A
    real folder of that name (a copy the user put there) is left alone."""
    link = comfy_dir / "custom_nodes" / PACK_DIR_NAME
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        target = link.resolve()
        if target == REPO:
            return link
        if target.exists() and not relink:
            raise LinkedElsewhere(f"{link} links to another checkout, {target}, not to this one ({REPO}): the pinned "
                                  "ComfyUI loads the pack from there. Run this from that checkout, or point the link "
                                  "here with --relink")
        if target.exists():
            print(f"relinked {link}: it linked to {target}, now to this checkout ({REPO})", file=sys.stderr)
        else:
            print(f"note: {link} linked to {os.readlink(link)}, which no longer exists; it now links to this "
                  f"checkout ({REPO})", file=sys.stderr)
        link.unlink()
    elif link.exists():
        print(f"note: {link} is a folder of its own, not a link to this checkout; it is left as it is")
        return link
    link.symlink_to(REPO, target_is_directory=True)
    return link


def port_taken(host: str, port: int) -> bool:
    """Whether something listens on host:port. SO_REUSEADDR as aiohttp sets it, so sockets of a server that just
    stopped (TIME_WAIT) do not count."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return True
            raise ServiceError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return False


def local_url(listen: str, port: int) -> str:
    """The URL to reach the server from this machine (all-address listens are reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(listen, f"[{listen}]" if ":" in listen else listen)
    return f"http://{host}:{port}"


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/system_stats", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running ComfyUI main.py (a recycled pid of another program is not)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"main.py" in cmdline


def read_state() -> dict | None:
    try:
        state = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("pid"), int) else None


def models_config(models_dir: Path) -> Path:
    """An extra_model_paths file that puts ``models_dir``'s subfolders before ComfyUI's own models/."""
    lines = ["framepack_models:", f"    base_path: {json.dumps(str(models_dir))}", "    is_default: true"]
    lines += [f"    {folder}: {folder}" for folder in MODEL_FOLDERS]
    path = cache_dir() / "extra_model_paths.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(port: int, listen: str, models_dir: Path | None, force_cpu: bool, timeout: float,
          relink: bool = False) -> int:
    comfy, python = pinned_comfy()
    state = read_state()
    if state and alive(state["pid"]):
        raise ServiceError(f"ComfyUI is already running at {state['url']} (pid {state['pid']}, log {state['log']}); "
                           "stop it first with `bash scripts/comfy_env.sh stop`")
    if port_taken(listen, port):
        raise ServiceError(f"port {port} on {listen} is already in use by another program (another ComfyUI?); "
                           "stop that program, or choose another port with --port")
    link = link_pack(comfy, relink)
    choice = choose_device(probe_torch_cuda(python), force_cpu)
    print(choice.line(), flush=True)
    args = [str(python), "main.py", "--listen", listen, "--port", str(port), *choice.comfy_args]
    if models_dir is not None:
        models_dir = models_dir.expanduser().resolve()
        if not models_dir.is_dir():
            raise ServiceError(f"--models-dir {models_dir} is not a folder")
        args += ["--extra-model-paths-config", str(models_config(models_dir))]
    log_path = cache_dir() / "comfyui.log"
    url = local_url(listen, port)
    with open(log_path, "wb") as log:  # a fresh log per start
        process = subprocess.Popen(args, cwd=comfy, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
    # recorded at once, so `stop` finds the server even when this wait is cut short
    state_file().write_text(json.dumps({"pid": process.pid, "url": url, "listen": listen, "port": port,
                                        "log": str(log_path), "device": choice.device}, indent=1))
    deadline = time.monotonic() + timeout
    while not answers(url):
        if process.poll() is not None:
            state_file().unlink(missing_ok=True)
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise ServiceError(f"ComfyUI exited with code {process.returncode} while starting; log {log_path}:\n{tail}")
        if time.monotonic() > deadline:
            _terminate(process.pid)
            state_file().unlink(missing_ok=True)
            raise ServiceError(f"ComfyUI did not answer at {url} within {timeout:g} s; log {log_path}")
        time.sleep(0.5)
    print(f"ComfyUI with the FramePack pack ({link}) is running at {url} (pid {process.pid})")
    if listen in ("0.0.0.0", "::"):
        print(f"  listening on all addresses: other machines reach it at http://<this machine's address>:{port}")
    print(f"  log: {log_path}")
    print("  stop it with: bash scripts/comfy_env.sh stop")
    return 0


def _terminate(pid: int, grace: float = 30.0) -> None:
    """SIGTERM to the server's process group (it runs in a session of its own), SIGKILL after ``grace`` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.2)


def stop() -> int:
    state = read_state()
    if state is None or not alive(state["pid"]):
        state_file().unlink(missing_ok=True)
        print("no ComfyUI started by `bash scripts/comfy_env.sh start` is running")
        return 0
    _terminate(state["pid"])
    state_file().unlink(missing_ok=True)
    print(f"stopped ComfyUI at {state['url']} (pid {state['pid']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bash scripts/comfy_env.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("start", help="start the pinned ComfyUI with the pack in the background")
    run.add_argument("--port", type=int, default=DEFAULT_PORT)
    run.add_argument("--listen", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every address)")
    run.add_argument("--models-dir", type=Path, default=None,
                     help="a models folder (diffusion_models/, text_encoders/, vae/, ...) searched before ComfyUI's "
                          "own models/")
    run.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is seen")
    run.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the server to answer")
    run.add_argument("--relink", action="store_true",
                     help="point the pinned ComfyUI's pack link at this checkout when it links to another one (without "
                          "it, start refuses and names both)")
    sub.add_parser("stop", help="stop the ComfyUI that start started")
    args = ap.parse_args(argv)
    try:
        if args.command == "start":
            if not 1 <= args.port <= 65535:
                raise ServiceError(f"--port {args.port} is not a port number (1-65535)")
            return start(args.port, args.listen, args.models_dir, args.cpu, args.timeout, args.relink)
        return stop()
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
