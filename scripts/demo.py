"""The main job: start ComfyUI with this pack, then make an MP4 from an image and a prompt through the HTTP API
with the pack's API client (python -m framepack_client), exactly as an automation user would.

With the real model files in the models folder it runs FramePack for real. When some are missing it names them
(and where to get them), then runs the very same path on tiny random weights and says so loudly: a SMOKE RUN
whose video is noise, which proves the installation, the nodes, the API and the MP4 writing work.

    bash scripts/demo.sh [--image PATH] [--prompt TEXT] [--end-image PATH] [--num-frames N] [--f1] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framepack_dev.comfy_server import (PACK_LINK_NAME, TEST_NODE_PACK, TEST_PACK_LINK_NAME,  # noqa: E402
                                       ComfyServer, locate_comfyui)
from scripts import build_workflows as wf  # noqa: E402

SOURCES = {
    "diffusion_models": "https://huggingface.co/Kijai/HunyuanVideo_comfy (FramePackI2V_HY_bf16.safetensors 25.7 GB, "
                        "FramePackI2V_HY_fp8_e4m3fn.safetensors 13.3 GB, FramePack_F1_I2V_HY_20250503_*.safetensors) or "
                        "the sharded folders lllyasviel/FramePackI2V_HY, lllyasviel/FramePack_F1_I2V_HY_20250503",
    "text_encoders": "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged split_files/text_encoders "
                     "(clip_l.safetensors 246 MB; llava_llama3_fp16.safetensors 16 GB or llava_llama3_fp8_scaled 9 GB)",
    "vae": "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged split_files/vae (hunyuan_video_vae_bf16.safetensors 493 MB)",
    "clip_vision": "https://huggingface.co/Comfy-Org/sigclip_vision_384 (sigclip_vision_patch14_384.safetensors 857 MB)",
}


def find_models(models: Path, f1: bool) -> tuple[dict, list[str]]:
    """Names to put in the workflow, and what is missing (folder/file)."""
    stem = "FramePack_F1_I2V_HY_20250503" if f1 else "FramePackI2V_HY"
    dm = models / "diffusion_models"
    candidates = sorted(p.name for p in dm.glob(f"{stem}*")) if dm.is_dir() else []
    chosen, missing = {}, []
    if candidates:
        chosen["model"] = candidates[0]
    else:
        missing.append(f"diffusion_models/{stem}_bf16.safetensors (or _fp8_e4m3fn, or the sharded folder {stem}/)")
    te = models / "text_encoders"
    llama = next((n for n in ("llava_llama3_fp16.safetensors", "llava_llama3_fp8_scaled.safetensors") if (te / n).is_file()), None)
    if llama:
        chosen["clip_name2"] = llama
    else:
        missing.append("text_encoders/llava_llama3_fp16.safetensors (or llava_llama3_fp8_scaled.safetensors)")
    for folder, name in (("text_encoders", wf.TEXT_ENCODER_1), ("vae", wf.VAE), ("clip_vision", wf.CLIP_VISION)):
        if not (models / folder / name).is_file():
            missing.append(f"{folder}/{name}")
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", help="start image (default: a generated test picture)")
    ap.add_argument("--end-image", help="optional end image (first+last frame video)")
    ap.add_argument("--prompt", default=wf.PROMPT)
    ap.add_argument("--num-frames", type=int, default=None, help="default: 180 (real), 60 (smoke)")
    ap.add_argument("--seed", type=int, default=-1)
    ap.add_argument("--f1", action="store_true", help="use FramePack F1 (forward sampling)")
    ap.add_argument("--models-dir", type=Path, help="models folder with the real weights (default: ComfyUI's models/)")
    ap.add_argument("--output-dir", type=Path, default=REPO / "outputs")
    ap.add_argument("--smoke", action="store_true", help="force the smoke run on tiny random weights")
    args = ap.parse_args()

    install = locate_comfyui()
    models = args.models_dir or (install.comfy_dir / "models")
    chosen, missing = find_models(models, args.f1)
    smoke = args.smoke or bool(missing)
    if missing and not args.smoke:
        print(f"Real FramePack weights are incomplete in {models}; missing:")
        for m in missing:
            print(f"  - {m}")
        print("Download them from:")
        for folder, source in SOURCES.items():
            print(f"  {folder}/: {source}")
        print("Continuing with a SMOKE RUN on tiny random weights (same nodes, API and MP4 path; the video is noise).\n")

    base = Path(tempfile.mkdtemp(prefix="framepack-demo-"))
    work = base / "work"
    work.mkdir()
    packs = {PACK_LINK_NAME: REPO}
    if smoke:  # the stand-in text encoder and SigLIP nodes for the tiny weights
        packs[TEST_PACK_LINK_NAME] = TEST_NODE_PACK
    if not smoke:
        (base / "models").symlink_to(models.resolve(), target_is_directory=True)
    server = ComfyServer(base_dir=base, node_packs=packs)
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
    print(f"== {label}: starting ComfyUI {install.source} with the pack ...", flush=True)
    with server:
        server.start()
        print(f"== ComfyUI is up at {server.url} ({server.startup_seconds:.1f} s); generating through the HTTP API",
              flush=True)
        cmd = [sys.executable, "-m", "framepack_client", "run", "--server", server.url, *client_args]
        print("   $ " + " ".join(cmd), flush=True)
        code = subprocess.call(cmd, cwd=REPO)
    print(f"== {label}: {'done' if code == 0 else 'FAILED'}; server log: {base / 'comfyui.log'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
