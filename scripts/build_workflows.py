"""Builds the shipped workflows from one definition: workflows/api/<name>.json (API format, for POST /prompt)
and workflows/<name>.json (UI format: ComfyUI lists workflows/*.json in its templates menu; the API twins sit in
a subfolder so they do not show up there).

The API files need nothing but this script. The UI files need the node definitions (/object_info) of a ComfyUI
with this pack loaded, for widget order and socket types:

    python scripts/build_workflows.py --object-info http://127.0.0.1:8188      # or a saved object_info.json
    python scripts/build_workflows.py --check --object-info ...                 # exit 1 if files are stale

Only ComfyUI core nodes and this pack's nodes appear in the graphs. The widget values are the nodes' defaults,
read from framepack_core/limits.py (standard library only).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/build_workflows.py`
    sys.path.insert(0, str(REPO))

from framepack_core.limits import (AUTO, DEFAULT_ATTENTION, DEFAULT_CFG, DEFAULT_COMPUTE_DTYPE,  # noqa: E402
                                   DEFAULT_CRF, DEFAULT_CUSTOM_SIZE, DEFAULT_END_STRENGTH, DEFAULT_FRAMES,
                                   DEFAULT_FRAMES_WITH_END, DEFAULT_GUIDANCE, DEFAULT_NSFW_THRESHOLD,
                                   DEFAULT_SAFETY_SAMPLE_FRAMES, DEFAULT_SAMPLER, DEFAULT_STEPS,
                                   DEFAULT_TEACACHE_THRESHOLD, DEFAULT_WINDOW, FPS, MAX_CONTEXT_LATENTS,
                                   RESOLUTION_CHOICES)

WORKFLOWS_DIR = REPO / "workflows"
PACK_ID = "comfyui-framepack-suite"
PACK_NODES_PREFIX = "FramePack"

# Model file names as users download them (README lists sources and sizes).
MODEL_I2V = "FramePackI2V_HY_bf16.safetensors"
MODEL_F1 = "FramePack_F1_I2V_HY_20250503_bf16.safetensors"
TEXT_ENCODER_1 = "clip_l.safetensors"
TEXT_ENCODER_2 = "llava_llama3_fp16.safetensors"
VAE = "hunyuan_video_vae_bf16.safetensors"
CLIP_VISION = "sigclip_vision_patch14_384.safetensors"
START_IMAGE = "framepack_start.png"
END_IMAGE = "framepack_end.png"
INPUT_VIDEO = "framepack_input.mp4"
PROMPT = "The girl dances gracefully, with clear movements, full of charm."
NEGATIVE = ""

# Titles the API client uses to find the nodes it fills (class_type + title).
TITLE_START, TITLE_END = "Start image", "End image"
TITLE_VIDEO = "Input video"
TITLE_POSITIVE, TITLE_NEGATIVE = "Positive prompt", "Negative prompt"
TITLE_SAFETY = "Safety checker"
NSFW_CLASSIFIER = "nsfw_image_detection"  # folder in models/nsfw_detector (README: where to get it)
RESOLUTION = RESOLUTION_CHOICES[0]  # the conditioning nodes' default (480p)
CUSTOM_WIDTH, CUSTOM_HEIGHT = DEFAULT_CUSTOM_SIZE


def _graph(model_file: str, end_image: bool, num_frames: int, prefix: str, start: str = "image",
           parallel: bool = False) -> dict:
    """API-format graph. Node ids are stable strings; `_meta.title` names what the client fills. start: "image"
    (FramePack Load Image), "video" (FramePack Load Video into FramePack Video Conditioning: continue a video) or a
    blank kind (text-to-video: no image). The inputs are the pack's loaders, not core LoadImage / LoadVideo: they
    read only ComfyUI's input folder and bound a file before decoding it (nodes/load_files.py)."""
    g = {
        "1": ("FramePackModelLoader", "Load FramePack Model", {
            "model": model_file, "variant": AUTO, "compute_dtype": DEFAULT_COMPUTE_DTYPE, "weight_storage": AUTO,
            "attention": DEFAULT_ATTENTION, "vram_reserve_gb": 0.0, "pin_memory": False}),
        "2": ("DualCLIPLoader", "DualCLIPLoader", {
            "clip_name1": TEXT_ENCODER_1, "clip_name2": TEXT_ENCODER_2, "type": "hunyuan_video", "device": "default"}),
        "3": ("CLIPTextEncode", TITLE_POSITIVE, {"text": PROMPT, "clip": ["2", 0]}),
        "4": ("CLIPTextEncode", TITLE_NEGATIVE, {"text": NEGATIVE, "clip": ["2", 0]}),
        "5": ("VAELoader", "Load VAE", {"vae_name": VAE}),
        "6": ("CLIPVisionLoader", "Load CLIP Vision", {"clip_name": CLIP_VISION}),
        "7": ("FramePackLoadImage", TITLE_START, {"image": START_IMAGE}),
        "8": ("FramePackImageConditioning", "FramePack Image Conditioning", {
            "start_image": ["7", 0], "vae": ["5", 0], "clip_vision": ["6", 0], "aspect_ratio": AUTO,
            "resolution": RESOLUTION, "custom_width": CUSTOM_WIDTH, "custom_height": CUSTOM_HEIGHT,
            "strength": DEFAULT_END_STRENGTH}),
        "9": ("FramePackSampler", "FramePack Sampler", {
            "model": ["1", 0], "positive": ["3", 0], "negative": ["4", 0], "conditioning": ["8", 0],
            "num_frames": num_frames, "num_inference_steps": DEFAULT_STEPS, "guidance_scale": DEFAULT_GUIDANCE,
            "cfg_scale": DEFAULT_CFG, "seed": 31337, "sampler": DEFAULT_SAMPLER, "shift": 0.0,
            "teacache_threshold": DEFAULT_TEACACHE_THRESHOLD, "window_size": DEFAULT_WINDOW, "mode": AUTO,
            "cfg_rescale": 0.0}),
        # return_frames off: the MP4 (and the VIDEO output) hold the video; every frame as float32 would take
        # 20 GB at 720p x 1800 frames, a request the hosted APIs accept.
        "10": ("FramePackVideoCombine", "FramePack Video Combine", {
            "latent": ["9", 0], "vae": ["5", 0], "filename_prefix": prefix, "crf": DEFAULT_CRF,
            "return_frames": False}),
        # Off by default: the API client and the service switch it on with enable_safety_checker. It reads the
        # frames it scores (first and last included) from the video output, the MP4.
        "12": ("FramePackSafetyChecker", TITLE_SAFETY, {
            "video": ["10", 1], "enabled": False, "classifier": NSFW_CLASSIFIER, "threshold": DEFAULT_NSFW_THRESHOLD,
            "sample_frames": DEFAULT_SAFETY_SAMPLE_FRAMES, "block": False}),
    }
    if start == "video":
        g["7"] = ("FramePackLoadVideo", TITLE_VIDEO, {"file": INPUT_VIDEO})
        g["8"] = ("FramePackVideoConditioning", "FramePack Video Conditioning", {
            "video": ["7", 0], "vae": ["5", 0], "clip_vision": ["6", 0], "fps": float(FPS),
            "context_latents": MAX_CONTEXT_LATENTS, "keep_input": True, "aspect_ratio": AUTO, "resolution": RESOLUTION,
            "custom_width": CUSTOM_WIDTH, "custom_height": CUSTOM_HEIGHT, "strength": DEFAULT_END_STRENGTH})
    elif start != "image":
        del g["7"], g["8"][2]["start_image"]
        g["8"][2].update(start_kind=start, noise_seed=0, blank_embeddings="blank_image")
    if end_image:
        g["11"] = ("FramePackLoadImage", TITLE_END, {"image": END_IMAGE})
        g["8"][2]["end_image"] = ["11", 0]
    if parallel:  # every GPU ComfyUI sees; the node's gpus input names others ("0,1") or CPU ranks ("cpu:2")
        g["13"] = ("FramePackParallel", "FramePack Parallel", {"gpus": "all", "cfg_parallel": False})
        g["9"][2]["parallel"] = ["13", 0]
    return {nid: {"class_type": c, "inputs": inputs, "_meta": {"title": title}} for nid, (c, title, inputs) in g.items()}


