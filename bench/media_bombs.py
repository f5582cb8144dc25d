"""Memory and time of the issue-21 media bombs, in a fresh process each, for one checkout against another: the
peak RSS growth (the kernel's high-water mark VmHWM, reset through /proc/self/clear_refs just before the step, over
the RSS at that moment), the RSS kept after it, and the seconds, of the step that reads the file:

- images, as the shipped workflows' image input reads them: core LoadImage (the workflows before issue 21) or
  FramePack Load Image (after; nodes/load_files.py), both run from the pinned ComfyUI's code; and the API client's
  check before uploading (framepack_client.images.check_image: accepted or refused);
- videos, as FramePack Video Conditioning reads them: count the frames, fit to the output size (480p, auto aspect)
  and keep the tail F1's history needs (framepack_core.video_input), without the VAE.

    python bench/media_bombs.py --checkout /work/main --out before.json     # the code before the fix
    python bench/media_bombs.py --out after.json                              # this checkout
    python bench/media_bombs.py --table before.json after.json                # a markdown table of both

The files (framepack_dev/bombs.py, made once into --files): the 47 KB GIF that declares 1 x 1 pixels and holds
one 8000 x 8000 frame; 60-frame 1024 x 1024 GIF and APNG; flat H.264 MP4s of 30 frames at 640 x 640 (the output
size of a square input at 480p: the control) and 2048 x 2048; a MOV of two
16000 x 16000 PNG frames whose header says 64 x 64.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMFY = Path(os.environ.get("COMFYUI_DIR", Path.home() / ".cache/framepack-comfy/ComfyUI"))

IMAGES = {"gif_1x1_declaring_8000x8000.gif": ("gif_declaring", (1, 1), (8000, 8000)),
          "gif_60x1024.gif": ("animation", "GIF", 60, (1024, 1024)),
          "apng_60x1024.png": ("animation", "PNG", 60, (1024, 1024))}
VIDEOS = {"flat_640x640.mp4": (640, 640, 30, "libx264", "mp4", None),  # the control: already the output size
          "flat_2048x2048.mp4": (2048, 2048, 30, "libx264", "mp4", None),
          "mov_64x64_header_16000x16000_frames.mov": (16000, 16000, 2, "png", "mov", (64, 64))}


def make_files(folder: Path) -> None:
    sys.path.insert(0, str(REPO))
    from framepack_dev import bombs

    folder.mkdir(parents=True, exist_ok=True)
    for name, (maker, *args) in IMAGES.items():
        if not (folder / name).exists():
            (folder / name).write_bytes(getattr(bombs, maker)(*args))
    for name, (width, height, frames, codec, container, declared) in VIDEOS.items():
        if not (folder / name).exists():
            bombs.flat_video(folder / name, width, height, frames, codec=codec, container=container)
            if declared:
                bombs.declare_size(folder / name, *declared)


# -- one step in this (fresh) process ------------------------------------------------------------------------------

def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _measure(run) -> dict:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before, started = _status_kb("VmRSS"), time.monotonic()
    try:
        outcome = f"ok: {run()}"
    except Exception as err:  # the refusal is the result
        outcome = f"refused: {type(err).__name__}: {str(err)[:160]}"
    return {"peak_growth_mb": round((_status_kb("VmHWM") - before) / 1024), "kept_mb": round(
        (_status_kb("VmRSS") - before) / 1024), "seconds": round(time.monotonic() - started, 2), "outcome": outcome}


def _pack_nodes(checkout: Path):
    """The checkout's nodes/load_files.py as a module of a stand-in package (its imports are relative)."""
    import importlib
    import types

    pack = types.ModuleType("framepack_pack")
    pack.__path__ = [str(checkout)]
    nodes = types.ModuleType("framepack_pack.nodes")
    nodes.__path__ = [str(checkout / "nodes")]
    sys.modules.update({"framepack_pack": pack, "framepack_pack.nodes": nodes})
    return importlib.import_module("framepack_pack.nodes.load_files")


def step(kind: str, path: Path, checkout: Path) -> dict:
    if kind == "client":
        from framepack_client.images import check_image

        data = path.read_bytes()
        return _measure(lambda: check_image(data))
    if kind in ("image_loader", "core_loadimage"):
        sys.path.insert(0, str(COMFY))
        os.chdir(COMFY)
        import comfy.cli_args

        comfy.cli_args.args.cpu = True  # as the CPU-only test servers run (no GPU here)
        import nodes as comfy_nodes  # noqa: F401  (imports torch, PIL and ComfyUI before the measured step)

        if kind == "core_loadimage":
            return _measure(lambda: [tuple(t.shape) for t in comfy_nodes.LoadImage().load_image(str(path))])
        loader = _pack_nodes(checkout)
        return _measure(lambda: tuple(loader.read_first_frame(path, path.name).shape))
    import torch  # noqa: F401

    from framepack_core.frames import output_size
    from framepack_core.starts import tail_frames
    from framepack_core.video_input import Fitted, VideoFile

    def conditioning_read():
        source = VideoFile(str(path), path.name)
        width, height = output_size(source.height, source.width, "auto", "480p", 832, 480)
        tail = Fitted(source, width, height).read_tail(tail_frames(source.frames, 19)).float().div_(255)
        return f"{source.frames} frames of {source.width}x{source.height}, tail {tuple(tail.shape)}"

    return _measure(conditioning_read)


# -- the driver ----------------------------------------------------------------------------------------------------

def steps_for(checkout: Path) -> list[tuple[str, str]]:
    has_loader = (checkout / "nodes" / "load_files.py").is_file()
    image_step = "image_loader" if has_loader else "core_loadimage"  # what the checkout's shipped workflows use
    return ([(image_step, n) for n in IMAGES] + [("client", n) for n in IMAGES] + [("video", n) for n in VIDEOS])


def run_all(checkout: Path, files: Path) -> list[dict]:
    rows = []
    for kind, name in steps_for(checkout):
        env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run([sys.executable, __file__, "--step", kind, str(files / name), "--checkout",
                               str(checkout)], capture_output=True, text=True, env=env, timeout=600)
        lines = proc.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if proc.returncode == 0 and lines else {
            "outcome": f"process failed ({proc.returncode}): {proc.stderr.strip()[-300:]}"}
        rows.append({"step": kind, "file": name, "file_kb": round((files / name).stat().st_size / 1024), **result})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(before: list[dict], after: list[dict]) -> str:
    out = ["| file | step before -> after | peak growth MB before -> after | kept MB | seconds | after: outcome |",
           "| --- | --- | --- | --- | --- | --- |"]
    for b, a in zip(before, after):
        out.append(f"| {a['file']} ({a['file_kb']} KB) | {b['step']} -> {a['step']} | {b.get('peak_growth_mb')} -> "
                   f"{a.get('peak_growth_mb')} | {b.get('kept_mb')} -> {a.get('kept_mb')} | {b.get('seconds')} -> "
                   f"{a.get('seconds')} | {a['outcome'][:110]} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", type=Path, default=REPO, help="the checkout whose code reads the files")
    ap.add_argument("--files", type=Path, default=Path("/tmp/framepack_media_bombs"))
    ap.add_argument("--out", type=Path, help="write the rows as JSON")
    ap.add_argument("--step", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    ap.add_argument("--table", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.step:
        print(json.dumps(step(args.step[0], Path(args.step[1]), args.checkout.resolve())))
        return 0
    if args.table:
        print(table(*(json.loads(p.read_text()) for p in args.table)))
        return 0
    make_files(args.files)
    rows = run_all(args.checkout.resolve(), args.files)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
