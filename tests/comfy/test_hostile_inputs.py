"""What an API caller or a downloaded file can make the real server do, on tiny weights: model and LoRA names that
the loaders do not list, control characters in the output name, a huge timestamped prompt, a LoRA whose metadata
holds a catastrophic regular expression, a config that asks for ten thousand layers, a LoRA stack beyond the cap,
and error messages that would tell a caller where the server keeps its files. After each case the server still
runs a valid prompt."""

from __future__ import annotations

import itertools
import json
import time
import uuid

import pytest
import torch
from safetensors.torch import save_file

from framepack_client.server_api import PromptRejected
from framepack_core import TINY
from framepack_core.limits import MAX_LORAS, MAX_PROMPT_TEXT_CHARS
from framepack_core.loading import save_framepack_model
from framepack_dev.random_weights import tiny_transformer
from framepack_dev.tiny_models import TINY_I2V, install_tiny_models, node_of, tiny_workflow

_SEEDS = itertools.count(20_000)


@pytest.fixture(scope="module", autouse=True)
def tiny(models_dir, input_dir):
    install_tiny_models(models_dir, input_dir)


@pytest.fixture(autouse=True)
def server_survives(comfy_server):
    yield
    assert comfy_server.is_running(), f"the server died:\n{comfy_server.log_tail(40)}"
    result = comfy_server.client().run(tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=unique("health")),
                                       timeout=300)
    assert result.ok, f"a valid prompt failed after the case: {result.error_message}"


def unique(tag: str) -> str:
    return f"hostile/{tag}_{uuid.uuid4().hex[:8]}"


def graph_with(**loader) -> dict:
    graph = tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=unique("case"))
    node_of(graph, "FramePackModelLoader")["inputs"].update(loader)
    return graph


def rejection(comfy, graph: dict) -> str:
    with pytest.raises(PromptRejected) as err:
        comfy.queue_prompt(graph)
    return json.dumps(err.value.node_errors) + str(err.value)


def tiny_lora(path, seed: int = 0, metadata: dict | None = None, extra: dict | None = None) -> None:
    gen = torch.Generator().manual_seed(seed)
    d = TINY.inner_dim
    tensors = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(4, d, generator=gen),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(d, 4, generator=gen) * 0.5}
    save_file({**tensors, **(extra or {})}, str(path), metadata=metadata)


def lora_chain(graph: dict, names: list[tuple[str, float]]) -> dict:
    previous = None
    for i, (name, strength) in enumerate(names):
        node = str(100 + i)
        graph[node] = {"class_type": "FramePackLoraSelect", "_meta": {"title": f"LoRA {i}"},
                       "inputs": {"lora_name": name, "strength": strength, **({"previous": previous} if previous else {})}}
        previous = [node, 0]
    node_of(graph, "FramePackModelLoader")["inputs"]["lora"] = previous
    return graph


# -- model and LoRA names -----------------------------------------------------------------------------------------

def test_model_names_the_loader_does_not_list_are_refused_at_queue_time(comfy, comfy_server, models_dir):
    """Neither a path outside models/diffusion_models nor an index uploaded through ComfyUI's own /upload/image can
    be named: the prompt is refused before it runs, with the same message whether the path exists or not."""
    index = json.dumps({"weight_map": {"x_embedder.proj.weight": "/etc/hostname"}}).encode()
    comfy.upload_image(index, name="diffusion_pytorch_model.safetensors.index.json", subfolder="probe")
    base = str(comfy_server.base_dir)
    for name in ("/etc", "../../input/probe", "../input/probe", "..", "/", f"{TINY_I2V}/..",
                 str(models_dir / "diffusion_models" / TINY_I2V), "../diffusion_models/" + TINY_I2V,
                 TINY_I2V + "\x00.txt", "no_such_model.safetensors"):
        text = rejection(comfy, graph_with(model=name))
        assert "was not found in models/diffusion_models" in text, (name, text)
        told = text.replace(name, "")  # the caller's own string may be echoed; nothing else of the server's disk
        assert base not in told and "hostname" not in told and "holds no" not in told, (name, text)
    assert comfy.queue()["queue_pending"] == []


