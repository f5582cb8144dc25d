"""Model files from strangers: every config field bounded and the config checked against the weights before any
model is built, shard names confined to their folder, messages that name files without their absolute paths, and
damaged headers told apart from pickles."""

from __future__ import annotations

import dataclasses
import json
import struct

import pytest
import torch

from framepack_core import TINY, CheckpointError
from framepack_core import loading as loading_module
from framepack_core.config import FramePackConfig
from framepack_core.errors import FramePackError, InputError, NotFramePackError
from framepack_core.loading import load_framepack_model, save_framepack_model
from framepack_core.lora_formats import load_lora_file
from framepack_dev.random_weights import tiny_transformer


@pytest.fixture(scope="module")
def tiny():
    return tiny_transformer()


@pytest.fixture
def no_model_built(monkeypatch):
    """Fails the test if a FramePackTransformer is constructed (meta or not)."""
    built = []
    real_init = loading_module.FramePackTransformer.__init__

    def counting_init(self, *args, **kwargs):
        built.append(args)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(loading_module.FramePackTransformer, "__init__", counting_init)
    return built


# -- config bounds ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, says", [
    ("num_layers", 10_000, "num_layers 10000 is out of range"),
    ("num_single_layers", -1, "num_single_layers -1 is out of range"),
    ("num_attention_heads", 0, "num_attention_heads 0 is out of range"),
    ("attention_head_dim", 4096, "attention_head_dim 4096 is out of range"),
    ("mlp_ratio", 1e9, "mlp_ratio 1000000000.0 is out of range"),
    ("mlp_ratio", float("nan"), "mlp_ratio nan is out of range"),
    ("in_channels", True, "in_channels must be a whole number"),
    ("num_layers", "20", "num_layers must be a whole number"),
    ("num_layers", 2.0, "num_layers must be a whole number"),
    ("text_embed_dim", 10**12, "text_embed_dim 1000000000000 is out of range"),
    ("rope_theta", -1.0, "rope_theta -1.0 is out of range"),
    ("guidance_embeds", "yes", "guidance_embeds must be true or false"),
    ("rope_axes_dim", [4, "6", 6], "rope_axes_dim must be three whole numbers"),
])
def test_every_config_field_is_bounded(field, value, says):
    data = {**dataclasses.asdict(TINY), field: value}
    with pytest.raises(ValueError, match=says):
        FramePackConfig.from_json_dict(data)


def test_inner_width_is_bounded():
    with pytest.raises(ValueError, match="num_attention_heads x attention_head_dim"):
        FramePackConfig(num_attention_heads=128, attention_head_dim=512, rope_axes_dim=(128, 192, 192))


def test_a_config_json_with_ten_thousand_layers_is_refused_before_building(tmp_path, tiny, no_model_built):
    folder = tmp_path / "huge_config"
    save_framepack_model(tiny, folder, max_shard_bytes=200_000)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_layers": 10_000}))
    with pytest.raises(CheckpointError, match=r"huge_config: its config \(config\.json\) is not usable: num_layers "
                                              r"10000 is out of range"):
        load_framepack_model(folder)
    assert no_model_built == []


@pytest.mark.parametrize("field, changes, holds", [
    ("num_layers", {"num_layers": 5}, "2 transformer_blocks"),
    ("num_single_layers", {"num_single_layers": 7}, "2 single_transformer_blocks"),
    ("num_refiner_layers", {"num_refiner_layers": 2}, "1 token refiner blocks"),
    ("num_attention_heads", {"num_attention_heads": 4}, "inner width 32"),
    ("attention_head_dim", {"num_attention_heads": 4, "attention_head_dim": 8, "rope_axes_dim": (2, 2, 4)},
     "heads of width 16"),
])
def test_a_config_that_disagrees_with_the_weights_is_refused_before_building(tmp_path, tiny, no_model_built, field,
                                                                             changes, holds):
    wrong = dataclasses.replace(TINY, **changes)
    [path] = save_framepack_model(tiny, tmp_path / "liar.safetensors", config=wrong)  # config in the metadata
    with pytest.raises(CheckpointError, match=rf"liar\.safetensors: its config says {field} .* but the weights hold "
                                              rf"{holds}"):
        load_framepack_model(path)
    assert no_model_built == []


