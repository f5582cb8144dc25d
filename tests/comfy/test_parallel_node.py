"""FramePack Parallel through the real server on tiny weights, with CPU ranks (gpus "cpu:2"): the same latents as
one process (sequence split, and CFG branches on two halves), the group reused by the next job and stopped by
"Unload models", and layouts that cannot run refused with their fix while the server keeps working."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from framepack_client.server_api import PromptRejected
from framepack_dev.tiny_models import install_tiny_models, tiny_workflow

SAMPLER, DESCRIBE, PARALLEL = "9", "30", "40"
WORKER_MODULE = "framepack_core.parallel.worker"


@pytest.fixture(scope="module", autouse=True)
def tiny_models(models_dir, input_dir):
    install_tiny_models(models_dir, input_dir)


def _graph(gpus: str | None = None, cfg_parallel: bool = False, seed: int = 21, **sampler) -> dict:
    graph = tiny_workflow("framepack_i2v", num_frames=40, window_size=4, seed=seed, **sampler)
    graph[DESCRIBE] = {"class_type": "FramePackTestDescribe", "inputs": {"value": [SAMPLER, 0]},
                       "_meta": {"title": "describe"}}
    if gpus is not None:
        graph[PARALLEL] = {"class_type": "FramePackParallel", "inputs": {"gpus": gpus, "cfg_parallel": cfg_parallel},
                           "_meta": {"title": "parallel"}}
        graph[SAMPLER]["inputs"]["parallel"] = [PARALLEL, 0]
    return graph


def _run(comfy, graph):
    result = comfy.run(graph, timeout=900)
    assert result.ok, result.error_message
    samples = json.loads(result.outputs[DESCRIBE]["text"][0])["samples"]
    return samples, result.outputs[SAMPLER]["framepack"][0], result


def _workers() -> list[int]:
    """Pids of running parallel workers on this machine (the test server's: tests run one server at a time)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if WORKER_MODULE in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _assert_same_latents(got: dict, want: dict):
    for stat in ("mean", "std", "min", "max"):
        assert got[stat] == pytest.approx(want[stat], abs=1e-5), stat


def test_two_cpu_ranks_give_the_single_process_video_and_unload_stops_them(comfy):
    single, _, _ = _run(comfy, _graph())
    split, report, result = _run(comfy, _graph("cpu:2"))
    _assert_same_latents(split, single)
    assert report["parallel"] == {"devices": ["cpu", "cpu"], "sequence_split": 2, "cfg_split": False}
    assert report["sections"] >= 2 and len(result.progress) >= report["sections"] * 4  # steps relayed
    first = sorted(_workers())
    assert len(first) == 2
    again, _, _ = _run(comfy, _graph("cpu:2", seed=22))  # another seed: ComfyUI would reuse a cached result
    _assert_same_latents(again, _run(comfy, _graph(seed=22))[0])
    assert sorted(_workers()) == first  # the same group ran the second job
    comfy.free()
    deadline = time.monotonic() + 30
    while _workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _workers() == []


def test_cfg_branches_on_two_ranks(comfy):
    single, _, _ = _run(comfy, _graph(cfg_scale=3.0))
    split, report, _ = _run(comfy, _graph("cpu:2", cfg_parallel=True, cfg_scale=3.0))
    _assert_same_latents(split, single)
    assert report["parallel"]["cfg_split"] is True and report["parallel"]["sequence_split"] == 1


def test_layouts_that_cannot_run_are_refused_and_the_server_goes_on(comfy):
    with pytest.raises(PromptRejected, match="sees no CUDA GPU"):
        comfy.queue_prompt(_graph("all"))
    # 3 ranks cannot split the tiny model's 2 heads: the sampler says so before starting any worker
    running = sorted(_workers())
    result = comfy.run(_graph("cpu:3"), timeout=300)
    assert not result.ok and "divisible by 3; this model has 2 heads: use 1, 2 GPUs" in result.error_message
    assert sorted(_workers()) == running
    ok, _, _ = _run(comfy, _graph())
    assert ok["std"] > 0
