"""A server without the weights refuses the prompt once per loader input (and FramePack Load Model once per input
of its own): the client says it as one list of the missing files, each with the folder it goes in and where to
download it (framepack_client.model_files, the table the demo prints too)."""

from __future__ import annotations

from framepack_client.errors import PromptRejected
from framepack_client.hosted import HostedParams
from framepack_client.model_files import MODEL_SOURCES, MissingModel, missing_models, model_folder_paths
from framepack_client.outcome import describe_rejection
from framepack_client.workflow import build_prompt, find_node, load_workflow

NOT_LISTED = ("model 'FramePackI2V_HY_bf16.safetensors' was not found in models/diffusion_models (only the names the "
              "loader lists are accepted); put FramePackI2V_HY (file or sharded folder) there and refresh")


def _not_in_list(input_name: str, value: str, choices: list) -> dict:
    return {"type": "value_not_in_list", "message": "Value not in list",
            "details": f"{input_name}: {value!r} not in {choices}",
            "extra_info": {"input_name": input_name, "input_config": [choices, {}], "received_value": value}}


def _custom(input_name: str, text: str) -> dict:
    return {"type": "custom_validation_failed", "message": "Custom validation failed for node",
            "details": f"{input_name} - {text}", "extra_info": {"input_name": input_name}}


def refusal_without_weights(graph: dict, extra: dict | None = None) -> PromptRejected:
    """ComfyUI 0.3.75's 400 answer to the shipped I2V workflow on a server with empty model folders (recorded)."""
    ids = {n["class_type"]: i for i, n in graph.items()}
    node_errors = {
        ids["DualCLIPLoader"]: {"errors": [_not_in_list("clip_name2", "llava_llama3_fp16.safetensors", []),
                                           _not_in_list("clip_name1", "clip_l.safetensors", [])],
                                "dependent_outputs": ["10"], "class_type": "DualCLIPLoader"},
        ids["FramePackModelLoader"]: {"errors": [_custom(name, NOT_LISTED) for name in (
            "model", "variant", "compute_dtype", "weight_storage", "attention")],
            "dependent_outputs": ["10"], "class_type": "FramePackModelLoader"},
        ids["CLIPVisionLoader"]: {"errors": [_not_in_list("clip_name", "sigclip_vision_patch14_384.safetensors", [])],
                                  "dependent_outputs": ["10"], "class_type": "CLIPVisionLoader"},
        ids["VAELoader"]: {"errors": [_not_in_list("vae_name", "hunyuan_video_vae_bf16.safetensors", ["pixel_space"])],
                           "dependent_outputs": ["10"], "class_type": "VAELoader"},
        **(extra or {})}
    error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
             "details": "", "extra_info": {}}
    return PromptRejected("http://127.0.0.1:1/prompt", "{}", error, node_errors)


def shipped_prompt(tmp_path) -> dict:
    from PIL import Image
    Image.new("RGB", (32, 32)).save(tmp_path / "s.png")
    return build_prompt(HostedParams.from_mapping({"image": str(tmp_path / "s.png"), "prompt": "p"}),
                        load_workflow("framepack_i2v"))


def test_each_missing_file_is_listed_once_from_the_prompt_sent(tmp_path):
    graph = shipped_prompt(tmp_path)
    missing, rest = missing_models(refusal_without_weights(graph).node_errors, graph)
    assert sorted(missing, key=lambda m: m.name) == sorted([
        MissingModel("text_encoders", "llava_llama3_fp16.safetensors"),
        MissingModel("text_encoders", "clip_l.safetensors"),
        MissingModel("diffusion_models", "FramePackI2V_HY_bf16.safetensors"),
        MissingModel("clip_vision", "sigclip_vision_patch14_384.safetensors"),
        MissingModel("vae", "hunyuan_video_vae_bf16.safetensors")], key=lambda m: m.name)
    assert rest == {}  # the loader's four repeats of its message went with the file


def test_the_message_lists_the_files_where_they_go_and_where_to_get_them(tmp_path):
    graph = shipped_prompt(tmp_path)
    folders = {f: f"/srv/comfy/models/{f}" for f in MODEL_SOURCES}
    text = describe_rejection(refusal_without_weights(graph), graph, folders)
    lines = text.splitlines()
    assert lines[0].startswith("the ComfyUI server lacks 5 model files; put each in its folder")
    assert "  - clip_l.safetensors -> /srv/comfy/models/text_encoders/" in lines
    assert "  - FramePackI2V_HY_bf16.safetensors -> /srv/comfy/models/diffusion_models/" in lines
    assert "  - hunyuan_video_vae_bf16.safetensors -> /srv/comfy/models/vae/" in lines
    for folder, source in MODEL_SOURCES.items():
        assert f"  {folder}/: {source}" in lines
    assert text.count("FramePackI2V_HY_bf16.safetensors ->") == 1
    assert "Value not in list" not in text and "not in []" not in text and "Custom validation" not in text
    # without the server's folders: ComfyUI's models/<folder>
    assert "  - clip_l.safetensors -> ComfyUI's models/text_encoders/" in describe_rejection(
        refusal_without_weights(graph), graph).splitlines()


def test_other_errors_of_the_refusal_are_still_said(tmp_path):
    graph = shipped_prompt(tmp_path)
    sampler = find_node(graph, "FramePackSampler")[0]
    extra = {sampler: {"errors": [{"type": "value_bigger_than_max", "message": "Value 1801 bigger than max of 1800",
                                   "details": "num_frames", "extra_info": {"input_name": "num_frames"}}],
                       "dependent_outputs": ["10"], "class_type": "FramePackSampler"}}
    text = describe_rejection(refusal_without_weights(graph, extra), graph)
    assert text.startswith("the ComfyUI server lacks 5 model files")
    assert text.splitlines()[-1] == ("also: Prompt outputs failed validation; num_frames: Value 1801 bigger than max "
                                     f"of 1800: num_frames (FramePackSampler node {sampler})")


def test_the_servers_model_folders_are_read_defensively():
    answer = {"diffusion_models": ["/c/models/unet", "/c/models/diffusion_models"], "vae": ["/c/models/vae\x1b[2J"],
              "text_encoders": "not a list", "clip_vision": []}
    assert model_folder_paths(answer) == {"diffusion_models": "/c/models/diffusion_models",
                                          "vae": "/c/models/vae\\x1b[2J"}
    assert model_folder_paths(["not", "a", "mapping"]) == {}