def test_a_config_json_that_is_not_an_object_or_too_big(tmp_path, tiny):
    folder = tmp_path / "odd_config"
    save_framepack_model(tiny, folder, max_shard_bytes=200_000)
    (folder / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(CheckpointError, match=r"odd_config: its config \(config\.json\) is not usable: the config is "
                                              r"not a JSON object"):
        load_framepack_model(folder)
    (folder / "config.json").write_text(" " * (loading_module.MAX_CHECKPOINT_JSON_BYTES + 1) + "{}")
    with pytest.raises(CheckpointError, match=r"odd_config: config\.json is larger than"):
        load_framepack_model(folder)


# -- shard names --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../outside.safetensors", "/etc/passwd", "sub/shard.safetensors",
                                 "..\\outside.safetensors", "..", "shard.safetensors\x00.txt", "C:\\x.safetensors"])
def test_shard_names_must_be_plain_file_names_in_the_folder(tmp_path, tiny, bad):
    folder = tmp_path / "models" / "sharded"
    save_framepack_model(tiny, folder, max_shard_bytes=200_000)
    outside = tmp_path / "models" / "outside.safetensors"
    save_framepack_model(tiny, outside)  # a real model next to the folder: the index must not reach it
    (folder / "sub").mkdir()
    index_path = next(folder.glob("*.safetensors.index.json"))
    index = json.loads(index_path.read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = bad
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"sharded: the index .* names the shard .* which is not a plain file "
                                              r"name in the folder"):
        load_framepack_model(folder)


def test_an_index_that_is_not_a_weight_map(tmp_path, tiny):
    folder = tmp_path / "bad_index"
    save_framepack_model(tiny, folder, max_shard_bytes=200_000)
    index_path = next(folder.glob("*.safetensors.index.json"))
    for text in ("[]", '{"weight_map": [1]}', '{"weight_map": {"a": 3}}', "not json"):
        index_path.write_text(text)
        with pytest.raises(CheckpointError, match=rf"bad_index: (the index )?{index_path.name} "):
            load_framepack_model(folder)


# -- messages name files, never absolute paths ----------------------------------------------------------------------

def test_errors_name_files_without_the_folders_above_them(tmp_path, tiny):
    root = str(tmp_path)
    messages = []
    for make, load in (
        (lambda: tmp_path / "nothing_here.safetensors", load_framepack_model),
        (lambda: tmp_path / "missing_lora.safetensors", load_lora_file),
        (lambda: (tmp_path / "empty_folder").mkdir() or tmp_path / "empty_folder", load_framepack_model),
    ):
        with pytest.raises(FramePackError) as err:
            load(make())
        messages.append(str(err.value))
    folder = tmp_path / "one_missing"
    files = save_framepack_model(tiny, folder, max_shard_bytes=200_000)
    files[0].unlink()
    with pytest.raises(CheckpointError) as err:
        load_framepack_model(folder)
    messages.append(str(err.value))
    assert [m for m in messages if root in m] == []
    assert "nothing_here.safetensors" in messages[0] and "missing_lora.safetensors" in messages[1]
    assert "empty_folder" in messages[2] and files[0].name in messages[3]


def test_error_classes_are_named_without_the_install_path():
    """ComfyUI reports an exception as its module + class name; a custom node's module name is its folder's path."""
    for cls in (FramePackError, CheckpointError, NotFramePackError, InputError):
        assert cls.__module__ == "framepack", cls
    assert type("PackError", (InputError,), {}).__module__ == "framepack"


# -- damaged headers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header_length", [0x0280, 0x0380, 0x4B50])  # little endian: b"\x80\x02", b"\x80\x03", b"PK"
def test_a_damaged_safetensors_whose_header_length_looks_like_a_pickle_is_not_called_one(tmp_path, header_length):
    path = tmp_path / "damaged.safetensors"
    header = b'{"broken": ' + b" " * (header_length - 11)
    path.write_bytes(struct.pack("<Q", header_length) + header[:header_length] + b"\x00" * 64)
    for load in (load_framepack_model, load_lora_file):
        with pytest.raises(CheckpointError) as err:
            load(path)
        assert "pickle" not in str(err.value) and "not a readable safetensors file" in str(err.value), str(err.value)


def test_a_real_pickle_is_still_named_as_one(tmp_path):
    path = tmp_path / "renamed.safetensors"
    torch.save({"a": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="PyTorch zip/pickle checkpoint renamed"):
        load_framepack_model(path)


@pytest.mark.parametrize("error", [RuntimeError("mmap failed"), BufferError("cannot map"), MemoryError()])
def test_failures_while_mapping_the_file_are_named(tmp_path, tiny, monkeypatch, error):
    [path] = save_framepack_model(tiny, tmp_path / "unmappable.safetensors")

    def failing_open(*args, **kwargs):
        raise error

    monkeypatch.setattr(loading_module, "safe_open", failing_open)
    with pytest.raises(CheckpointError, match=r"unmappable\.safetensors is not a readable safetensors file"):
        load_framepack_model(path)