def test_a_model_folder_linked_from_another_disk_still_loads(comfy, models_dir, tmp_path_factory):
    """Model folders are often links to other disks; a link the user put in models/diffusion_models is followed."""
    elsewhere = tmp_path_factory.mktemp("other_disk") / "tiny_sharded"
    save_framepack_model(tiny_transformer(), elsewhere, storage="bf16", max_shard_bytes=200_000)
    link = models_dir / "diffusion_models" / "linked_tiny"
    if not link.is_symlink():
        link.symlink_to(elsewhere, target_is_directory=True)
    result = comfy.run(graph_with(model="linked_tiny"), timeout=300)
    assert result.ok, result.error_message


def test_lora_names_the_loader_does_not_list_are_refused_at_queue_time(comfy, comfy_server, models_dir):
    tiny_lora(models_dir / "loras" / "listed_lora.safetensors")
    for name in ("../diffusion_models/" + TINY_I2V, "/etc/hostname", "../../input/probe", "missing.safetensors"):
        graph = lora_chain(graph_with(), [("listed_lora.safetensors", 1.0), (name, 1.0)])
        text = rejection(comfy, graph)
        assert "lora_name" in text and "was not found in models/loras" in text, (name, text)
        assert str(comfy_server.base_dir) not in text


# -- the output name ----------------------------------------------------------------------------------------------

def test_control_characters_in_filename_prefix_are_refused(comfy, comfy_server, output_dir):
    """PyAV cuts a path at a NUL byte: "clip_00001.mp4\\x00/z" would overwrite an existing video and "x.mkv\\x00" would
    pick the container. Such prefixes are refused and no file is written or changed."""
    folder = unique("names")
    first = comfy.run(tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=f"{folder}/ok"), timeout=300)
    assert first.ok, first.error_message
    existing = output_dir / folder / "ok_00001.mp4"
    before = existing.read_bytes()
    files_before = sorted(p.name for p in (output_dir / folder).iterdir())
    for prefix in (f"{folder}/ok_00001.mp4\x00/z", f"{folder}/name.mkv\x00", f"{folder}/line\nbreak",
                   f"{folder}/\x1b[31mred"):
        result = comfy.run(tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=prefix), timeout=300)
        assert result.status == "error" and result.error["node_type"] == "FramePackVideoCombine", prefix
        assert "filename_prefix" in result.error_message and "control character" in result.error_message
    assert existing.read_bytes() == before
    assert sorted(p.name for p in (output_dir / folder).iterdir()) == files_before


# -- sizes and times ------------------------------------------------------------------------------------------------

def test_a_huge_timestamped_prompt_is_refused_with_the_cap(comfy):
    """200 KB of an unclosed time mark: a backtracking parser held the server (its HTTP API included) for minutes;
    the text is refused at once with the limit."""
    graph = tiny_workflow("framepack_f1", seed=next(_SEEDS), prefix=unique("prompts"))
    graph["21"] = {"class_type": "FramePackTestCLIPLoader", "inputs": {"token_dim": 32, "pooled_dim": 16},
                   "_meta": {"title": "CLIP stand-in"}}
    graph["22"] = {"class_type": "FramePackTimestampedPrompt", "_meta": {"title": "prompts"},
                   "inputs": {"clip": ["21", 0], "text": "[1" + " " * 200_000}}
    node_of(graph, "FramePackSampler")["inputs"]["prompts"] = ["22", 0]
    result = comfy.run(graph, timeout=300)
    assert result.status == "error" and result.error["node_type"] == "FramePackTimestampedPrompt"
    assert f"the limit is {MAX_PROMPT_TEXT_CHARS}" in result.error["exception_message"]