WORKFLOWS = {
    "framepack_i2v": _graph(MODEL_I2V, end_image=False, num_frames=DEFAULT_FRAMES, prefix="FramePack/i2v"),
    "framepack_first_last_frame": _graph(MODEL_I2V, end_image=True, num_frames=DEFAULT_FRAMES_WITH_END,
                                         prefix="FramePack/flf2v"),
    "framepack_f1": _graph(MODEL_F1, end_image=False, num_frames=DEFAULT_FRAMES, prefix="FramePack/f1"),
    # F1 keeps the input's motion (framepack_core/starts.py); FramePackI2V_HY continues from its last frame only
    "framepack_extend": _graph(MODEL_F1, end_image=False, num_frames=DEFAULT_FRAMES, prefix="FramePack/extend",
                               start="video"),
    "framepack_t2v": _graph(MODEL_I2V, end_image=False, num_frames=DEFAULT_FRAMES, prefix="FramePack/t2v",
                            start="black"),
    "framepack_i2v_multi_gpu": _graph(MODEL_I2V, end_image=False, num_frames=DEFAULT_FRAMES,
                                      prefix="FramePack/i2v_multi_gpu", parallel=True),
}

# Left-to-right layout columns for the UI files (purely cosmetic).
COLUMNS = {"1": 0, "2": 0, "5": 0, "6": 0, "7": 1, "11": 1, "3": 1, "4": 1, "8": 2, "13": 2, "9": 3, "10": 4,
           "12": 5}


