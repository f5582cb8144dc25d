"""The speed options through the real server on tiny weights: torch.compile on the loader (off and on give the
same latents; a workflow without the new inputs runs as before), MagCache on the sampler (published ratios,
a calibration run writing its file into models/framepack_magcache, that file used, bad files and names refused)
and EasyCache on the sampler (steps skipped, an MP4 with every frame)."""

from __future__ import annotations

import io
import json
import uuid

import av
import pytest

from framepack_client.server_api import PromptRejected
from framepack_core.magcache import MagCache, published_ratios
from framepack_dev.tiny_models import install_tiny_models, node_of, tiny_workflow

DESCRIBE = "30"


@pytest.fixture(scope="module", autouse=True)
def tiny_models(models_dir, input_dir):
    install_tiny_models(models_dir, input_dir)


def _run(comfy, graph):
    """Runs the graph with a Describe node on the sampler's latent; (exact latent statistics, sampler report)."""
    graph[DESCRIBE] = {"class_type": "FramePackTestDescribe", "inputs": {"value": ["9", 0]}, "_meta": {"title": "d"}}
    result = comfy.run(graph, timeout=900)
    assert result.ok, result.error_message
    samples = json.loads(result.outputs[DESCRIBE]["text"][0])["samples"]
    return samples, result.outputs["9"]["framepack"][0], result.outputs["9"]["text"][0]


def _skipped_steps(cache: MagCache) -> int:
    skipped = 0
    for _ in range(cache.num_steps):
        if cache.should_compute():
            cache.store_residual(0)
        else:
            skipped += 1
    return skipped


def _combo_options(comfy, node: str, name: str) -> list:
    spec = comfy.object_info(node)[node]["input"]
    entry = {**spec.get("required", {}), **spec.get("optional", {})}[name]
    return entry[0] if isinstance(entry[0], list) else entry[1]["options"]


def test_compile_off_and_on_give_the_same_latents(comfy):
    old = tiny_workflow("framepack_i2v", num_frames=40, window_size=4, seed=11)
    assert "torch_compile" not in node_of(old, "FramePackModelLoader")["inputs"]  # as saved before the option
    baseline, _, _ = _run(comfy, old)
    latents = {}
    for compiled in (False, True):
        graph = tiny_workflow("framepack_i2v", num_frames=40, window_size=4, seed=11)
        node_of(graph, "FramePackModelLoader")["inputs"].update(torch_compile=compiled, compile_mode="default")
        latents[compiled], report, _ = _run(comfy, graph)
        assert report["sections"] >= 2
    assert latents[False] == baseline
    for stat in ("mean", "std", "min", "max"):
        assert latents[True][stat] == pytest.approx(latents[False][stat], abs=1e-4), stat


def test_magcache_with_the_published_ratios(comfy):
    steps, threshold = 10, 0.5
    graph = tiny_workflow("framepack_i2v", steps=steps, seed=12, cache="magcache", magcache_threshold=threshold,
                          magcache_ratios="published")
    cached, report, _ = _run(comfy, graph)
    stats = report["stats"]
    skipped = _skipped_steps(MagCache(steps, published_ratios("I2V_HY"), threshold))  # the core's own decisions
    assert skipped > 0
    assert stats["magcache_skipped"] == skipped * report["sections"]
    assert stats["teacache_skipped"] == 0
    plain, _, _ = _run(comfy, tiny_workflow("framepack_i2v", steps=steps, seed=12, cache="none"))
    assert cached != plain


def test_calibration_run_writes_a_file_the_sampler_then_takes(comfy, models_dir):
    graph = tiny_workflow("framepack_f1", num_frames=40, window_size=4, steps=6, seed=13, cache="magcache_calibrate")
    _, report, text = _run(comfy, graph)
    name = report["stats"]["magcache_calibration"]["file"]
    assert name.startswith("F1_6steps_") and name.endswith(".json") and name in text
    saved = json.loads((models_dir / "framepack_magcache" / name).read_text())
    assert saved["format"] == "framepack-magcache-ratios" and len(saved["ratios"]) == 6
    assert len(saved["sections"]) == report["sections"]
    assert name in _combo_options(comfy, "FramePackSampler", "magcache_ratios")  # listed after a refresh
    graph = tiny_workflow("framepack_f1", num_frames=40, window_size=4, steps=6, seed=13, cache="magcache",
                          magcache_ratios=name, magcache_threshold=1.0)
    _, report, _ = _run(comfy, graph)
    assert report["stats"]["magcache_computed"] > 0


def test_bad_calibration_files_and_names_are_refused(comfy, models_dir):
    folder = models_dir / "framepack_magcache"
    folder.mkdir(exist_ok=True)
    (folder / "broken.json").write_text("{not json")
    graph = tiny_workflow("framepack_i2v", steps=4, seed=14, cache="magcache", magcache_ratios="broken.json")
    result = comfy.run(graph, timeout=300)
    assert not result.ok and "not valid JSON" in result.error_message
    for name in ("../../secret.json", "/etc/passwd"):
        graph = tiny_workflow("framepack_i2v", steps=4, seed=14, cache="magcache", magcache_ratios=name)
        with pytest.raises(PromptRejected) as err:
            comfy.queue_prompt(graph)
        assert "magcache_ratios" in json.dumps(err.value.node_errors)
    follow_up = comfy.run(tiny_workflow("framepack_i2v", steps=4, seed=14), timeout=300)
    assert follow_up.ok, follow_up.error_message  # the server keeps serving


def test_easycache_skips_steps_and_the_mp4_has_every_frame(comfy):
    num_frames, steps = 37, 8  # EasyCache always computes its first 5 steps and the last
    graph = tiny_workflow("framepack_i2v", num_frames=num_frames, steps=steps, seed=15, cache="easycache",
                          easycache_threshold=1.0, prefix=f"tests/easycache_{uuid.uuid4().hex[:8]}")
    result = comfy.run(graph, timeout=900)
    assert result.ok, result.error_message
    report = result.outputs["9"]["framepack"][0]
    stats = report["stats"]
    assert stats["easycache_skipped"] > 0
    assert stats["easycache_computed"] + stats["easycache_skipped"] == steps * report["sections"]
    assert stats["teacache_skipped"] == stats["magcache_skipped"] == 0
    [entry] = result.outputs["10"]["images"]
    assert entry["filename"].endswith(".mp4")
    data = comfy.view(entry["filename"], entry["subfolder"], entry["type"])
    with av.open(io.BytesIO(data)) as container:
        assert sum(1 for _ in container.decode(video=0)) == num_frames