def test_a_lora_with_a_catastrophic_alpha_pattern_is_applied_at_once(comfy, models_dir):
    """The LoRA's PEFT metadata holds "(a*)*c" and the file a key named "aaa...a" (30 letters): run as a regular
    expression that is 2^30 backtracking steps (minutes, with the server frozen); as a module name, one lookup."""
    stem = "a" * 30
    hostile = {f"{stem}.lora_A.weight": torch.zeros(4, TINY.inner_dim), f"{stem}.lora_B.weight": torch.zeros(8, 4)}
    metadata = {"lora_adapter_metadata": json.dumps({"r": 4, "lora_alpha": 4, "alpha_pattern": {"(a*)*c": 1}})}
    tiny_lora(models_dir / "loras" / "hostile_alpha.safetensors", metadata=metadata, extra=hostile)
    started = time.monotonic()
    result = comfy.run(lora_chain(graph_with(), [("hostile_alpha.safetensors", 1.0)]), timeout=120)
    assert result.ok, result.error_message
    assert time.monotonic() - started < 120


def test_a_config_asking_for_ten_thousand_layers_is_refused_before_building(comfy, models_dir):
    folder = models_dir / "diffusion_models" / "huge_config"
    save_framepack_model(tiny_transformer(), folder, storage="bf16", max_shard_bytes=200_000)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_layers": 10_000}))
    result = comfy.run(graph_with(model="huge_config"), timeout=300)
    assert result.status == "error" and result.error["node_type"] == "FramePackModelLoader"
    assert "huge_config: its config (config.json) is not usable: num_layers 10000 is out of range" in \
        result.error["exception_message"]


def test_the_lora_stack_is_capped_and_a_lora_chained_twice_counts_once(comfy, models_dir):
    names = []
    for i in range(MAX_LORAS + 1):
        tiny_lora(models_dir / "loras" / f"stack_{i}.safetensors", seed=i)
        names.append((f"stack_{i}.safetensors", 0.1))
    result = comfy.run(lora_chain(graph_with(), names), timeout=300)
    assert result.status == "error" and result.error["node_type"] == "FramePackLoraSelect"
    assert f"at most {MAX_LORAS}" in result.error["exception_message"]

    def sampled(chain):
        graph = lora_chain(tiny_workflow("framepack_i2v", seed=77, prefix=unique("dup")), chain)
        graph["30"] = {"class_type": "FramePackTestDescribe", "inputs": {"value": ["9", 0]}, "_meta": {"title": "d"}}
        run = comfy.run(graph, timeout=300)
        assert run.ok, run.error_message
        return json.loads(run.outputs["30"]["text"][0])["samples"]

    twice = sampled([("stack_0.safetensors", 0.5), ("stack_0.safetensors", 0.5)])
    assert twice == sampled([("stack_0.safetensors", 1.0)])  # merged into one application at the summed strength
    assert twice != sampled([("stack_0.safetensors", 0.5)])


# -- what errors tell an API caller ---------------------------------------------------------------------------------

def test_errors_name_files_by_their_model_folder_names_only(comfy, comfy_server, models_dir):
    base = str(comfy_server.base_dir)
    folder = models_dir / "diffusion_models" / "one_shard_missing"
    files = save_framepack_model(tiny_transformer(), folder, storage="bf16", max_shard_bytes=200_000)
    files[0].unlink()
    broken = models_dir / "diffusion_models" / "cut_short.safetensors"
    whole = (models_dir / "diffusion_models" / TINY_I2V).read_bytes()
    broken.write_bytes(whole[: len(whole) // 2])
    for model, says in (("one_shard_missing", files[0].name), ("cut_short.safetensors", "cut_short.safetensors")):
        result = comfy.run(graph_with(model=model), timeout=300)
        assert result.status == "error", model
        message, kind = result.error["exception_message"], result.error["exception_type"]
        assert says in message
        assert base not in message and base not in kind, (message, kind)
        assert kind == "framepack.CheckpointError"
    graph = tiny_workflow("framepack_i2v", seed=next(_SEEDS), prefix=unique("checker"))
    node_of(graph, "FramePackSafetyChecker")["inputs"].update(enabled=True, classifier="not_installed")
    result = comfy.run(graph, timeout=300)
    assert result.status == "error" and "models/nsfw_detector" in result.error["exception_message"]
    assert base not in result.error["exception_message"]
