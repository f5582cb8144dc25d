"""Smoke tests of the real-ComfyUI harness: server, HTTP/websocket client, test node pack, tiny VAE, frontend.

One ComfyUI server serves the whole session (fixtures in conftest.py). Each prompt varies an input
(colour, text, steps) so ComfyUI's cache never answers in place of a real run.
"""

from __future__ import annotations

import io
import json
import math
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from framepack_client.server_api import ComfyClient, PromptRejected
from framepack_dev.comfy_server import PACK_LINK_NAME, REPO_ROOT, STAND_IN_LINK_NAME, ComfyServer
from framepack_dev.tiny_vae import write_tiny_taehv
from framepack_dev.stand_in_nodes.describe import describe
from framepack_dev.stand_in_nodes.stand_ins import text_conditioning, text_token_count, vision_features

TEST_NODES = ("FramePackTestTextEncode", "FramePackTestCLIPLoader", "FramePackTestClipVisionLoader",
              "FramePackTestSlowPassthrough", "FramePackTestDescribe")


def rgb_of(color: int) -> tuple[int, int, int]:
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def image_prompt(color: int, prefix: str, width: int = 64, height: int = 48, slow_steps: int = 0,
                 seconds_per_step: float = 0.01) -> dict:
    """EmptyImage -> (FramePackTestSlowPassthrough) -> SaveImage, in API format."""
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }
    if slow_steps:
        prompt["2"] = {"class_type": "FramePackTestSlowPassthrough",
                       "inputs": {"image": ["1", 0], "steps": slow_steps, "seconds_per_step": seconds_per_step}}
        prompt["3"]["inputs"]["images"] = ["2", 0]
    return prompt


def described(result, node_id: str):
    """The JSON that FramePackTestDescribe node ``node_id`` showed."""
    return json.loads(result.outputs[node_id]["text"][0])


