"""The pack in a real ComfyUI: node registration, every shipped API workflow end to end on tiny weights (our
loader -> sampler -> video combine -> MP4), progress, interrupts, node errors, and the UI workflows in the real
frontend."""

from __future__ import annotations

import io
import json
import math
import urllib.request
import uuid
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from framepack_client.server_api import PromptRejected
from framepack_dev.comfy_server import PACK_LINK_NAME
from framepack_core.frames import resize_and_center_crop
from framepack_dev.stand_in_nodes.describe import describe
from framepack_dev.stand_in_nodes.stand_ins import vision_features
from framepack_dev.tiny_models import IMAGE_DIM, IMAGE_TOKENS, START_IMAGE, install_tiny_models, node_of, tiny_workflow
from scripts import build_workflows

PACK_NODES = ("FramePackModelLoader", "FramePackLoraSelect", "FramePackImageConditioning", "FramePackKeyframe",
              "FramePackTimestampedPrompt", "FramePackSampler", "FramePackVideoCombine", "FramePackSafetyChecker",
              "FramePackVideoConditioning", "FramePackLoadImage", "FramePackLoadVideo")
WORKFLOW_NAMES = tuple(build_workflows.WORKFLOWS)


@pytest.fixture(scope="module", autouse=True)
def tiny_models(models_dir, input_dir):
    install_tiny_models(models_dir, input_dir)


def unique_prefix(tag: str) -> str:
    return f"tests/{tag}_{uuid.uuid4().hex[:8]}"


def mp4_of(comfy, result) -> tuple[bytes, dict]:
    entries = result.outputs[node_id(result, "FramePackVideoCombine")]["images"]
    assert len(entries) == 1 and entries[0]["filename"].endswith(".mp4")
    e = entries[0]
    return comfy.view(e["filename"], e["subfolder"], e["type"]), e


def node_id(result, class_type: str) -> str:
    return next(nid for nid, node in result.prompt_graph.items() if node["class_type"] == class_type)


def probe(data: bytes) -> dict:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {"frames": frames, "fps": float(stream.average_rate), "width": stream.codec_context.width,
                "height": stream.codec_context.height, "codec": stream.codec_context.name}


def run(comfy, graph, timeout=600):
    result = comfy.run(graph, timeout=timeout)
    result.prompt_graph = graph
    return result


def test_every_pack_node_is_listed(comfy, comfy_server):
    assert "comfyui-framepack" not in comfy_server.import_failures()
    info = comfy.object_info()
    missing = [n for n in PACK_NODES if n not in info]
    assert not missing, f"pack nodes missing from /object_info: {missing}"
    assert {info[n]["category"] for n in PACK_NODES} == {"FramePack"}


def test_shipped_workflows_are_in_sync_with_their_definition(comfy):
    """workflows/ holds exactly what scripts/build_workflows.py renders from the live node definitions."""
    files = {**build_workflows.render(), **build_workflows.render_ui(comfy.object_info())}
    for name, text in files.items():
        on_disk = (build_workflows.WORKFLOWS_DIR / name).read_text()
        assert on_disk == text, f"workflows/{name} is stale: run python scripts/build_workflows.py --object-info <url>"



def test_ui_workflows_are_offered_as_templates(comfy_server):
    """ComfyUI lists a pack's workflows/*.json in Workflow -> Browse Templates and serves each file; the API twins
    in workflows/api/ stay out of that menu."""
    def get(path):
        with urllib.request.urlopen(comfy_server.url + path, timeout=30) as response:
            return json.loads(response.read())

    templates = get("/workflow_templates")
    assert sorted(templates.get(PACK_LINK_NAME, [])) == sorted(WORKFLOW_NAMES), templates
    for name in WORKFLOW_NAMES:
        served = get(f"/api/workflow_templates/{PACK_LINK_NAME}/{name}.json")
        assert served == json.loads((build_workflows.WORKFLOWS_DIR / f"{name}.json").read_text())

@pytest.mark.parametrize("name,num_frames,size", [
    ("framepack_i2v", 46, (80, 64)),  # 46 frames: 13 latents make 49, 3 interior frames dropped
    ("framepack_first_last_frame", 37, (64, 64)),
    ("framepack_f1", 61, (64, 96)),
])
def test_api_workflow_end_to_end(comfy, name, num_frames, size):
    width, height = size
    graph = tiny_workflow(name, num_frames=num_frames, width=width, height=height, seed=123,
                          prefix=unique_prefix(name))
    result = run(comfy, graph)
    assert result.ok, result.error_message
    data, entry = mp4_of(comfy, result)
    info = probe(data)
    assert info == {"frames": num_frames, "fps": 30.0, "width": width, "height": height, "codec": "h264"}
    report = result.outputs[node_id(result, "FramePackSampler")]["framepack"][0]
    assert report["seed"] == 123 and report["frames"] == num_frames
    # mode auto runs each checkpoint in the section order it was trained for: F1 forward, FramePackI2V_HY inverted
    assert report["mode"] == ("forward" if name == "framepack_f1" else "inverted")
    steps = node_of(graph, "FramePackSampler")["inputs"]["num_inference_steps"]
    sampler_progress = [p for p in result.progress if p["node"] == node_id(result, "FramePackSampler")]
    assert [p["value"] for p in sampler_progress][-1] == report["sections"] * steps
    assert len(sampler_progress) >= report["sections"] * steps


