"""Offline: how the hosted parameters fill the shipped API workflows (framepack_client.workflow): which workflow
and model, the filled inputs, nodes found by title and never by id, workflows that cannot be filled refused."""

from __future__ import annotations

import copy
import json

import pytest

from framepack_client.workflow import (WorkflowError, build_prompt, find_node, hosted_name, load_workflow, model_id,
                                       workflow_name)
from tests.client.test_hosted_params import end_png, make, shipped, start_png, titled  # noqa: F401 - fixtures


# -- workflows -----------------------------------------------------------------------------------------------------

def test_workflow_choice_and_model_ids(start_png, end_png):
    plain, flf = make(start_png), make(start_png, end_image=str(end_png))
    assert workflow_name(plain) == "framepack_i2v" and workflow_name(flf) == "framepack_first_last_frame"
    assert workflow_name(plain, f1=True) == workflow_name(flf, f1=True) == "framepack_f1"
    assert (model_id(plain), model_id(flf), model_id(plain, True), model_id(flf, True)) == \
        ("framepack/i2v", "framepack/flf2v", "framepack/f1", "framepack/f1-flf2v")


def test_build_prompt_i2v(start_png):
    p = make(start_png, prompt="the cat jumps", negative_prompt="blur", num_frames=61, num_inference_steps=8,
             guidance_scale=6, cfg_scale=1.5, seed=42, aspect_ratio="9:16", resolution="720p")
    original = shipped("framepack_i2v")
    graph = build_prompt(p, original, start_image_name="up_start.png")
    assert original == shipped("framepack_i2v"), "the input workflow must not change"
    assert set(graph) == set(original)
    assert titled(graph, "FramePackLoadImage", "Start image")["inputs"]["image"] == "up_start.png"
    assert titled(graph, "CLIPTextEncode", "Positive prompt")["inputs"]["text"] == "the cat jumps"
    assert titled(graph, "CLIPTextEncode", "Negative prompt")["inputs"]["text"] == "blur"
    s = titled(graph, "FramePackSampler")["inputs"]
    assert (s["num_frames"], s["num_inference_steps"], s["guidance_scale"], s["cfg_scale"], s["seed"]) == \
        (61, 8, 6.0, 1.5, 42)
    assert isinstance(s["guidance_scale"], float) and isinstance(s["cfg_scale"], float)
    c = titled(graph, "FramePackImageConditioning")["inputs"]
    assert (c["aspect_ratio"], c["resolution"]) == ("9:16", "720p") and "end_image" not in c
    # everything else is the shipped workflow's
    assert titled(graph, "FramePackModelLoader") == titled(original, "FramePackModelLoader")
    assert s["sampler"] == "unipc_bh1" and s["teacache_threshold"] == 0.15


def test_build_prompt_first_last_frame(start_png, end_png):
    p = make(start_png, end_image=str(end_png), strength=0.6, resolution="custom", width=64, height=96)
    graph = build_prompt(p, shipped("framepack_first_last_frame"), start_image_name="s.png", end_image_name="e.png")
    end_id = next(i for i, n in graph.items() if n["_meta"]["title"] == "End image")
    c = titled(graph, "FramePackImageConditioning")["inputs"]
    assert c["end_image"] == [end_id, 0] and graph[end_id]["inputs"]["image"] == "e.png"
    assert (c["strength"], c["resolution"], c["custom_width"], c["custom_height"]) == (0.6, "custom", 64, 96)
    assert titled(graph, "FramePackSampler")["inputs"]["num_frames"] == 240


def test_build_prompt_f1_with_and_without_end_image(start_png, end_png):
    original = shipped("framepack_f1")
    plain = build_prompt(make(start_png), original)
    assert titled(plain, "FramePackLoadImage", "Start image")["inputs"]["image"] == "start.png"  # default: the file name
    assert "F1" in titled(plain, "FramePackModelLoader")["inputs"]["model"]
    assert len(plain) == len(original)
    with_end = build_prompt(make(start_png, end_image=str(end_png)), original, end_image_name="e.png")
    assert len(with_end) == len(original) + 1
    end_id = next(i for i, n in with_end.items() if n["_meta"]["title"] == "End image")
    assert end_id not in original and with_end[end_id]["class_type"] == "FramePackLoadImage"
    assert titled(with_end, "FramePackImageConditioning")["inputs"]["end_image"] == [end_id, 0]


def test_end_image_node_is_removed_when_not_used(start_png):
    graph = build_prompt(make(start_png), shipped("framepack_first_last_frame"))
    assert not [n for n in graph.values() if n["_meta"]["title"] == "End image"]
    assert "end_image" not in titled(graph, "FramePackImageConditioning")["inputs"]


def _renumbered(graph: dict) -> tuple[dict, dict]:
    """The same graph with other node ids (links rewritten), and the old -> new map."""
    mapping = {old: f"n{100 - i}" for i, old in enumerate(graph)}
    out = {}
    for old, node in graph.items():
        node = copy.deepcopy(node)
        for key, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] in mapping:
                node["inputs"][key] = [mapping[value[0]], value[1]]
        out[mapping[old]] = node
    return out, mapping


