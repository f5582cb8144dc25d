"""Bad inputs and faults against the real server on tiny weights. Every case asserts a clear error (it names the
input or file and says how to fix it) or a correct result, and afterwards (autouse fixture) that the session
server still answers and a following cheap valid prompt succeeds.

Cases go through the API client (python -m framepack_client, in process) where the client is what a user would
use, and through raw POST /prompt where the node's own behaviour is the point. The server-restart, long-job and
determinism cases use a second server (tests/comfy/test_second_server.py) so the session server is not disturbed."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
import threading
import uuid
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from framepack_client.hosted import HostedParams
from framepack_client.job_states import QUEUED, RUNNING
from framepack_client.jobs import OUTPUT_PREFIX, JobStore, check, follow, queue_job
from framepack_client.server_api import ComfyClient, PromptRejected
from framepack_core.loading import save_framepack_model
from framepack_dev.random_weights import tiny_transformer
from framepack_dev.tiny_models import (END_IMAGE, START_IMAGE, TINY_I2V, install_tiny_models, node_of, tiny_workflow,
                                       write_image)
from tests.comfy.test_client_e2e import cli_in_process, probe, tiny_args, write_tiny_workflows

_SEEDS = itertools.count(10_000)


def unique(tag: str) -> str:
    return f"reliability/{tag}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def tiny(models_dir, input_dir, tmp_path_factory):
    install_tiny_models(models_dir, input_dir)
    folder = tmp_path_factory.mktemp("reliability")
    return {"workflows": write_tiny_workflows(folder), "start": input_dir / START_IMAGE, "end": input_dir / END_IMAGE,
            "folder": folder, "models": models_dir, "input": input_dir}


@pytest.fixture(autouse=True)
def server_survives(comfy_server, tiny):
    """After each case: the session server still answers and a valid (uncached) prompt still succeeds."""
    yield
    assert comfy_server.is_running(), f"the server died:\n{comfy_server.log_tail(40)}"
    client = comfy_server.client()
    assert "system" in client.system_stats()
    result = client.run(tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=unique("health")), timeout=120)
    assert result.ok, f"a valid prompt failed after the case: {result.error_message}"


@pytest.fixture
def dirs(tmp_path):
    return ["--jobs-dir", str(tmp_path / "jobs"), "--output-dir", str(tmp_path / "out")]


def client_run(server_url: str, tiny: dict, dirs: list[str], *extra: str, image: Path | None = None,
               prompt: str = "a cat walks", workflow: str = "framepack_i2v", **sizes) -> tuple[int, dict]:
    """python -m framepack_client run on the tiny setup; returns (exit code, JSON result)."""
    args = tiny_args(tiny["workflows"][workflow], **{"seed": next(_SEEDS), **sizes})
    code, out, err = cli_in_process("run", "--server", server_url, *dirs, "-q", "--image",
                                    str(image or tiny["start"]), "--prompt", prompt, *args, *extra)
    return code, json.loads(out)


def assert_completed(code: int, result: dict, frames: int, width: int = 64, height: int = 64) -> None:
    assert code == 0 and result["status"] == "completed", result["error"]
    assert probe(result["outputs"][0]) == {"frames": frames, "fps": 30.0, "width": width, "height": height}


def assert_failed(code: int, result: dict, *fragments: str, exit_code: int = 1) -> str:
    assert code == exit_code and result["status"] == "failed", result
    for fragment in fragments:
        assert fragment in result["error"], f"{fragment!r} not in {result['error']!r}"
    return result["error"]


def raw_rejection(comfy, graph: dict) -> str:
    with pytest.raises(PromptRejected) as err:
        comfy.queue_prompt(graph)
    return str(err.value)


# -- model files -----------------------------------------------------------------------------------------------

def test_non_framepack_safetensors(comfy_server, tiny, dirs):
    path = tiny["models"] / "diffusion_models" / "some_vae.safetensors"
    save_file({"decoder.conv_in.weight": torch.randn(8, 4, 3, 3), "encoder.conv_in.bias": torch.randn(8)}, str(path))
    code, result = client_run(comfy_server.url, tiny, dirs, "--model", path.name)
    error = assert_failed(code, result, "FramePackModelLoader", "some_vae.safetensors", "not a FramePack transformer",
                          "a VAE", "FramePackI2V_HY_bf16.safetensors", "in models/diffusion_models")
    assert "LoRA" not in error


def test_a_lora_chosen_as_the_model_points_to_the_lora_node(comfy, tiny):
    """The core names the file a LoRA; the loader node adds where LoRAs go in the graph."""
    path = tiny["models"] / "diffusion_models" / "some_lora.safetensors"
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 4)}, str(path))
    graph = tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=unique("lora_as_model"))
    node_of(graph, "FramePackModelLoader")["inputs"]["model"] = path.name
    result = comfy.run(graph, timeout=120)
    assert result.status == "error" and result.error["node_type"] == "FramePackModelLoader"
    for fragment in ("some_lora.safetensors is not a FramePack transformer: it looks like a LoRA",
                     "in models/diffusion_models", "chain it through the FramePack LoRA node"):
        assert fragment in result.error["exception_message"], result.error["exception_message"]


def test_a_keyframe_encoded_with_another_clip_vision_model_is_named_at_its_node(comfy, tiny):
    """The core says what does not match; the keyframe node adds which of its inputs to connect differently."""
    graph = tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=unique("keyframe_mismatch"))
    graph["21"] = {"class_type": "FramePackTestClipVisionLoader", "inputs": {"embed_dim": 40, "tokens": 16},
                   "_meta": {"title": "another CLIP vision"}}
    graph["22"] = {"class_type": "FramePackKeyframe",
                   "inputs": {"conditioning": ["8", 0], "image": ["7", 0], "vae": ["5", 0], "clip_vision": ["21", 0],
                              "time_seconds": 0.5, "strength": 1.0}, "_meta": {"title": "keyframe"}}
    node_of(graph, "FramePackSampler")["inputs"]["conditioning"] = ["22", 0]
    result = comfy.run(graph, timeout=120)
    assert result.status == "error" and result.error["node_type"] == "FramePackKeyframe"
    message = result.error["exception_message"]
    assert "the keyframe image embeddings have width 40, the start image's 24" in message, message
    assert "Connect the same VAE and CLIP vision model to this node as to FramePack Image Conditioning" in message


def test_truncated_safetensors(comfy_server, tiny, dirs):
    good = tiny["models"] / "diffusion_models" / TINY_I2V
    path = good.with_name("truncated.safetensors")
    path.write_bytes(good.read_bytes()[: good.stat().st_size * 6 // 10])
    code, result = client_run(comfy_server.url, tiny, dirs, "--model", path.name)
    assert_failed(code, result, "truncated.safetensors", "truncated", "download it again")


def test_pickle_checkpoint_is_refused(comfy_server, tiny, dirs):
    folder = tiny["models"] / "diffusion_models"
    torch.save({"x_embedder.proj.weight": torch.zeros(2)}, folder / "framepack.ckpt")
    code, result = client_run(comfy_server.url, tiny, dirs, "--model", "framepack.ckpt")
    assert_failed(code, result, "framepack.ckpt", "pickle", ".safetensors version")
    shutil.copy(folder / "framepack.ckpt", folder / "disguised.safetensors")  # a pickle renamed to .safetensors
    code, result = client_run(comfy_server.url, tiny, dirs, "--model", "disguised.safetensors")
    assert_failed(code, result, "disguised.safetensors", "renamed to .safetensors", "real .safetensors")


def test_sharded_folder_complete_and_with_a_missing_shard(comfy_server, tiny, dirs):
    model = tiny_transformer()
    complete = tiny["models"] / "diffusion_models" / "sharded_tiny"
    files = save_framepack_model(model, complete, storage="bf16", max_shard_bytes=200_000)
    shards = sorted(p for p in files if p.name.endswith(".safetensors"))
    assert len(shards) >= 3
    code, result = client_run(comfy_server.url, tiny, dirs, "--model", "sharded_tiny")
    assert_completed(code, result, 30)

    broken = complete.with_name("sharded_missing")
    shutil.copytree(complete, broken)
    (broken / shards[1].name).unlink()
    code, result = client_run(comfy_server.url, tiny, dirs, "--model", "sharded_missing")
    assert_failed(code, result, "sharded_missing", shards[1].name, "missing", "Download the missing shard")


def test_fp8_file_with_bf16_requested(comfy, tiny):
    path = tiny["models"] / "diffusion_models" / "tiny_fp8_e4m3fn.safetensors"
    save_framepack_model(tiny_transformer(), path, storage="fp8_e4m3fn")
    for storage in ("compute", "auto"):  # upcast to bf16 storage / keep fp8 storage, both with bf16 compute
        graph = tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=unique(f"fp8_{storage}"))
        node_of(graph, "FramePackModelLoader")["inputs"].update(model=path.name, compute_dtype="bf16",
                                                               weight_storage=storage)
        result = comfy.run(graph, timeout=180)
        assert result.ok, result.error_message
        (ref,) = result.files("images")
        assert probe_bytes(comfy.view(**ref))["frames"] == 30


def probe_bytes(data: bytes) -> dict:
    import io

    import av
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return {"frames": sum(1 for _ in container.decode(stream)), "width": stream.codec_context.width,
                "height": stream.codec_context.height}


def test_model_name_not_on_the_server(comfy_server, tiny, dirs):
    code, result = client_run(comfy_server.url, tiny, dirs, "--model", "FramePackI2V_HY_typo.safetensors")
    error = assert_failed(code, result, "the ComfyUI server lacks 1 model file",
                          f"  - FramePackI2V_HY_typo.safetensors -> {comfy_server.models_dir / 'diffusion_models'}/")
    assert "also:" not in error  # the loader's message repeated for its other inputs is not said again


# -- images ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rgba", "grayscale", "1x1", "8000x10"])
def test_unusual_start_images(comfy_server, tiny, dirs, tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "rgba":
        image = Image.new("RGBA", (90, 70), (250, 10, 10, 0))
        image.putpixel((5, 5), (0, 0, 255, 128))
        image.save(path)
    elif kind == "grayscale":
        write_image(path, 72, 72, seed=3, mode="L")
    elif kind == "1x1":
        Image.new("RGB", (1, 1), (0, 128, 255)).save(path)
    else:
        write_image(path, 8000, 10, seed=4)
    code, result = client_run(comfy_server.url, tiny, dirs, image=path)
    assert_completed(code, result, 30)


def test_image_over_the_side_limit_is_refused_before_upload(comfy_server, tiny, dirs, tmp_path):
    path = write_image(tmp_path / "10000x10.png", 10000, 10, seed=4)
    code, result = client_run(comfy_server.url, tiny, dirs, image=path)
    assert_failed(code, result, "it is 10000x10 pixels; the limit is 8192 pixels per side", "scale it down",
                  exit_code=2)


def test_extreme_aspect_with_auto_size_is_clamped(comfy_server, tiny, dirs, tmp_path):
    """8000x10 with aspect_ratio auto at 480p: the long side is capped at 2048 and the short one raised to 64,
    instead of an 18000-pixel-wide video (480p area at an 800:1 aspect)."""
    path = write_image(tmp_path / "strip.png", 8000, 10, seed=5)
    code, out, err = cli_in_process("run", "--server", comfy_server.url, *dirs, "-q", "--image", str(path),
                                    "--prompt", "strip", "--workflow", str(tiny["workflows"]["framepack_i2v"]),
                                    "--model", TINY_I2V, "--aspect-ratio", "auto", "--resolution", "480p",
                                    "--num-frames", "30", "--steps", "4", "--seed", "3")
    assert_completed(code, json.loads(out), 30, width=2048, height=64)


def test_end_image_of_another_size_and_aspect(comfy_server, tiny, dirs, tmp_path):
    end = write_image(tmp_path / "tall_end.png", 40, 300, seed=6)
    code, result = client_run(comfy_server.url, tiny, dirs, "--end-image", str(end), "--strength", "1",
                              workflow="framepack_first_last_frame", width=96, height=64)
    assert_completed(code, result, 30, width=96)


def test_truncated_and_corrupt_images(comfy_server, tiny, dirs, tmp_path):
    good = write_image(tmp_path / "good.png", 64, 64, seed=7)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    # ComfyUI's LoadImage would load a truncated file (filling the missing rows); the client decodes every image
    # before uploading it and refuses a damaged one with the fix
    code, result = client_run(comfy_server.url, tiny, dirs, image=cut)
    assert_failed(code, result, "does not decode as an image (image file is truncated)", "save it again as PNG",
                  exit_code=2)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(good.read_bytes()[:8] + bytes(range(256)) * 4)  # PNG signature, then no PNG at all
    code, result = client_run(comfy_server.url, tiny, dirs, image=garbage)
    assert_failed(code, result, str(garbage), exit_code=2)


# -- parameters: the client refuses them before sending; the node refuses (or accepts) them on raw /prompt ----

@pytest.mark.parametrize("flag,value,client_says,node_input", [
    ("--num-frames", "29", "num_frames 29 is out of range; use a value from 30 to 1800", "num_frames"),
    ("--num-frames", "1801", "num_frames 1801 is out of range", "num_frames"),
    ("--num-frames", "30.5", "num_frames must be a whole number from 30 to 1800, got 30.5; drop the fraction", None),
    ("--steps", "0", "num_inference_steps 0 is out of range; use a value from 4 to 50", "num_inference_steps"),
    ("--steps", "51", "num_inference_steps 51 is out of range", "num_inference_steps"),
    ("--guidance-scale", "-1", "guidance_scale -1.0 is out of range; use a value from 0 to 32", "guidance_scale"),
])
def test_out_of_range_numbers(comfy, comfy_server, tiny, dirs, flag, value, client_says, node_input):
    code, result = client_run(comfy_server.url, tiny, dirs, flag, value)
    assert_failed(code, result, client_says, exit_code=2)
    assert result["id"] is None  # nothing was sent
    graph = tiny_workflow("framepack_i2v", prefix=unique("range"))
    field = {"--num-frames": "num_frames", "--steps": "num_inference_steps", "--guidance-scale": "guidance_scale"}[flag]
    node_of(graph, "FramePackSampler")["inputs"][field] = float(value)
    if node_input is not None:
        message = raw_rejection(comfy, graph)
        assert node_input in message and "FramePackSampler" in message
    else:
        # ComfyUI itself turns 30.5 into int 30 for an INT input: the video must then have exactly 30 frames
        outcome = comfy.run(graph, timeout=120)
        assert outcome.ok, outcome.error_message
        assert probe_bytes(comfy.view(**outcome.files("images")[0]))["frames"] == 30


def test_seed_above_2_31(comfy, comfy_server, tiny, dirs):
    code, result = client_run(comfy_server.url, tiny, dirs, "--seed", str(2**31))
    assert_failed(code, result, "seed 2147483648 is out of range; use a value from -1 to 2147483647", exit_code=2)
    graph = tiny_workflow("framepack_i2v", seed=2**31 + 5, prefix=unique("bigseed"))  # the node's range is wider
    outcome = comfy.run(graph, timeout=120)
    assert outcome.ok, outcome.error_message
    sampler = next(i for i, n in graph.items() if n["class_type"] == "FramePackSampler")
    assert outcome.outputs[sampler]["framepack"][0]["seed"] == 2**31 + 5


@pytest.mark.parametrize("text,client_says", [("x " * 300, "prompt has 600 characters; the limit is 500"),
                                              ("", "prompt is empty")])
def test_prompt_length_limits(comfy, comfy_server, tiny, dirs, text, client_says):
    code, result = client_run(comfy_server.url, tiny, dirs, prompt=text)
    assert_failed(code, result, client_says, exit_code=2)
    graph = tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=unique("prompt"))
    node_of(graph, "CLIPTextEncode", "Positive prompt")["inputs"]["text"] = text  # the graph itself has no limit
    outcome = comfy.run(graph, timeout=120)
    assert outcome.ok, outcome.error_message


def test_strength_without_end_image_and_a_missing_end_image(comfy, comfy_server, tiny, dirs):
    code, result = client_run(comfy_server.url, tiny, dirs, "--strength", "0.7")
    assert_failed(code, result, "strength is only used with end_image", "add end_image or remove strength",
                  exit_code=2)
    graph = tiny_workflow("framepack_first_last_frame", prefix=unique("noend"))
    node_of(graph, "FramePackLoadImage", "End image")["inputs"]["image"] = "no_such_end.png"
    message = raw_rejection(comfy, graph)
    assert "no_such_end.png" in message and "LoadImage" in message


def test_node_error_outside_the_hosted_parameters(comfy_server, tiny, dirs, tmp_path):
    graph = json.loads(tiny["workflows"]["framepack_i2v"].read_text())
    node_of(graph, "FramePackSampler")["inputs"]["cfg_rescale"] = 5.0
    workflow = tmp_path / "bad_rescale.json"
    workflow.write_text(json.dumps(graph))
    code, out, err = cli_in_process("run", "--server", comfy_server.url, *dirs, "-q", "--image", str(tiny["start"]),
                                    "--prompt", "p", *tiny_args(workflow))
    assert_failed(code, json.loads(out), "FramePackSampler node", "cfg_rescale", "bigger than max")


def test_real_cfg_runs_the_negative_prompt(comfy_server, tiny, dirs):
    """cfg_scale at the hosted maximum (7) with a negative prompt: the negative branch runs too; still a video."""
    code, out, err = cli_in_process("run", "--server", comfy_server.url, *dirs, "-q", "--image", str(tiny["start"]),
                                    "--prompt", "p", *tiny_args(tiny["workflows"]["framepack_i2v"],
                                                                seed=next(_SEEDS)),
                                    "--cfg-scale", "7", "--negative-prompt", "blurry, jitter")
    assert_completed(code, json.loads(out), 30)


# -- runtime faults --------------------------------------------------------------------------------------------

def _interrupting_job(comfy_server, tiny, tmp_path, node_class: str, frames: int):
    store = JobStore(tmp_path / "jobs")
    params = HostedParams.from_mapping({"image": str(tiny["start"]), "prompt": "stop me", "num_frames": frames,
                                        "num_inference_steps": 4, "seed": next(_SEEDS), "resolution": "custom",
                                        "width": 64, "height": 64})
    streams = []
    job = queue_job(ComfyClient(comfy_server.url), store, params, workflow=str(tiny["workflows"]["framepack_i2v"]),
                    model_file=TINY_I2V,
                    before_queue=lambda j: streams.append(ComfyClient(j.server, client_id=j.client_id).open_events()))
    target = next(i for i, n in job.prompt.items() if n["class_type"] == node_class)
    sent = threading.Event()

    def on_message(message):
        data = message.get("data") or {}
        if message.get("type") == "progress" and data.get("node") == target and not sent.is_set():
            sent.set()
            ComfyClient(comfy_server.url).interrupt()

    follow(job, store, timeout=300, on_message=on_message, events=streams[0])
    streams[0].close()
    assert sent.is_set()
    return job


def test_interrupt_during_a_section(comfy_server, tiny, tmp_path):
    job = _interrupting_job(comfy_server, tiny, tmp_path, "FramePackSampler", frames=600)
    assert job.status == "failed" and job.error.startswith("interrupted in FramePackSampler"), job.error
    assert "cancelled" in job.error and job.outputs == []


def test_interrupt_during_decoding_leaves_no_partial_video(comfy_server, tiny, tmp_path):
    def videos() -> set:  # the client's prefix is the same for every job: compare the folder before and after
        prefix = OUTPUT_PREFIX
        folder = (comfy_server.output_dir / prefix).parent
        return set(folder.glob(f"{Path(prefix).name}*")) if folder.is_dir() else set()

    before = videos()
    job = _interrupting_job(comfy_server, tiny, tmp_path, "FramePackVideoCombine", frames=600)
    assert job.status == "failed" and job.error.startswith("interrupted in FramePackVideoCombine"), job.error
    assert node_of(job.prompt, "FramePackVideoCombine")["inputs"]["filename_prefix"] == OUTPUT_PREFIX
    assert videos() == before, "an interrupted video must not leave a partial MP4"


def test_two_prompts_back_to_back(comfy_server, tiny, tmp_path):
    dirs = ["--jobs-dir", str(tmp_path / "jobs"), "--output-dir", str(tmp_path / "out")]
    ids = []
    # the first job (4 sections) runs far longer than the second's submission (an upload and a POST), so the
    # second is still queued when it is checked; the two counts tell the results apart
    for frames in (120, 45):
        code, out, _ = cli_in_process("submit", "--server", comfy_server.url, *dirs, "--image", str(tiny["start"]),
                                      "--prompt", "queued", *tiny_args(tiny["workflows"]["framepack_i2v"],
                                                                       frames=frames, seed=next(_SEEDS)))
        assert code == 0, out
        ids.append(json.loads(out)["id"])
    store = JobStore(tmp_path / "jobs")
    second = check(ComfyClient(comfy_server.url), store.load(ids[1]))
    assert second.status in (QUEUED, RUNNING, "completed")
    seen_second_waiting = second.status == QUEUED
    results = []
    for job_id in ids:
        code, out, _ = cli_in_process("result", job_id, "--wait", "240", *dirs, "-q")
        results.append(json.loads(out))
        assert code == 0, out
    assert [probe(r["outputs"][0])["frames"] for r in results] == [120, 45]
    assert results[0]["outputs"] != results[1]["outputs"]
    assert seen_second_waiting, "the second prompt should wait in the queue while the first runs"


def test_same_prompt_twice_is_served_from_cache(comfy, comfy_server, tiny, dirs):
    graph = tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=unique("cache"))
    first = comfy.run(graph, timeout=120)
    second = comfy.run(copy.deepcopy(graph), timeout=120)
    assert first.ok and second.ok
    cached = next(m["data"]["nodes"] for m in second.messages if m["type"] == "execution_cached")
    assert set(cached) == set(graph)  # nothing ran again
    assert "progress" not in second.message_types()
    assert second.files("images") == first.files("images")
    # through the client: the same parameters give a new job (own output prefix, so the video node runs) whose
    # sampler is served from the cache; the seed reported is still the seed used
    seed = next(_SEEDS)
    results = [client_run(comfy_server.url, tiny, dirs, "--seed", str(seed)) for _ in range(2)]
    for code, result in results:
        assert_completed(code, result, 30)
        assert result["seed"] == seed
    assert results[0][1]["outputs"] != results[1][1]["outputs"]


@pytest.mark.parametrize("prefix", ["../escape", "a/../../escape", "/tmp/framepack_abs_escape"])
def test_filename_prefix_cannot_escape_the_output_folder(comfy, comfy_server, prefix):
    before = {p for p in comfy_server.base_dir.rglob("*.mp4")} | set(Path("/tmp").glob("framepack_abs_escape*"))
    graph = tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=prefix)
    result = comfy.run(graph, timeout=120)
    assert result.status == "error"
    assert result.error["node_type"] == "FramePackVideoCombine"
    assert "filename_prefix" in result.error_message and "must stay inside the output folder" in result.error_message
    after = {p for p in comfy_server.base_dir.rglob("*.mp4")} | set(Path("/tmp").glob("framepack_abs_escape*"))
    assert after == before