def load_object_info(source: str) -> dict:
    if source.startswith("http"):
        with urllib.request.urlopen(source.rstrip("/") + "/object_info", timeout=60) as r:
            return json.loads(r.read())
    return json.loads(Path(source).read_text())


def _inputs_spec(info: dict) -> list[tuple[str, object, dict, bool]]:
    """(name, type, options, optional) in the node's declared order."""
    order = info.get("input_order", {})
    out = []
    for section, optional in (("required", False), ("optional", True)):
        spec = info["input"].get(section, {})
        for name in order.get(section, list(spec)):
            entry = spec[name]
            out.append((name, entry[0], entry[1] if len(entry) > 1 else {}, optional))
    return out


def _is_widget(type_, options: dict) -> bool:
    if options.get("forceInput"):
        return False
    return isinstance(type_, list) or type_ in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def to_ui(api: dict, object_info: dict) -> dict:
    """UI (litegraph, schema 0.4) workflow equivalent to an API graph."""
    ids = {nid: i for i, nid in enumerate(api, start=1)}
    nodes, links, outputs_links = [], [], {}
    for nid, node in api.items():
        info = object_info[node["class_type"]]
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                link_id = len(links) + 1
                src, slot = value
                src_type = object_info[api[src]["class_type"]]["output"][slot]
                target_slot = [n for n, t, o, _ in _inputs_spec(info) if not _is_widget(t, o)].index(name)
                links.append([link_id, ids[src], slot, ids[nid], target_slot, src_type])
                outputs_links.setdefault((src, slot), []).append(link_id)
    rows: dict[int, int] = {}
    for order, (nid, node) in enumerate(api.items()):
        info = object_info[node["class_type"]]
        socket_inputs, widgets = [], []
        for name, type_, options, optional in _inputs_spec(info):
            value = node["inputs"].get(name)
            if _is_widget(type_, options):
                widgets.append(value if value is not None else options.get("default"))
                if options.get("control_after_generate"):
                    widgets.append("fixed")
                if options.get("image_upload"):
                    widgets.append("image")
            else:
                link = next((l[0] for l in links if l[3] == ids[nid] and l[4] == len(socket_inputs)), None)
                entry = {"name": name, "type": type_ if isinstance(type_, str) else "COMBO", "link": link}
                if optional:
                    entry["shape"] = 7
                socket_inputs.append(entry)
        outputs = [{"name": oname, "type": otype, "links": outputs_links.get((nid, slot), []), "slot_index": slot}
                   for slot, (otype, oname) in enumerate(zip(info["output"], info["output_name"]))]
        col = COLUMNS.get(nid, 2)
        row = rows.get(col, 0)
        height = 60 + 26 * (len(widgets) + max(len(socket_inputs), len(outputs)))
        rows[col] = row + height + 40
        cnr = PACK_ID if node["class_type"].startswith(PACK_NODES_PREFIX) else "comfy-core"
        nodes.append({
            "id": ids[nid], "type": node["class_type"], "pos": [40 + 380 * col, 40 + row], "size": [340, height],
            "flags": {}, "order": order, "mode": 0, "inputs": socket_inputs, "outputs": outputs,
            "title": node["_meta"]["title"],
            "properties": {"Node name for S&R": node["class_type"], "cnr_id": cnr}, "widgets_values": widgets})
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(api, sort_keys=True))), "revision": 0,
            "last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 0.62, "offset": [30, 70]}}, "version": 0.4}


def render() -> dict[str, str]:
    return {f"api/{name}.json": json.dumps(api, indent=2) + "\n" for name, api in WORKFLOWS.items()}


def render_ui(object_info: dict) -> dict[str, str]:
    return {f"{name}.json": json.dumps(to_ui(api, object_info), indent=2) + "\n" for name, api in WORKFLOWS.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--object-info", help="ComfyUI URL or object_info.json, needed for the UI files")
    ap.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = ap.parse_args()
    files = render()
    if args.object_info:
        files.update(render_ui(load_object_info(args.object_info)))
    stale = [n for n, text in files.items() if not (WORKFLOWS_DIR / n).is_file() or (WORKFLOWS_DIR / n).read_text() != text]
    if args.check:
        print("stale: " + ", ".join(stale) if stale else "workflows are up to date")
        return 1 if stale else 0
    for name, text in files.items():
        (WORKFLOWS_DIR / name).parent.mkdir(parents=True, exist_ok=True)
        (WORKFLOWS_DIR / name).write_text(text)
    print(f"wrote {len(files)} files to {WORKFLOWS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
