"""The main job: start ComfyUI with this pack, then make an MP4 from an image and a prompt through the HTTP API
with the pack's API client (python -m framepack_client), exactly as an automation user would.

ComfyUI runs on the GPU when its torch sees one (CUDA), on the CPU otherwise or with --cpu; the first line says
which and why. With the real model files in the models folder it runs FramePack for real. When some are missing it
names them (and where to get them), then runs the very same path on tiny random weights and says so loudly: a
SMOKE RUN whose video is noise, which proves the installation, the nodes, the API and the MP4 writing work.

The server runs in a temporary folder (removed afterwards unless --keep-temp, or kept with its log when the run
fails) and is stopped at the end; the MP4 lands in --output-dir (default outputs/). The pack is then linked into
the pinned ComfyUI's custom_nodes/, so `bash scripts/comfy_env.sh start` serves it on 127.0.0.1:8188 (a link there
to another checkout is left as it is, with a warning, unless --relink).

    bash scripts/demo.sh [--image PATH] [--prompt TEXT] [--end-image PATH] [--num-frames N] [--f1] [--smoke]
                         [--cpu] [--keep-temp] [--relink]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framepack_client.model_files import MODEL_SOURCES, MissingModel, missing_models_text  # noqa: E402
from framepack_dev.comfy_server import (PACK_LINK_NAME, STAND_IN_LINK_NAME, STAND_IN_PACK,  # noqa: E402
                                       ComfyServer, locate_comfyui)
from framepack_dev.device import choose_device, probe_torch_cuda  # noqa: E402
from scripts import build_workflows as wf  # noqa: E402
from scripts.comfy_service import PACK_DIR_NAME, LinkedElsewhere, link_pack  # noqa: E402

def find_models(models: Path, f1: bool) -> tuple[dict, list[MissingModel]]:
    """Names to put in the workflow, and what is missing."""
    stem = "FramePack_F1_I2V_HY_20250503" if f1 else "FramePackI2V_HY"
    dm = models / "diffusion_models"
    candidates = sorted(p.name for p in dm.glob(f"{stem}*")) if dm.is_dir() else []
    chosen, missing = {}, []
    if candidates:
        chosen["model"] = candidates[0]
    else:
        missing.append(MissingModel("diffusion_models", f"{stem}_bf16.safetensors",
                                    f"or _fp8_e4m3fn, or the sharded folder {stem}/"))
    te = models / "text_encoders"
    llama = next((n for n in ("llava_llama3_fp16.safetensors", "llava_llama3_fp8_scaled.safetensors") if (te / n).is_file()), None)
    if llama:
        chosen["clip_name2"] = llama
    else:
        missing.append(MissingModel("text_encoders", "llava_llama3_fp16.safetensors",
                                    "or llava_llama3_fp8_scaled.safetensors"))
    for folder, name in (("text_encoders", wf.TEXT_ENCODER_1), ("vae", wf.VAE), ("clip_vision", wf.CLIP_VISION)):
        if not (models / folder / name).is_file():
            missing.append(MissingModel(folder, name))
    return chosen, missing


def real_workflow(chosen: dict, f1: bool, end_image: bool) -> dict:
    name = "framepack_f1" if f1 else ("framepack_first_last_frame" if end_image else "framepack_i2v")
    graph = json.loads(json.dumps(wf.WORKFLOWS[name]))
    for node in graph.values():
        if node["class_type"] == "FramePackModelLoader":
            node["inputs"]["model"] = chosen["model"]
        if node["class_type"] == "DualCLIPLoader":
            node["inputs"]["clip_name2"] = chosen["clip_name2"]
    return graph


def default_image(path: Path, width: int, height: int, seed: int) -> Path:
    from framepack_dev.tiny_models import write_image
    return write_image(path, width, height, seed)


def local_result(stdout: str) -> dict | None:
    """The client's JSON result without what points at the demo's server, which is stopped by the time it is read
    (the history URL and the server address); the outputs are local files already."""
    try:
        result = json.loads(stdout)
    except ValueError:
        return None
    for key in ("urls", "server", "prompt_id"):
        result.pop(key, None)
    return result


def client_command(*args: str, python: str = sys.executable) -> str:
    """The client's command line as it can be pasted into a shell, in any folder (relative paths stay the user's):
    this environment's python (a plain `python` lacks websocket-client) with the checkout on its path (where
    framepack_client is), every part quoted."""
    return f"PYTHONPATH={shlex.quote(str(REPO))} " + shlex.join([python, "-m", "framepack_client", *args])


def print_next_steps(install, relink: bool) -> None:
    if install.source == "pinned":
        try:
            link = link_pack(install.comfy_dir, relink)
        except LinkedElsewhere as err:  # the demo itself ran on this checkout: only the kept ComfyUI is affected
            print(f"WARNING: {err} (bash scripts/demo.sh --relink, or bash scripts/comfy_env.sh start --relink)")
            return
        print(f"The pack is linked into the pinned ComfyUI: {link}")
        print("  start it (GPU when present) on http://127.0.0.1:8188:  bash scripts/comfy_env.sh start")
        args = ("run", "--server", "http://127.0.0.1:8188", "--image", "IMAGE", "--prompt", "TEXT")
        print(f"  then open that URL, or:  {client_command(*args)}")
        print(f"  (or, in an environment where you ran `pip install {shlex.quote(str(REPO))}`: "
              f"{shlex.join(['framepack-video', *args])})")
        print("  stop it:  bash scripts/comfy_env.sh stop")
    else:
        print(f"Your ComfyUI ({install.comfy_dir}) was left as it is; to use the pack there: "
              f"{shlex.join(['ln', '-s', str(REPO), str(install.comfy_dir / 'custom_nodes' / PACK_DIR_NAME)])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", help="start image (default: a generated test picture)")
    ap.add_argument("--end-image", help="optional end image (first+last frame video)")
    ap.add_argument("--prompt", default=wf.PROMPT)
    ap.add_argument("--num-frames", type=int, default=None, help="default: 180 (real), 60 (smoke)")
    ap.add_argument("--seed", type=int, default=-1)
    ap.add_argument("--f1", action="store_true", help="use FramePack F1 (forward sampling)")
    ap.add_argument("--models-dir", type=Path, help="models folder with the real weights (default: ComfyUI's models/)")
    ap.add_argument("--output-dir", type=Path, default=REPO / "outputs", help="where the MP4 lands (default outputs/)")
    ap.add_argument("--smoke", action="store_true", help="force the smoke run on tiny random weights")
    ap.add_argument("--cpu", action="store_true", help="run ComfyUI on the CPU even when a GPU is seen")
    ap.add_argument("--keep-temp", action="store_true",
                    help="keep the server's temporary folder (its log, models links, inputs and outputs)")
    ap.add_argument("--relink", action="store_true",
                    help="point the pinned ComfyUI's pack link at this checkout even when it links to another one")
    args = ap.parse_args()

    install = locate_comfyui()
    device = choose_device(probe_torch_cuda(install.python), args.cpu)
    print(device.line(), flush=True)
    models = args.models_dir or (install.comfy_dir / "models")
    chosen, missing = find_models(models, args.f1)
    smoke = args.smoke or bool(missing)
    if missing and not args.smoke:
        folders = {folder: str(models / folder) for folder in MODEL_SOURCES}
        print(missing_models_text(missing, folders, where=f"the models folder {models}", then="run the demo again"))
        print("Continuing with a SMOKE RUN on tiny random weights (same nodes, API and MP4 path; the video is noise).\n")

    base = Path(tempfile.mkdtemp(prefix="framepack-demo-"))
    work = base / "work"
    work.mkdir()
    packs = {PACK_LINK_NAME: REPO}
    if smoke:  # the stand-in text encoder and SigLIP nodes for the tiny weights
        packs[STAND_IN_LINK_NAME] = STAND_IN_PACK
    if not smoke:
        (base / "models").symlink_to(models.resolve(), target_is_directory=True)
    server = ComfyServer(base_dir=base, node_packs=packs, device_args=device.comfy_args)
    client_args = ["--prompt", args.prompt, "--seed", str(args.seed), "--output-dir", str(args.output_dir)]
    if smoke:
        from framepack_dev.tiny_models import install_tiny_models, tiny_workflow
        install_tiny_models(base / "models", base / "input")
        name = "framepack_f1" if args.f1 else ("framepack_first_last_frame" if args.end_image else "framepack_i2v")
        graph = tiny_workflow(name, width=128, height=96, steps=8)
        client_args += ["--resolution", "custom", "--width", "128", "--height", "96", "--num-inference-steps", "8",
                        "--num-frames", str(args.num_frames or 60)]
    else:
        graph = real_workflow(chosen, args.f1, bool(args.end_image))
        client_args += ["--num-frames", str(args.num_frames or 180)]
    workflow_path = work / "workflow.json"
    workflow_path.write_text(json.dumps(graph, indent=1))
    image = args.image or str(default_image(work / "start.png", 640, 480, seed=1))
    client_args += ["--image", image, "--workflow", str(workflow_path)]
    if args.end_image:
        client_args += ["--end-image", args.end_image]

    label = "SMOKE RUN (tiny random weights, the video is noise)" if smoke else "FramePack"
    print(f"== {label}: starting ComfyUI {install.source} on the {device.device} with the pack ...", flush=True)
    with server:
        server.start()
        print(f"== ComfyUI is up at {server.url} ({server.startup_seconds:.1f} s); generating through the HTTP API",
              flush=True)
        cmd = [sys.executable, "-m", "framepack_client", "run", "--server", server.url, *client_args]
        print("   $ " + shlex.join(cmd), flush=True)
        done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)  # progress goes to stderr
    result = local_result(done.stdout)
    print(json.dumps(result, indent=2) if result is not None else done.stdout, flush=True)
    ok = done.returncode == 0
    if ok and not args.keep_temp:
        shutil.rmtree(base, ignore_errors=True)
        where = "the temporary server folder is removed (--keep-temp keeps it)"
    else:
        where = f"server log: {server.log_path}"
    videos = ", ".join(result.get("outputs") or []) if result else ""
    print(f"== {label}: {'done: ' + videos if ok else 'FAILED'}; the demo's server is stopped; {where}")
    print_next_steps(install, args.relink)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