def assert_same_summary(got, expected, rel: float = 1e-5) -> None:
    """Equal structure and shapes, statistics equal to ``rel`` (float sums differ with thread counts)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), (got, expected)
        for key in expected:
            assert_same_summary(got[key], expected[key], rel)
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), (got, expected)
        for g, e in zip(got, expected):
            assert_same_summary(g, e, rel)
    elif isinstance(expected, float):
        assert math.isclose(got, expected, rel_tol=rel, abs_tol=1e-6), (got, expected)
    else:
        assert got == expected


# ---------------------------------------------------------------------------------------------
# The server and the packs in it


def test_server_answers_and_lists_the_test_nodes(comfy_server: ComfyServer, comfy: ComfyClient):
    stats = comfy.system_stats()
    assert stats["devices"] and stats["devices"][0]["type"] == "cpu"
    if comfy_server.install.source == "pinned":
        assert stats["system"]["comfyui_version"] == "0.3.75"
    info = comfy.object_info()
    assert {"EmptyImage", "SaveImage", "VAELoader", "VAEEncode", "VAEDecode", "CLIPVisionEncode"} <= info.keys()
    for node in TEST_NODES:
        assert info[node]["category"] == "FramePack/testing"
        assert info[node]["python_module"] == f"custom_nodes.{STAND_IN_LINK_NAME}"
    single = comfy.object_info("FramePackTestTextEncode")["FramePackTestTextEncode"]
    assert single["input"]["required"]["token_dim"][1]["default"] == 32
    assert single["input"]["required"]["text"][1]["multiline"] is True
    assert single["output"] == ["CONDITIONING"]
    assert comfy.object_info("NoSuchNodeType") == {}
    assert STAND_IN_LINK_NAME not in comfy_server.import_failures()
    assert (comfy_server.custom_nodes_dir / PACK_LINK_NAME).resolve() == REPO_ROOT


def test_pack_under_test_imports_without_failure(comfy: ComfyClient, comfy_server: ComfyServer):
    assert (REPO_ROOT / "__init__.py").is_file(), "the pack has no __init__.py: ComfyUI would not load it"
    failures = comfy_server.import_failures()
    assert PACK_LINK_NAME not in failures, comfy_server.log_tail(80)
    assert "FramePackSampler" in comfy.object_info(), "the pack's nodes are not registered"


def test_import_failed_lines_are_detected(tmp_path: Path):
    server = ComfyServer.__new__(ComfyServer)  # only the log parsing is under test
    server.log_path, server._log_offset = tmp_path / "comfyui.log", 0
    server.log_path.write_text("Import times for custom nodes:\n"
                               "   0.0 seconds: /x/custom_nodes/good_pack\n"
                               "   0.3 seconds (IMPORT FAILED): /x/custom_nodes/comfyui-framepack\n")
    assert server.import_failures() == ["comfyui-framepack"]


# ---------------------------------------------------------------------------------------------
# Prompts over HTTP + websocket


def test_weight_free_prompt_reports_progress_and_saves_png(comfy: ComfyClient, output_dir: Path):
    color = 0xFF8000
    seen: list[str] = []
    result = comfy.run(image_prompt(color, "smoke_run", slow_steps=3), timeout=60,
                       on_message=lambda m: seen.append(m["type"]))
    assert result.status == "success", result.error_message
    types = result.message_types()
    for expected in ("execution_start", "executing", "progress", "executed", "execution_success"):
        assert expected in types, types
    assert types.index("execution_start") < types.index("progress") < types.index("execution_success")
    assert [(p["value"], p["max"], p["node"]) for p in result.progress] == [(1, 3, "2"), (2, 3, "2"), (3, 3, "2")]
    assert "status" in seen  # the server greets every socket; on_message sees all messages
    (ref,) = result.files("images")
    assert ref["type"] == "output" and ref["filename"].startswith("smoke_run")
    png = comfy.view(**ref)
    assert png == (output_dir / ref["subfolder"] / ref["filename"]).read_bytes()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (64, 48)
    assert image.getpixel((10, 10)) == rgb_of(color)


def test_invalid_prompt_is_rejected_with_node_errors(comfy: ComfyClient):
    prompt = image_prompt(0x102030, "rejected")
    prompt["1"]["inputs"]["width"] = 0  # below EmptyImage's minimum of 1
    with pytest.raises(PromptRejected) as caught:
        comfy.queue_prompt(prompt)
    rejected = caught.value
    assert rejected.status == 400
    assert rejected.error["type"] == "prompt_outputs_failed_validation"
    assert "1" in rejected.node_errors and rejected.node_errors["1"]["class_type"] == "EmptyImage"
    assert "width" in str(rejected)
    with pytest.raises(PromptRejected) as unknown:
        comfy.queue_prompt({"1": {"class_type": "NoSuchNodeType", "inputs": {}}})
    assert unknown.value.error["type"] == "invalid_prompt"


def test_execution_error_is_reported_with_node_and_message(comfy: ComfyClient, models_dir: Path):
    (models_dir / "vae" / "not_a_model.safetensors").write_bytes(b"this is not a safetensors file")
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "not_a_model.safetensors"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 7}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 0]}},
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "never"}},
    }
    result = comfy.run(prompt, timeout=60)
    assert result.status == "error"
    assert result.error["node_type"] == "VAELoader" and result.error["node_id"] == "1"
    assert "VAELoader" in result.error_message and result.error["exception_message"]
    assert "execution_error" in result.message_types()
    assert result.files("latents") == []


def test_interrupt_stops_the_running_prompt_and_the_next_prompt_runs(comfy: ComfyClient):
    with comfy.open_events() as events:
        started = time.monotonic()
        prompt_id = comfy.queue_prompt(image_prompt(0x00AA00, "interrupted", slow_steps=400,
                                                    seconds_per_step=0.05))  # 20 s if not stopped
        deadline = started + 30
        while time.monotonic() < deadline:  # interrupt once the slow node is really running
            message = events.next(timeout=1)
            if message and message["type"] == "progress" and message["data"]["prompt_id"] == prompt_id:
                break
        else:
            pytest.fail("the slow node never reported progress")
        comfy.interrupt(prompt_id)
        result = comfy.watch(prompt_id, timeout=30, events=events)
    assert result.status == "interrupted"
    assert result.error["node_type"] == "FramePackTestSlowPassthrough"
    assert result.outputs == {}
    assert time.monotonic() - started < 10
    follow_up = comfy.run(image_prompt(0x00AA01, "after_interrupt", slow_steps=2), timeout=60)
    assert follow_up.status == "success", follow_up.error_message
    assert [p["value"] for p in follow_up.progress] == [1, 2]
    assert len(follow_up.files("images")) == 1


def test_watch_after_the_prompt_finished_reads_the_history(comfy: ComfyClient):
    prompt_id = comfy.queue_prompt(image_prompt(0x123456, "late_watch"))
    deadline = time.monotonic() + 60
    while prompt_id not in comfy.history(prompt_id):
        assert time.monotonic() < deadline, "prompt never finished"
        time.sleep(0.05)
    result = comfy.watch(prompt_id, timeout=10)  # its websocket connects after everything happened
    assert result.status == "success"
    assert result.message_types()[0] == "execution_start" and "execution_success" in result.message_types()
    assert result.files("images")[0]["filename"].startswith("late_watch")
    assert comfy.queue() == {"queue_running": [], "queue_pending": []}


def test_watch_times_out_with_a_clear_error(comfy: ComfyClient):
    prompt_id = comfy.queue_prompt(image_prompt(0x654321, "slow_watch", slow_steps=40, seconds_per_step=0.05))
    try:
        with pytest.raises(TimeoutError, match=f"prompt {prompt_id} did not finish within 0.3 s"):
            comfy.watch(prompt_id, timeout=0.3, poll_interval=0.1)
    finally:
        comfy.interrupt(prompt_id)
        assert comfy.watch(prompt_id, timeout=30).status == "interrupted"


# ---------------------------------------------------------------------------------------------
# Test node pack stand-ins, seen through ComfyUI


def test_stand_in_text_encode_gives_hunyuan_shaped_conditioning(comfy: ComfyClient):
    texts = {"a": "a cat walks on the beach", "b": "a dog runs"}
    prompt = {}
    for key, text in texts.items():
        prompt[f"enc_{key}"] = {"class_type": "FramePackTestTextEncode",
                                "inputs": {"text": text, "token_dim": 32, "pooled_dim": 16}}
        prompt[f"show_{key}"] = {"class_type": "FramePackTestDescribe", "inputs": {"value": [f"enc_{key}", 0]}}
    result = comfy.run(prompt, timeout=60)
    assert result.ok, result.error_message
    for key, text in texts.items():
        summary = described(result, f"show_{key}")
        (tokens, extras), = summary
        assert tokens["shape"] == [1, len(text.split()) + 2, 32]
        assert extras["pooled_output"]["shape"] == [1, 16]
        assert_same_summary(summary, describe(text_conditioning(text, 32, 16)))
    assert described(result, "show_a")[0][0]["mean"] != described(result, "show_b")[0][0]["mean"]


def test_stand_in_text_encode_is_deterministic_and_capped():
    first, again = text_conditioning("same words"), text_conditioning("same words")
    assert torch.equal(first[0][0], again[0][0]) and torch.equal(first[0][1]["pooled_output"],
                                                                 again[0][1]["pooled_output"])
    assert not torch.equal(first[0][0], text_conditioning("other words")[0][0])
    assert text_token_count("") == 2 and text_token_count("word " * 1000) == 256


def test_stand_in_clip_vision_works_with_core_clip_vision_encode(comfy: ComfyClient, tmp_path: Path):
    width, height = 40, 24  # not square: "center" crops, "none" does not
    pixels = torch.stack(torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width),
                                        indexing="ij"), dim=-1)
    rgb = torch.cat([pixels, 1 - pixels[..., :1]], dim=-1)
    image = Image.fromarray((rgb * 255).round().to(torch.uint8).numpy(), "RGB")
    path = tmp_path / f"vision_{uuid.uuid4().hex[:8]}.png"
    image.save(path)
    stored = comfy.upload_image(path)
    assert stored == path.name and comfy.view(stored, type="input") == path.read_bytes()

    prompt = {
        "load": {"class_type": "LoadImage", "inputs": {"image": stored}},
        "clip": {"class_type": "FramePackTestClipVisionLoader", "inputs": {"embed_dim": 24, "tokens": 16}},
    }
    for crop in ("center", "none"):
        prompt[f"enc_{crop}"] = {"class_type": "CLIPVisionEncode",
                                 "inputs": {"clip_vision": ["clip", 0], "image": ["load", 0], "crop": crop}}
        prompt[f"show_{crop}"] = {"class_type": "FramePackTestDescribe", "inputs": {"value": [f"enc_{crop}", 0]}}
    result = comfy.run(prompt, timeout=60)
    assert result.ok, result.error_message

    loaded = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)[None]
    for crop in ("center", "none"):
        summary = described(result, f"show_{crop}")
        assert summary["last_hidden_state"]["shape"] == [1, 16, 24]
        expected = vision_features(loaded, embed_dim=24, tokens=16, crop=crop == "center")
        assert_same_summary(summary["last_hidden_state"], describe(expected))
    assert described(result, "show_center")["last_hidden_state"]["mean"] != \
        described(result, "show_none")["last_hidden_state"]["mean"]


# ---------------------------------------------------------------------------------------------
# Tiny TAEHV through ComfyUI's own VAELoader / VAEEncode / VAEDecode


def test_tiny_taehv_loads_natively_and_round_trips_video_shapes(comfy: ComfyClient, comfy_server: ComfyServer,
                                                                models_dir: Path):
    write_tiny_taehv(models_dir / "vae" / "tiny_taehv_test.safetensors")
    frames, size = 5, 64
    prompt = {
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "tiny_taehv_test.safetensors"}},
        "pixels": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": frames,
                                                          "color": 0x3366CC}},
        "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["pixels", 0], "vae": ["vae", 0]}},
        "save_latent": {"class_type": "SaveLatent", "inputs": {"samples": ["encode", 0],
                                                               "filename_prefix": "taehv/latent"}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["encode", 0], "vae": ["vae", 0]}},
        "save_frames": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0],
                                                              "filename_prefix": "taehv/frame"}},
    }
    result = comfy.run(prompt, timeout=120)
    assert result.ok, result.error_message
    assert "Missing VAE keys" not in comfy_server.log_text()

    from safetensors.torch import load as load_safetensors

    (latent_ref,) = result.files("latents")
    latent = load_safetensors(comfy.view(**latent_ref))["latent_tensor"]
    # HunyuanVideo latents: 16 channels, time compressed 4x keeping the first frame, space 8x.
    assert list(latent.shape) == [1, 16, (frames - 1) // 4 + 1, size // 8, size // 8]
    assert torch.isfinite(latent).all()

    frame_refs = result.files("images")
    assert len(frame_refs) == 4 * latent.shape[2] - 3 == frames  # the decoder trims 3 of its 4x frames
    for ref in frame_refs:
        assert Image.open(io.BytesIO(comfy.view(**ref))).size == (size, size)


# ---------------------------------------------------------------------------------------------
# The frontend, in headless chromium


def _ui_node(node_id: int, node_type: str, order: int, inputs: list, outputs: list, widgets: list) -> dict:
    return {"id": node_id, "type": node_type, "pos": [80 + 380 * order, 120], "size": [320, 140], "flags": {},
            "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
            "properties": {"Node name for S&R": node_type}, "widgets_values": widgets}


def ui_workflow(middle_type: str | None) -> dict:
    """UI-format EmptyImage -> [middle_type] -> SaveImage (middle_type takes and gives an IMAGE)."""
    nodes = [_ui_node(1, "EmptyImage", 0, [], [{"name": "IMAGE", "type": "IMAGE", "links": [1]}], [64, 64, 1, 0])]
    links = [[1, 1, 0, 2 if middle_type else 3, 0, "IMAGE"]]
    if middle_type:
        nodes.append(_ui_node(2, middle_type, 1, [{"name": "image", "type": "IMAGE", "link": 1}],
                              [{"name": "IMAGE", "type": "IMAGE", "links": [2]}], [2, 0.01]))
        links.append([2, 2, 0, 3, 0, "IMAGE"])
    nodes.append(_ui_node(3, "SaveImage", 2, [{"name": "images", "type": "IMAGE", "link": links[-1][0]}], [],
                          ["frontend_check"]))
    return {"id": str(uuid.uuid4()), "revision": 0, "last_node_id": 3, "last_link_id": len(links), "nodes": nodes,
            "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


@pytest.mark.frontend
def test_frontend_reports_missing_node_types_only(comfy_frontend, artifacts_dir: Path):
    core = comfy_frontend.load_workflow(ui_workflow(None), artifacts_dir / "frontend_core_workflow.png")
    assert core.node_count == 2
    assert core.missing_node_types == [] and core.placeholder_node_types == [] and core.dialog_texts == []

    with_pack = comfy_frontend.load_workflow(ui_workflow("FramePackTestSlowPassthrough"),
                                             artifacts_dir / "frontend_test_pack_workflow.png")
    assert with_pack.node_count == 3 and with_pack.missing_node_types == []

    fake = comfy_frontend.load_workflow(ui_workflow("FramePackNoSuchNodeXYZ"),
                                        artifacts_dir / "frontend_missing_node_workflow.png")
    assert fake.missing_node_types == ["FramePackNoSuchNodeXYZ"]
    assert fake.placeholder_node_types == ["FramePackNoSuchNodeXYZ"]
    assert any("missing nodes" in text and "FramePackNoSuchNodeXYZ" in text for text in fake.dialog_texts), \
        fake.dialog_texts
    for check in (core, with_pack, fake):
        assert check.screenshot.stat().st_size > 10_000
        assert Image.open(check.screenshot).size == comfy_frontend.viewport


# ---------------------------------------------------------------------------------------------
# Restart last: every test above shares the first server process


def test_restart_keeps_port_and_folders(comfy_server: ComfyServer):
    port, base = comfy_server.port, comfy_server.base_dir
    marker = comfy_server.input_dir / "kept_across_restart.txt"
    marker.write_text("still here")
    comfy_server.restart()
    assert comfy_server.is_running() and comfy_server.port == port and comfy_server.base_dir == base
    assert marker.read_text() == "still here"
    assert "Starting server" in comfy_server.log_text() and "got prompt" not in comfy_server.log_text()
    assert comfy_server.client().system_stats()["devices"]