def test_mp4_carries_the_ui_workflow_and_the_api_prompt(comfy):
    """As ComfyUI's SaveVideo does: the UI workflow the frontend sends (extra_pnginfo) and the API prompt are tags of
    the MP4, so dropping the file on ComfyUI restores the graph."""
    ui_workflow = json.loads((build_workflows.WORKFLOWS_DIR / "framepack_i2v.json").read_text())
    graph = tiny_workflow("framepack_i2v", seed=5, prefix=unique_prefix("metadata"))
    result = comfy.run(graph, timeout=600, extra_data={"extra_pnginfo": {"workflow": ui_workflow}})
    result.prompt_graph = graph
    assert result.ok, result.error_message
    data, _ = mp4_of(comfy, result)
    with av.open(io.BytesIO(data)) as container:
        tags = dict(container.metadata)
    assert json.loads(tags["workflow"]) == ui_workflow
    stored = json.loads(tags["prompt"])
    for node in stored.values():  # the server's own cache key, which ComfyUI adds to the prompt it runs
        node.pop("is_changed", None)
    assert stored == graph


def test_random_seed_is_reported(comfy):
    graph = tiny_workflow("framepack_i2v", seed=-1, prefix=unique_prefix("seed"))
    result = run(comfy, graph)
    assert result.ok, result.error_message
    seed = result.outputs[node_id(result, "FramePackSampler")]["framepack"][0]["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert f"seed: {seed}" in result.outputs[node_id(result, "FramePackSampler")]["text"][0]


@pytest.mark.parametrize("field,value", [("num_frames", 29), ("num_frames", 1801), ("num_inference_steps", 51),
                                         ("num_inference_steps", 3), ("guidance_scale", -1.0), ("cfg_scale", 7.5),
                                         ("seed", -2), ("sampler", "ddim")])
def test_out_of_range_inputs_are_node_errors(comfy, field, value):
    graph = tiny_workflow("framepack_i2v")
    node_of(graph, "FramePackSampler")["inputs"][field] = value
    with pytest.raises(PromptRejected) as err:
        comfy.queue_prompt(graph)
    errors = err.value.node_errors
    assert errors, err.value.error
    messages = json.dumps(errors)
    assert field in messages


def test_interrupt_stops_sampling_and_next_prompt_succeeds(comfy):
    """The test pack requests the interrupt from inside the progress report of sampler step 3 (as Cancel would,
    but at a known step), so the check is exact: no step after the request is computed, the job ends as
    interrupted, and the next prompt runs normally."""
    at_step = 3
    graph = tiny_workflow("framepack_i2v", num_frames=600, steps=8, prefix=unique_prefix("interrupt"))
    sampler = node_of(graph, "FramePackSampler")
    graph["40"] = {"class_type": "FramePackTestInterruptAtProgress",
                   "inputs": {"value": sampler["inputs"]["conditioning"], "at_value": at_step},
                   "_meta": {"title": "interrupt at step 3"}}
    sampler["inputs"]["conditioning"] = ["40", 0]
    result = run(comfy, graph, timeout=300)
    assert result.status == "interrupted", result.status
    sampler_id = node_id(result, "FramePackSampler")
    steps_reported = [p["value"] for p in result.progress if p["node"] == sampler_id]
    assert steps_reported == list(range(1, at_step + 1))  # nothing computed after the step that asked to stop
    follow_up = run(comfy, tiny_workflow("framepack_i2v", seed=99, prefix=unique_prefix("after")))
    assert follow_up.ok, follow_up.error_message


@pytest.mark.frontend
@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_ui_workflow_opens_without_missing_nodes(comfy_frontend, artifacts_dir, name):
    workflow = json.loads((build_workflows.WORKFLOWS_DIR / f"{name}.json").read_text())
    check = comfy_frontend.load_workflow(workflow, artifacts_dir / f"workflow_{name}.png")
    assert check.missing_node_types == [], check.dialog_texts
    assert check.placeholder_node_types == []
    assert check.node_count == len(workflow["nodes"])
    assert Path(check.screenshot).stat().st_size > 10_000


def _write_tiny_lora(path: Path, seed: int = 0) -> None:
    """A diffusers-format LoRA for the tiny model's first dual block and a single block."""
    import torch
    from safetensors.torch import save_file

    from framepack_core import TINY
    g = torch.Generator().manual_seed(seed)
    d, r = TINY.inner_dim, 4
    tensors = {}
    for module in ("transformer_blocks.0.attn.to_q", "single_transformer_blocks.1.proj_mlp"):
        out = TINY.mlp_dim if module.endswith("proj_mlp") else d
        tensors[f"transformer.{module}.lora_A.weight"] = torch.randn(r, d, generator=g)
        tensors[f"transformer.{module}.lora_B.weight"] = torch.randn(out, r, generator=g) * 0.5
    save_file(tensors, str(path))


def _with_lora(graph: dict, lora_name: str, strength: float) -> dict:
    graph["20"] = {"class_type": "FramePackLoraSelect", "inputs": {"lora_name": lora_name, "strength": strength},
                   "_meta": {"title": "FramePack LoRA"}}
    node_of(graph, "FramePackModelLoader")["inputs"]["lora"] = ["20", 0]
    return graph


def test_lora_stack_through_the_loader(comfy, models_dir):
    """A LoRA from models/loras through FramePack LoRA -> loader: strength 0 leaves the sampled latents unchanged,
    strength 1 changes them (compared through the test pack's Describe node, which reports exact statistics)."""
    _write_tiny_lora(models_dir / "loras" / "tiny_lora.safetensors")
    latents = {}
    for label, strength in (("none", None), ("zero", 0.0), ("full", 1.0)):
        graph = tiny_workflow("framepack_i2v", seed=5, prefix=unique_prefix(f"lora_{label}"))
        if strength is not None:
            graph = _with_lora(graph, "tiny_lora.safetensors", strength)
        graph["30"] = {"class_type": "FramePackTestDescribe", "inputs": {"value": ["9", 0]}, "_meta": {"title": "d"}}
        result = run(comfy, graph)
        assert result.ok, result.error_message
        latents[label] = json.loads(result.outputs["30"]["text"][0])["samples"]
    assert latents["zero"] == latents["none"]
    assert latents["full"] != latents["none"]



def test_timestamped_prompts_and_keyframe_nodes(comfy, input_dir):
    """Prompts and a keyframe through their nodes; the keyframe keeps its strength, and the image encoder sees the
    whole resized frame (no square crop) for the keyframe and the start image (checked on a 96x64 video, where a
    crop would drop a third of the picture)."""
    width, height = 96, 64
    graph = tiny_workflow("framepack_f1", num_frames=61, width=width, height=height, seed=8,
                          prefix=unique_prefix("prompts"))
    graph["21"] = {"class_type": "FramePackTestCLIPLoader", "inputs": {"token_dim": 32, "pooled_dim": 16},
                   "_meta": {"title": "CLIP stand-in"}}
    graph["22"] = {"class_type": "FramePackTimestampedPrompt",
                   "inputs": {"clip": ["21", 0], "text": "[0s] a cat sits\n[1s] the cat jumps\nhigh in the air"},
                   "_meta": {"title": "prompts"}}
    graph["23"] = {"class_type": "FramePackKeyframe",
                   "inputs": {"conditioning": ["8", 0], "image": ["7", 0], "vae": ["5", 0], "clip_vision": ["6", 0],
                              "time_seconds": 1.0, "strength": 0.7}, "_meta": {"title": "keyframe"}}
    sampler = node_of(graph, "FramePackSampler")["inputs"]
    sampler["prompts"] = ["22", 0]
    sampler["conditioning"] = ["23", 0]
    graph["24"] = {"class_type": "FramePackTestDescribe", "inputs": {"value": ["23", 0]}, "_meta": {"title": "d"}}
    result = run(comfy, graph)
    assert result.ok, result.error_message
    assert probe(mp4_of(comfy, result)[0])["frames"] == 61

    conditioning = json.loads(result.outputs["24"]["text"][0])
    [key] = conditioning["keyframes"]
    assert key["time_s"] == 1.0 and key["strength"] == 0.7
    loaded = torch.from_numpy(np.asarray(Image.open(input_dir / START_IMAGE).convert("RGB"), dtype=np.float32) / 255)
    pixels = resize_and_center_crop(loaded[None], width, height)
    whole = describe(vision_features(pixels, embed_dim=IMAGE_DIM, tokens=IMAGE_TOKENS, crop=False))
    cropped = describe(vision_features(pixels, embed_dim=IMAGE_DIM, tokens=IMAGE_TOKENS, crop=True))
    assert not math.isclose(whole["mean"], cropped["mean"], rel_tol=1e-3)  # the check can tell the two apart
    for embeds in (key["image"]["embeds"], conditioning["start"]["embeds"]):
        assert embeds["shape"] == whole["shape"]
        for stat in ("mean", "std", "min", "max"):
            assert math.isclose(embeds[stat], whole[stat], rel_tol=1e-5, abs_tol=1e-6), (stat, embeds, whole)
