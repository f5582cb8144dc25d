"""FramePack Safety Checker in the real server: a tiny random-weight ViT classifier (the released classifier's
architecture and file layout) forced far above or far below the threshold, loaded from models/nsfw_detector
through the node's own loading code; blocking; a missing classifier; switched off. Only the checker differs
between the prompts, so ComfyUI reuses the sampled video and each prompt costs one classifier run."""

from __future__ import annotations

import pytest

from tests.comfy.tiny_classifier import install_tiny_classifiers
from framepack_dev.tiny_models import install_tiny_models, tiny_workflow


@pytest.fixture(scope="module", autouse=True)
def tiny(models_dir, input_dir):
    install_tiny_models(models_dir, input_dir)
    install_tiny_classifiers(models_dir)


def checked(**checker) -> tuple[dict, str]:
    graph = tiny_workflow("framepack_i2v", seed=5, prefix="tests/safety")
    (node_id,) = [i for i, n in graph.items() if n["class_type"] == "FramePackSafetyChecker"]
    graph[node_id]["inputs"].update(checker)
    return graph, node_id


def report_of(result, node_id: str) -> dict:
    (report,) = result.outputs[node_id]["framepack_safety"]
    return report


def test_flagged_and_clean_videos(comfy):
    graph, node = checked(enabled=True, classifier="nsfw_image_detection", threshold=0.5, sample_frames=4)
    result = comfy.run(graph, timeout=600)
    assert result.ok, result.error_message
    report = report_of(result, node)
    assert report["flagged"] is True and report["score"] > 0.99
    # read from the MP4 (the shipped workflow returns no frames): first, last and two between of all 30 frames
    assert report["frames_checked"] == 4 and report["video_frames"] == 30

    graph, node = checked(enabled=True, classifier="tiny_clean", threshold=0.5, sample_frames=4)
    result = comfy.run(graph, timeout=600)
    assert result.ok, result.error_message
    report = report_of(result, node)
    assert report["flagged"] is False and report["score"] < 0.01

    # the same high score under a threshold of 1.0 passes: the threshold input decides
    graph, node = checked(enabled=True, classifier="nsfw_image_detection", threshold=1.0, sample_frames=2)
    result = comfy.run(graph, timeout=600)
    assert result.ok and report_of(result, node)["flagged"] is False


def test_an_image_batch_is_scored_when_no_video_is_connected(comfy):
    graph, node = checked(enabled=True, classifier="nsfw_image_detection", sample_frames=5)
    (video_id,) = [i for i, n in graph.items() if n["class_type"] == "FramePackVideoCombine"]
    graph[video_id]["inputs"]["return_frames"] = True
    del graph[node]["inputs"]["video"]
    graph[node]["inputs"]["frames"] = [video_id, 0]
    result = comfy.run(graph, timeout=600)
    assert result.ok, result.error_message
    assert report_of(result, node)["frames_checked"] == 5 and report_of(result, node)["video_frames"] == 30
    del graph[node]["inputs"]["frames"]
    result = comfy.run(graph, timeout=600)
    assert result.status == "error" and "connect FramePack Video Combine's video output" in result.error_message


def test_blocking_fails_the_prompt_with_a_message(comfy):
    graph, node = checked(enabled=True, classifier="nsfw_image_detection", block=True)
    result = comfy.run(graph, timeout=600)
    assert result.status == "error"
    assert result.error["node_type"] == "FramePackSafetyChecker"
    assert "the safety checker flagged this video" in result.error["exception_message"]
    assert "turn block off" in result.error["exception_message"]


def test_missing_classifier_names_the_file_and_where_to_get_it(comfy, models_dir):
    (models_dir / "nsfw_detector" / "half_installed").mkdir(parents=True, exist_ok=True)
    graph, _ = checked(enabled=True, classifier="not_installed")
    result = comfy.run(graph, timeout=600)
    assert result.status == "error"
    message = result.error["exception_message"]
    assert "'not_installed' is not in" in message and "nsfw_detector" in message
    assert "huggingface.co/Falconsai/nsfw_image_detection" in message

    graph, _ = checked(enabled=True, classifier="half_installed")
    result = comfy.run(graph, timeout=600)
    assert result.status == "error"
    assert "half_installed/config.json, which is missing" in result.error["exception_message"]

    graph, _ = checked(enabled=True, classifier="../nsfw_detector/tiny_clean")
    result = comfy.run(graph, timeout=600)
    assert result.status == "error" and "not a path" in result.error["exception_message"]


def test_switched_off_needs_no_classifier(comfy):
    graph, node = checked(enabled=False, classifier="not_installed")
    result = comfy.run(graph, timeout=600)
    assert result.ok, result.error_message
    assert report_of(result, node) == {"enabled": False, "flagged": False, "score": 0.0, "threshold": 0.5,
                                       "frames_checked": 0}


def test_the_client_switches_the_checker_on_and_reports_it(comfy_server, tmp_path):
    """python -m framepack_client run --enable-safety-checker true: the shipped workflow's checker (off as
    shipped) is switched on and the result says has_nsfw_contents per video."""
    import json

    from tests.comfy.test_client_e2e import cli_in_process, tiny_args

    workflow = tmp_path / "tiny_i2v.json"
    workflow.write_text(json.dumps(tiny_workflow("framepack_i2v")))
    start = comfy_server.input_dir / "tiny_start.png"
    common = ["--server", comfy_server.url, "--jobs-dir", str(tmp_path / "jobs"), "--output-dir",
              str(tmp_path / "out"), "-q", "--image", str(start), "--prompt", "checked", *tiny_args(workflow, seed=8)]
    code, out, err = cli_in_process("run", *common, "--enable-safety-checker", "true")
    result = json.loads(out)
    assert code == 0 and result["status"] == "completed", result["error"]
    assert result["has_nsfw_contents"] == [True]  # the installed tiny classifier flags everything
    code, out, err = cli_in_process("run", *common)
    assert json.loads(out)["has_nsfw_contents"] == [False]