@pytest.mark.parametrize("name", ["framepack_i2v", "framepack_first_last_frame", "framepack_f1"])
def test_filling_never_depends_on_node_ids(start_png, end_png, name):
    p = make(start_png, end_image=str(end_png), seed=9, num_frames=33)
    original = shipped(name)
    renamed, _ = _renumbered(original)
    a = build_prompt(p, original, model="m.safetensors", filename_prefix="x/y")
    b = build_prompt(p, renamed, model="m.safetensors", filename_prefix="x/y")
    by_title_a = {(n["class_type"], n["_meta"]["title"]): n["inputs"] for n in a.values()}
    by_title_b = {(n["class_type"], n["_meta"]["title"]): n["inputs"] for n in b.values()}
    assert by_title_a.keys() == by_title_b.keys()
    for key in by_title_a:
        strip = lambda inputs: {k: v for k, v in inputs.items() if not isinstance(v, list)}  # noqa: E731
        assert strip(by_title_a[key]) == strip(by_title_b[key]), key
    assert titled(b, "FramePackModelLoader")["inputs"]["model"] == "m.safetensors"
    assert titled(b, "FramePackVideoCombine")["inputs"]["filename_prefix"] == "x/y"
    end_b = next(i for i, n in b.items() if n["_meta"]["title"] == "End image")
    assert titled(b, "FramePackImageConditioning")["inputs"]["end_image"] == [end_b, 0]


def test_workflow_without_the_titles_is_refused(start_png, tmp_path):
    graph = shipped("framepack_i2v")
    titled(graph, "CLIPTextEncode", "Positive prompt")["_meta"]["title"] = "CLIP Text Encode"
    with pytest.raises(WorkflowError, match="titled 'Positive prompt'"):
        build_prompt(make(start_png), graph)
    with pytest.raises(WorkflowError, match="FramePackSampler"):
        find_node({"1": {"class_type": "KSampler", "inputs": {}}}, "FramePackSampler")
    ui_like = tmp_path / "ui.json"
    ui_like.write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(WorkflowError, match="not an API-format workflow"):
        load_workflow(ui_like)
    with pytest.raises(WorkflowError, match="does not exist"):
        load_workflow(tmp_path / "missing.json")


@pytest.mark.parametrize("content,says", [
    ("{}", "is not an API-format workflow"),
    ('{"1": {"inputs": {}}}', "is not an API-format workflow"),  # a node without class_type
    ('{"1": ["LoadImage"]}', "is not an API-format workflow"),  # a node that is not an object
    ('{"1": ', "is not valid JSON"),
])
def test_a_workflow_file_that_is_no_api_workflow_is_refused_by_its_path(tmp_path, content, says):
    path = tmp_path / "mine.json"
    path.write_text(content)
    with pytest.raises(WorkflowError, match=f"^(workflow file )?'{path}' {says}"):
        load_workflow(path)
    with pytest.raises(WorkflowError, match=f"^workflow file '{tmp_path / 'missing.json'}' does not exist$"):
        load_workflow(tmp_path / "missing.json")


def test_an_added_end_image_node_takes_a_fresh_id_and_keeps_every_node(start_png, end_png):
    graph = shipped("framepack_i2v")  # no end image node: build_prompt adds one
    prompt = build_prompt(make(start_png, end_image=str(end_png)), graph)
    [new_id] = set(prompt) - set(graph)
    assert new_id.isdigit() and int(new_id) > max(int(i) for i in graph)  # after every id, so never a reused one
    assert prompt[new_id]["_meta"]["title"] == "End image"
    assert all(prompt[i]["class_type"] == node["class_type"] for i, node in graph.items())


def test_shipped_workflows_load_by_name():
    for name in ("framepack_i2v", "framepack_first_last_frame", "framepack_f1"):
        assert load_workflow(name) == shipped(name)


def test_node_inputs_map_back_to_hosted_names():
    graph = shipped("framepack_first_last_frame")
    ids = {(n["class_type"], n["_meta"]["title"]): i for i, n in graph.items()}
    assert hosted_name(graph, ids[("FramePackSampler", "FramePack Sampler")], "num_frames") == "num_frames"
    assert hosted_name(graph, ids[("FramePackLoadImage", "End image")], "image") == "end_image"
    assert hosted_name(graph, ids[("FramePackLoadImage", "Start image")], "image") == "image"
    assert hosted_name(graph, ids[("CLIPTextEncode", "Negative prompt")], "text") == "negative_prompt"
    assert hosted_name(graph, ids[("FramePackImageConditioning", "FramePack Image Conditioning")],
                       "custom_width") == "width"
    assert hosted_name(graph, ids[("FramePackSampler", "FramePack Sampler")], "window_size") is None


# -- found by the mutation run (scripts/mutation.sh)

def _with_end_node(graph: dict, node_id: str) -> dict:
    graph = copy.deepcopy(graph)
    graph[node_id] = {"class_type": "LoadImage", "inputs": {"image": "old.png"}, "_meta": {"title": "End image"}}
    return graph


def test_an_end_image_node_already_in_the_workflow_is_filled_and_linked(start_png, end_png):
    graph = _with_end_node(shipped("framepack_i2v"), "900")
    prompt = build_prompt(make(start_png, end_image=str(end_png)), graph, end_image_name="e.png")
    assert prompt["900"]["inputs"]["image"] == "e.png"
    cond = titled(prompt, "FramePackImageConditioning")
    assert cond["inputs"]["end_image"] == ["900", 0]


def test_two_end_image_nodes_are_refused(start_png, end_png):
    graph = _with_end_node(_with_end_node(shipped("framepack_i2v"), "900"), "901")
    with pytest.raises(WorkflowError, match="End image"):
        build_prompt(make(start_png, end_image=str(end_png)), graph)
