"""The transformer's placement as ComfyUI's model management sees it, on the real (CPU) server: placed once and kept
between jobs, given back by "Unload models" and placed again by the next job; an out-of-memory error while
sampling names the fixes, gives the memory back, and the next job succeeds; fp16 compute is refused with the
reason. Each test loads its own copy of the tiny model, so the placement it counts is its own."""

from __future__ import annotations

import shutil
import time
import uuid

import pytest

from framepack_client.server_api import PromptRejected
from framepack_dev.tiny_models import TINY_I2V, install_tiny_models, node_of, tiny_workflow


@pytest.fixture(scope="module", autouse=True)
def tiny_models(models_dir, input_dir):
    install_tiny_models(models_dir, input_dir)


@pytest.fixture
def model_name(models_dir):
    name = f"FramePackI2V_HY_placement_{uuid.uuid4().hex[:8]}.safetensors"
    shutil.copy(models_dir / "diffusion_models" / TINY_I2V, models_dir / "diffusion_models" / name)
    return name


def _graph(model_name: str, seed: int) -> dict:
    graph = tiny_workflow("framepack_i2v", seed=seed, prefix=f"tests/placement_{uuid.uuid4().hex[:8]}")
    node_of(graph, "FramePackModelLoader")["inputs"]["model"] = model_name
    return graph


def _count(server, text: str) -> int:
    return server.log_text(whole=True).count(text)


def _unload_models(comfy, server, released: str) -> None:
    """POST /free {unload_models} (the "Unload models" button; the node cache stays) until the release is logged:
    ComfyUI's worker only sees the flag when it wakes, and a /free that lands while it is between two waits is
    noticed only at its next wake (up to 1000 s later), so the request is repeated."""
    deadline = time.monotonic() + 60
    while _count(server, released) < 1:
        assert time.monotonic() < deadline, f"{released!r} never appeared in the log:\n{server.log_tail(30)}"
        comfy.free(unload_models=True, free_memory=False)
        wake = time.monotonic() + 5
        while _count(server, released) < 1 and time.monotonic() < wake:
            time.sleep(0.2)


def _cached_nodes(result) -> set[str]:
    return {n for m in result.messages if m["type"] == "execution_cached" for n in m["data"]["nodes"]}


def test_placement_is_kept_between_jobs_and_given_back_on_unload(comfy, comfy_server, model_name):
    placed, released = f"FramePack: {model_name} placed on", f"FramePack: {model_name} released"
    loads = _count(comfy_server, "Requested to load FramePackTransformer")  # model management's own log line
    first = comfy.run(_graph(model_name, seed=1), timeout=300)
    assert first.ok, first.error_message
    assert _count(comfy_server, placed) == 1
    assert _count(comfy_server, "Requested to load FramePackTransformer") == loads + 1

    second = comfy.run(_graph(model_name, seed=2), timeout=300)
    assert second.ok, second.error_message
    loader = next(n for n, node in _graph(model_name, 0).items() if node["class_type"] == "FramePackModelLoader")
    sampler = next(n for n, node in _graph(model_name, 0).items() if node["class_type"] == "FramePackSampler")
    assert loader in _cached_nodes(second) and sampler not in _cached_nodes(second)  # same model, new sampling
    assert _count(comfy_server, placed) == 1, "the second job placed the model again"
    assert _count(comfy_server, released) == 0

    _unload_models(comfy, comfy_server, released)
    third = comfy.run(_graph(model_name, seed=3), timeout=300)
    assert third.ok, third.error_message
    assert loader in _cached_nodes(third)
    assert _count(comfy_server, placed) == 2 and "placement 2 of this model" in comfy_server.log_text(whole=True)


def test_out_of_memory_while_sampling_names_the_fixes_and_the_next_job_succeeds(comfy, comfy_server, model_name):
    graph = _graph(model_name, seed=4)
    loader = next(n for n, node in graph.items() if node["class_type"] == "FramePackModelLoader")
    graph["oom"] = {"class_type": "FramePackTestOutOfMemoryOnce", "inputs": {"model": [loader, 0]},
                    "_meta": {"title": "out of memory once"}}
    node_of(graph, "FramePackSampler")["inputs"]["model"] = ["oom", 0]
    failed = comfy.run(graph, timeout=300)
    assert not failed.ok
    message = failed.error_message
    for fix in ("ran out of GPU memory while sampling", "vram_reserve_gb", "fp8_e4m3fn", "window_size", "injected"):
        assert fix in message, message
    assert _count(comfy_server, f"FramePack: {model_name} released") == 1

    node_of(graph, "FramePackSampler")["inputs"]["seed"] = 5
    again = comfy.run(graph, timeout=300)
    assert again.ok, again.error_message
    assert "oom" in _cached_nodes(again)  # the same (now disarmed) model: no new fault, no reload
    assert _count(comfy_server, f"FramePack: {model_name} placed on") == 2


def test_fp16_compute_is_refused_with_the_reason(comfy, model_name):
    graph = _graph(model_name, seed=6)
    node_of(graph, "FramePackModelLoader")["inputs"]["compute_dtype"] = "fp16"
    with pytest.raises(PromptRejected) as err:
        comfy.queue_prompt(graph)
    text = str(err.value.node_errors)
    assert "fp16 is not supported" in text and "Use bf16" in text, text


@pytest.mark.parametrize("reserve_gb", [0.0, 3.25])
def test_activation_reserve_is_the_loaders_or_derived_from_the_job(comfy, comfy_server, model_name, reserve_gb):
    """0 (the default) derives the reserve from the job's size (tiny here: the 0.5 GB margin and a little more);
    any other value is used as given."""
    from framepack_core import TINY
    from framepack_core.memory import default_reserve_bytes
    from framepack_core.planning import plan_video

    graph = _graph(model_name, seed=7)
    node_of(graph, "FramePackModelLoader")["inputs"]["vram_reserve_gb"] = reserve_gb
    result = comfy.run(graph, timeout=300)
    assert result.ok, result.error_message
    sampler = node_of(graph, "FramePackSampler")["inputs"]
    plan = plan_video(sampler["num_frames"], "inverted", sampler["window_size"])
    expected = reserve_gb * 2 ** 30 or default_reserve_bytes(TINY, max(s.num_latents for s in plan.sections), 8, 8,
                                                            dtype_bytes=4)
    assert f"{expected / 2 ** 30:.3f} GB kept free for activations" in comfy_server.log_text(whole=True)
