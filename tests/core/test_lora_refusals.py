"""LoRA files that cannot be used (pickle suffixes, corrupt, truncated or renamed files, LoRAs for other models,
unusable keys, wrong shapes): each refused or reported with its file, layer and fix, and no weight changed. The
tiny model and the LoRA-writing helpers are tests/core/test_lora.py's."""

from __future__ import annotations

import zipfile

import pytest
import torch

from framepack_core import CheckpointError
from framepack_core.lora_apply import apply_loras
from framepack_core.lora_formats import load_lora_file
from tests.core.test_lora import D, _changed, _model, _pair, _save, _single_layer_lora, _weights


# -- refusals and reports -------------------------------------------------------------------------------------------

@pytest.fixture
def no_torch_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must never be called on a LoRA")
    monkeypatch.setattr(torch, "load", refuse)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin", ".pth", ".pkl"])
def test_pickle_suffixes_refused(tmp_path, suffix, no_torch_load):
    path = tmp_path / f"my_lora{suffix}"
    path.write_bytes(b"\x80\x04anything")
    with pytest.raises(CheckpointError, match=rf"my_lora\{suffix}.*\.safetensors"):
        load_lora_file(path)


def test_corrupt_truncated_and_renamed_files_refused(tmp_path, no_torch_load):
    good, _ = _single_layer_lora(tmp_path, "good.safetensors", "transformer_blocks.0.attn.to_q", D, D, 4, seed=1)
    data = good.path.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.safetensors").write_bytes(bytes(range(256)) * 4)
    with zipfile.ZipFile(tmp_path / "renamed.safetensors", "w") as z:  # what torch.save writes
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    for name in ("truncated", "garbage"):
        with pytest.raises(CheckpointError, match=rf"{name}\.safetensors is not a readable safetensors.*\.safetensors"):
            load_lora_file(tmp_path / f"{name}.safetensors")
    with pytest.raises(CheckpointError, match=r"renamed\.safetensors is a PyTorch zip/pickle"):
        load_lora_file(tmp_path / "renamed.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_lora_file(tmp_path / "missing.safetensors")


FOREIGN = {
    "Wan": {f"diffusion_model.blocks.{i}.{m}.lora_{ab}.weight": torch.zeros(4, 4)
            for i in range(2) for m in ("self_attn.q", "cross_attn.k", "ffn.0") for ab in "AB"},
    "Flux": {f"lora_unet_{stem}.lora_{ud}.weight": torch.zeros(4, D if ud == "down" else 4)
             for stem in ("double_blocks_0_img_attn_qkv", "double_blocks_0_img_mod_lin", "double_blocks_0_img_mlp_0",
                          "single_blocks_0_linear1", "single_blocks_0_modulation_lin") for ud in ("down", "up")},
    "Stable Diffusion": {f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_{ud}.weight":
                         torch.zeros(4, 4) for ud in ("down", "up")},
}


@pytest.mark.parametrize("family", FOREIGN)
def test_foreign_lora_matches_no_layer_and_names_its_family(tmp_path, family):
    lora = load_lora_file(_save(tmp_path, f"{family.split()[0].lower()}_style.safetensors", FOREIGN[family]))
    model = _model()
    before = _weights(model)
    with pytest.raises(CheckpointError, match=rf"_style\.safetensors matched no layer of the FramePack transformer: "
                                              rf"it looks like a LoRA for {family}.*use a HunyuanVideo or FramePack"):
        apply_loras(model, [(lora, 1.0)])
    assert not _changed(before, model)


def test_unusable_keys_are_reported(tmp_path):
    down, up = _pair(D, D, 4, seed=1)
    tensors = {
        "transformer.transformer_blocks.0.attn.to_v.lora_A.weight": down,
        "transformer.transformer_blocks.0.attn.to_v.lora_B.weight": up,
        "transformer.transformer_blocks.7.attn.to_v.lora_A.weight": down,  # the tiny model has 2 blocks
        "transformer.transformer_blocks.7.attn.to_v.lora_B.weight": up,
        "transformer.transformer_blocks.0.attn.to_k.lora_A.weight": down,  # no lora_B
        "transformer.transformer_blocks.0.attn.to_q.dora_scale": torch.ones(1, D),
        "something_else": torch.zeros(3),
        "diffusion_model.img_in.proj.lora_A.weight": torch.zeros(4, 16, 1, 2, 2),  # a conv: not a linear layer
        "diffusion_model.img_in.proj.lora_B.weight": torch.zeros(D, 4, 1, 1, 1),
    }
    report = apply_loras(_model(), [(load_lora_file(_save(tmp_path, "mixed.safetensors", tensors)), 1.0)])
    (applied,) = report.loras
    assert applied.layers == {"transformer_blocks.0.attn.to_v": "merged"}
    unmatched = applied.unmatched
    assert "no layer transformer_blocks.7.attn.to_v" in unmatched["transformer.transformer_blocks.7.attn.to_v"]
    assert "partner is missing" in unmatched["transformer.transformer_blocks.0.attn.to_k.lora_A.weight"]
    assert "DoRA" in unmatched["transformer.transformer_blocks.0.attn.to_q.dora_scale"]
    assert "not a LoRA factor" in unmatched["something_else"]
    assert "not a linear-layer LoRA" in unmatched["diffusion_model.img_in.proj.lora_A.weight"]
    assert "mixed.safetensors" in str(report) and "1 layers" in str(report)


def test_shape_mismatch_names_file_layer_and_shapes_and_changes_nothing(tmp_path):
    good, _ = _single_layer_lora(tmp_path, "good.safetensors", "transformer_blocks.0.attn.to_q", D, D, 4, seed=1)
    wide, _ = _single_layer_lora(tmp_path, "wide.safetensors", "transformer_blocks.0.attn.to_k", 64, 64, 4, seed=2)
    model = _model()
    before = _weights(model)
    with pytest.raises(CheckpointError, match=r"wide\.safetensors: layer transformer_blocks\.0\.attn\.to_k is "
                                              r"\[out 32, in 32\] but .* \[out 64, in 64\]"):
        apply_loras(model, [(good, 1.0), (wide, 1.0)])
    assert not _changed(before, model)  # every LoRA is checked before any layer changes
