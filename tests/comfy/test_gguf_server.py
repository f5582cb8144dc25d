"""GGUF models in a real ComfyUI: the loader lists .gguf files in models/diffusion_models, refuses a LLaMA GGUF with
the message naming the file and the fix (the server keeps running), and a tiny Q8_0 GGUF runs the shipped
image-to-video API workflow to an MP4 of exactly num_frames frames."""

from __future__ import annotations

import io
import uuid

import av
import gguf
import numpy as np
import pytest

from framepack_core.gguf_convert import convert
from framepack_dev.tiny_models import TINY_I2V, install_tiny_models, node_of, tiny_workflow

GOOD, BAD = "FramePackI2V_HY_tiny-Q8_0.gguf", "tinyllama-Q8_0.gguf"


@pytest.fixture(scope="module", autouse=True)
def gguf_models(models_dir, input_dir):
    install_tiny_models(models_dir, input_dir)
    folder = models_dir / "diffusion_models"
    convert(folder / TINY_I2V, folder / GOOD, "Q8_0")
    writer = gguf.GGUFWriter(str(folder / BAD), "llama")
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a"])
    writer.add_tensor("token_embd.weight", np.zeros((3, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _graph(model: str, num_frames: int = 30) -> dict:
    graph = tiny_workflow("framepack_i2v", num_frames=num_frames, seed=7, prefix=f"gguf/{uuid.uuid4().hex[:8]}")
    node_of(graph, "FramePackModelLoader")["inputs"]["model"] = model
    return graph


def _frames(comfy, result, graph) -> int:
    combine = next(nid for nid, node in graph.items() if node["class_type"] == "FramePackVideoCombine")
    [entry] = result.outputs[combine]["images"]
    assert entry["filename"].endswith(".mp4")
    data = comfy.view(entry["filename"], entry["subfolder"], entry["type"])
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def test_gguf_files_are_listed_refused_or_run(comfy, comfy_server):
    choices = comfy.object_info("FramePackModelLoader")["FramePackModelLoader"]["input"]["required"]["model"]
    options = choices[1]["options"] if isinstance(choices[1], dict) and "options" in choices[1] else choices[0]
    assert GOOD in options and BAD in options

    bad = comfy.run(_graph(BAD), timeout=300)
    assert bad.status == "error" and bad.error["node_type"] == "FramePackModelLoader"
    assert BAD in bad.error_message and "'llama'" in bad.error_message and "gguf_convert" in bad.error_message
    assert comfy_server.is_running()

    num_frames = 46
    graph = _graph(GOOD, num_frames)
    good = comfy.run(graph, timeout=300)
    assert good.ok, good.error_message
    assert _frames(comfy, good, graph) == num_frames
